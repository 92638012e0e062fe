//! `ROUTES`: the paths of the API with the methods they answer and the header parameters of
//! each method's operation, so that the server knows its routes without reading its document
//! (for the `Allow` header of a 405, the route in the access log and the header checks).

use std::collections::BTreeMap;

use openapiv3::{Operation, Parameter, ReferenceOr};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::server::Generator;

/// The type that the generated `ROUTES` lists, defined once by the crate that includes the
/// generated code.
const ROUTE_TYPE: &str = "crate::http::server::ApiRoute";

/// One path of the spec: its template, and for each of its methods (lower case, in
/// alphabetical order) the names of the header parameters.
pub(crate) struct RouteData {
    template: String,
    methods: BTreeMap<String, Vec<String>>,
}

impl RouteData {
    pub(crate) fn new(template: &str) -> Self {
        Self {
            template: template.to_owned(),
            methods: BTreeMap::new(),
        }
    }

    pub(crate) fn add_operation(&mut self, method: &str, operation: &Operation) {
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
            quote! {
                #route_type {
                    template: #template,
                    methods: &[#(#methods),*],
                    headers: &[#(#headers),*],
                }
            }
        });
        quote! {
            /// The paths of the API, with the methods each answers and the header parameters
            /// of each method's operation.
            pub const ROUTES: &[#route_type] = &[#(#routes),*];
        }
    }
}
