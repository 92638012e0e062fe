//! The progenitor client of a spec.

use openapiv3::OpenAPI;
use proc_macro2::TokenStream;
use quote::ToTokens;
use schemars::schema::{InstanceType, SchemaObject};

use crate::spec::Problem;

/// What a client holds besides its base URL, for its hooks: how its requests are sent and
/// what each carries (the caller's credentials), defined once by the crate that includes the
/// generated code.
const CLIENT_STATE_TYPE: &str = "crate::storage::http::Channel";

/// What the client reads and writes a `{type: string, format: date-time}` as, in place of
/// chrono's `DateTime<Utc>`: the same instant and text, read faster.
const TIMESTAMP_TYPE: &str = "crate::storage::timestamp::Timestamp";

pub(crate) fn generate(spec: &OpenAPI) -> Result<TokenStream, Problem> {
    let state: syn::Path =
        syn::parse_str(CLIENT_STATE_TYPE).expect("CLIENT_STATE_TYPE is a Rust path");
    let mut settings = progenitor::GenerationSettings::default();
    settings
        .with_interface(progenitor::InterfaceStyle::Builder)
        .with_tag(progenitor::TagStyle::Merged)
        .with_inner_type(state.into_token_stream())
        .with_conversion(
            SchemaObject {
                instance_type: Some(InstanceType::String.into()),
                format: Some("date-time".to_owned()),
                ..SchemaObject::default()
            },
            TIMESTAMP_TYPE,
            [progenitor::TypeImpl::Display, progenitor::TypeImpl::FromStr].into_iter(),
        );
    progenitor::Generator::new(&settings)
        .generate_tokens(spec)
        .map_err(|err| Problem::new("#", format!("progenitor cannot generate a client: {err}")))
}
