//! The progenitor client of a spec.

use openapiv3::OpenAPI;
use proc_macro2::TokenStream;

use crate::spec::Problem;

pub(crate) fn generate(spec: &OpenAPI) -> Result<TokenStream, Problem> {
    let mut settings = progenitor::GenerationSettings::default();
    settings
        .with_interface(progenitor::InterfaceStyle::Builder)
        .with_tag(progenitor::TagStyle::Merged);
    progenitor::Generator::new(&settings)
        .generate_tokens(spec)
        .map_err(|err| Problem::new("#", format!("progenitor cannot generate a client: {err}")))
}
