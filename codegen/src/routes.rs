//! `ROUTES`: the paths of the API with the methods they answer, the header parameters of
//! each method's operation and the scopes of each operation that needs a bearer token, so that
//! the server knows its routes without reading its document (for the `Allow` header of a 405,
//! the route in the access log, the header checks and the token checks).

use std::collections::BTreeMap;

use openapiv3::{Operation, Parameter, ReferenceOr};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::server::Generator;

/// The type that the generated `ROUTES` lists, defined once by the crate that includes the
/// generated code.
const ROUTE_TYPE: &str = "crate::http::server::ApiRoute";

/// One path of the spec: its template, and for each of its methods (lower case, in
/// alphabetical order) the names of the header parameters and, when it needs a bearer token,
/// the scopes the token must hold.
pub(crate) struct RouteData {
    template: String,
    methods: BTreeMap<String, Vec<String>>,
    security: BTreeMap<String, Vec<String>>,
}

impl RouteData {
    pub(crate) fn new(template: &str) -> Self {
        Self {
            template: template.to_owned(),
            methods: BTreeMap::new(),
            security: BTreeMap::new(),
        }
    }

    /// `scopes` is `None` for an open operation.
    pub(crate) fn add_operation(
        &mut self,
        method: &str,
        operation: &Operation,
        scopes: Option<Vec<String>>,
    ) {
        if let Some(scopes) = scopes {
            self.security.insert(method.to_owned(), scopes);
        }
        let headers = operation
            .parameters
            .iter()
            .filter_map(|parameter| match parameter {
                ReferenceOr::Item(Parameter::Header { parameter_data, .. }) => {
                    Some(parameter_data.name.clone())
                }
                _ => None,
            });
        self.methods.insert(method.to_owned(), headers.collect());
    }
}

impl Generator<'_> {
    /// `pub const ROUTES`, sorted by template as the served document lists its paths: the
    /// server matches a path against them in this order.
    pub(crate) fn route_table(&self) -> TokenStream {
        let route_type: syn::Path = syn::parse_str(ROUTE_TYPE).expect("ROUTE_TYPE is a Rust path");
        let mut routes: Vec<&RouteData> = self.routes.iter().collect();
        routes.sort_by(|a, b| a.template.cmp(&b.template));
        let routes = routes.into_iter().map(|route| {
            let template = &route.template;
            let method = |name: &str| {
                let name = format_ident!("{}", name.to_uppercase());
                quote!(poem::http::Method::#name)
            };
            let methods = route.methods.keys().map(|name| method(name));
            let headers = route.methods.iter().flat_map(|(name, headers)| {
                let method = method(name);
                headers.iter().map(move |header| quote!((#method, #header)))
            });
            let security = route.security.iter().map(|(name, scopes)| {
                let method = method(name);
                quote!((#method, &[#(#scopes),*]))
            });
            quote! {
                #route_type {
                    template: #template,
                    methods: &[#(#methods),*],
                    headers: &[#(#headers),*],
                    security: &[#(#security),*],
                }
            }
        });
        quote! {
            /// The paths of the API, with the methods each answers, the header parameters of
            /// each method's operation, and the scopes of each method's operation that needs
            /// a bearer token (all of them; none: a valid token is enough). A method not in
            /// `security` is open.
            pub const ROUTES: &[#route_type] = &[#(#routes),*];
        }
    }
}
