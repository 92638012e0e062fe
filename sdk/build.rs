//! Generates the client from `openapi/order-processor.yaml`, this crate's copy of the
//! Order Processor's contract, into `$OUT_DIR/client.rs`.
//!
//! The code is generated at build time rather than committed, so the client can never
//! drift from the spec it ships with.

use std::{fs, path::Path, process};

const SPEC: &str = "openapi/order-processor.yaml";

fn main() {
    println!("cargo:rerun-if-changed={SPEC}");
    let code = generate().unwrap_or_else(|message| {
        // A panic would bury the cause under a backtrace; cargo shows stderr as it is.
        eprintln!("error: {SPEC}: {message}");
        process::exit(1);
    });
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    let path = Path::new(&out_dir).join("client.rs");
    fs::write(&path, code).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

fn generate() -> Result<String, String> {
    let text = fs::read_to_string(SPEC).map_err(|err| format!("cannot read: {err}"))?;
    let spec: openapiv3::OpenAPI =
        serde_yaml::from_str(&text).map_err(|err| format!("not an OpenAPI 3.0 document: {err}"))?;
    let mut settings = progenitor::GenerationSettings::default();
    // Builder style: every parameter is named at the call site and optional ones can be left
    // out, so adding an optional parameter to the spec does not break callers.
    settings
        .with_interface(progenitor::InterfaceStyle::Builder)
        .with_tag(progenitor::TagStyle::Merged)
        // Every request passes through the caller's hooks (a request id, a `traceparent`),
        // held by the client; `crate::hooks` defines them.
        .with_inner_type(quote::quote!(crate::hooks::Hooks))
        .with_pre_hook(quote::quote!(crate::hooks::Hooks::apply));
    let tokens = progenitor::Generator::new(&settings)
        .generate_tokens(&spec)
        .map_err(|err| format!("progenitor cannot generate a client: {err}"))?;
    let syntax = syn::parse2::<syn::File>(tokens)
        .map_err(|err| format!("the generated client does not parse: {err}"))?;
    Ok(prettyplease::unparse(&syntax))
}
