//! The generator of the Order Processor's contracts: from an OpenAPI 3.0 spec, a typed
//! poem-openapi server interface (types with the spec's validators, one response enum per
//! operation, a `Handlers` trait that hand-written code implements, and the table of its
//! routes) and a progenitor client.
//!
//! The server generator covers the part of OpenAPI 3.0 that the specs use, bearer access
//! included (one `http` `bearer` scheme, a requirement per operation, its scopes in
//! `x-required-scopes`; see the `security` module). Everything else is refused: the walk
//! over the spec records every such construct with its JSON pointer and goes on, so that one
//! run reports them all, and no code comes out of a spec with a problem. A spec can never be
//! served differently from what it says.
//!
//! The generated server code names two items of the crate that includes it:
//! `crate::http::server::ApiRoute`, the type of its `ROUTES`, and
//! `crate::http::unexpected::{Unexpected, RETRY_AFTER_SECONDS}`: the handler of an operation
//! that documents a 500 returns `Result<_, Unexpected>`, and the response enum's
//! `From<Unexpected>` answers it with the 500, or the 503 (with `Retry-After`) for an
//! unavailability. It expects `poem`, `poem_openapi`, `serde_json`, `regex`, `chrono` and `uuid`
//! as dependencies of that crate.

mod client;
mod examples;
mod naming;
mod operations;
mod routes;
mod schemas;
mod security;
mod server;
mod spec;

use std::path::Path;

use openapiv3::OpenAPI;
use proc_macro2::TokenStream;

pub use spec::{Errors, Problem};

/// A spec of the project, and what is generated from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The spec's path from the workspace root.
    pub path: &'static str,
    /// The module its code is included under: `<module>_server.rs`, `<module>_client.rs`.
    pub module: &'static str,
    /// Whether the service's crate calls this API, and so needs its client.
    pub client: bool,
}

/// The project's specs. The Order Processor's own client lives in the SDK, generated from the
/// SDK's copy of its spec.
pub const SPECS: &[Spec] = &[
    Spec {
        path: "openapi/order-processor.yaml",
        module: "order_processor",
        client: false,
    },
    Spec {
        path: "openapi/storage-service.yaml",
        module: "storage_service",
        client: true,
    },
];

/// The paths of `SPECS`, for what only reads the specs.
pub const SPEC_PATHS: [&str; SPECS.len()] = {
    let mut paths = [""; SPECS.len()];
    let mut index = 0;
    while index < SPECS.len() {
        paths[index] = SPECS[index].path;
        index += 1;
    }
    paths
};

/// The spec of `SPECS` that `name` names: its path, its file name, or its file stem
/// (`openapi/order-processor.yaml`, `order-processor.yaml`, `order-processor`).
pub fn find_spec(name: &str) -> Option<&'static Spec> {
    let stem = |path: &str| {
        Path::new(path)
            .file_stem()
            .and_then(|stem| stem.to_str())
            .map(str::to_owned)
    };
    let wanted = stem(name)?;
    SPECS
        .iter()
        .find(|spec| stem(spec.path).as_deref() == Some(wanted.as_str()))
}

/// A spec that passed the checks, and its server code.
pub struct Generated {
    spec_path: String,
    spec: OpenAPI,
    server: TokenStream,
}

/// Reads the spec at `spec_path` and generates its server interface, or answers every
/// problem found in it.
pub fn generate(spec_path: impl AsRef<Path>) -> Result<Generated, Errors> {
    let path = spec_path.as_ref();
    let spec_path = path.display().to_string();
    let errors = |problems| Errors {
        spec: spec_path.clone(),
        problems,
    };
    let spec = spec::read(path).map_err(|problem| errors(vec![problem]))?;
    let server = server::generate(&spec).map_err(errors)?;
    Ok(Generated {
        spec_path,
        spec,
        server,
    })
}

impl Generated {
    /// The server interface, as tokens.
    pub fn server_tokens(&self) -> &TokenStream {
        &self.server
    }

    /// The server interface, formatted.
    pub fn server(&self) -> String {
        format(self.server.clone())
    }

    /// The progenitor client, formatted.
    pub fn client(&self) -> Result<String, Errors> {
        client::generate(&self.spec)
            .map(format)
            .map_err(|problem| Errors {
                spec: self.spec_path.clone(),
                problems: vec![problem],
            })
    }
}

/// Rust source for generated tokens.
fn format(tokens: TokenStream) -> String {
    let syntax = syn::parse2::<syn::File>(tokens)
        .unwrap_or_else(|err| panic!("the generated code does not parse: {err}"));
    prettyplease::unparse(&syntax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_found_by_path_file_name_or_stem() {
        for name in [
            "openapi/storage-service.yaml",
            "storage-service.yaml",
            "storage-service",
        ] {
            assert_eq!(
                find_spec(name).map(|spec| spec.module),
                Some("storage_service")
            );
        }
        assert_eq!(find_spec("books-service"), None);
    }
}
