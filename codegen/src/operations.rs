//! Operations: their parameters, request bodies and responses, the `Handlers` trait that
//! hand-written code implements, and the poem-openapi `Operations` that calls it.

use std::collections::BTreeSet;

use openapiv3::{
    Operation, Parameter, ParameterSchemaOrContent, ReferenceOr, RequestBody, Response, StatusCode,
};
use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::{
    examples::Answer,
    naming::{field_ident, ident, response_ident, status_variant, variant_ident},
    routes::RouteData,
    server::{Generator, doc},
    spec::escape_pointer,
};

/// Statuses other than 400 that poem gives to a request it cannot parse.
const PARSE_FAILURE_STATUSES: &[u16] = &[413, 415];

/// The module of the crate that includes the generated code where `Unexpected`, the error of
/// a handler that answers 500 or 503, and `RETRY_AFTER_SECONDS` are defined.
const UNEXPECTED_MODULE: &str = "crate::http::unexpected";

/// A response enum, and whether it answers a handler's `Unexpected` error.
struct GeneratedResponses {
    items: TokenStream,
    answers_unexpected: bool,
}

struct GeneratedOperation {
    response: TokenStream,
    trait_method: TokenStream,
    api_method: TokenStream,
}

struct GeneratedParameter {
    api_arg: TokenStream,
    trait_arg: TokenStream,
    call_arg: TokenStream,
}

impl Generator<'_> {
    pub(crate) fn operations(&mut self) -> TokenStream {
        let mut items = Vec::new();
        let mut trait_methods = Vec::new();
        let mut api_methods = Vec::new();
        let mut operation_ids = BTreeSet::new();
        let spec = self.spec;
        for (path, item) in &spec.paths.paths {
            let path_pointer = format!("#/paths/{}", escape_pointer(path));
            let ReferenceOr::Item(item) = item else {
                self.refuse(&path_pointer, "path references are not supported");
                continue;
            };
            if !item.parameters.is_empty() {
                self.refuse(
                    &path_pointer,
                    "path-level parameters are not supported; declare them on each operation",
                );
            }
            let mut route = RouteData::new(path);
            for (method, operation) in item.iter() {
                let pointer = format!("{path_pointer}/{method}");
                let Some(operation_id) = &operation.operation_id else {
                    self.refuse(&pointer, "every operation needs an operationId");
                    continue;
                };
                if !operation_ids.insert(operation_id.clone()) {
                    self.refuse(
                        &pointer,
                        format!("operationId {operation_id} is not unique"),
                    );
                    continue;
                }
                let security = self.operation_security(path, method, operation, &pointer);
                route.add_operation(method, operation, security);
                let generated = self.operation(path, method, operation_id, operation, &pointer);
                if let Some(generated) = generated {
                    items.push(generated.response);
                    trait_methods.push(generated.trait_method);
                    api_methods.push(generated.api_method);
                }
            }
            self.routes.push(route);
        }
        quote! {
            #(#items)*

            /// What hand-written code implements: one method per operation, taking the parsed
            /// and validated parameters and body, answering with the operation's responses.
            pub trait Handlers: Send + Sync + 'static {
                #(#trait_methods)*
            }

            /// The poem-openapi operations over a `Handlers` implementation; served as `Api`.
            pub struct Operations<H>(pub H);

            #[OpenApi]
            impl<H: Handlers> Operations<H> {
                #(#api_methods)*
            }
        }
    }

    fn operation(
        &mut self,
        path: &str,
        method: &str,
        operation_id: &str,
        operation: &Operation,
        pointer: &str,
    ) -> Option<GeneratedOperation> {
        let before = self.problems.len();
        match operation.summary.as_deref() {
            None => self.refuse(pointer, "every operation needs a summary"),
            Some(summary) if summary.contains("\n\n") => {
                self.refuse(pointer, "a summary must be one paragraph");
            }
            Some(_) => {}
        }
        if !operation.callbacks.is_empty() || !operation.servers.is_empty() || operation.deprecated
        {
            self.refuse(
                pointer,
                "callbacks, servers and deprecated on operations are not supported",
            );
        }
        let op_ident = ident(operation_id);
        let response_ident = response_ident(operation_id);

        let mut params = Vec::new();
        let mut trait_args = Vec::new();
        let mut call_args = Vec::new();
        let mut parses_request = false;
        for (index, parameter) in operation.parameters.iter().enumerate() {
            parses_request = true;
            let param_pointer = format!("{pointer}/parameters/{index}");
            let ReferenceOr::Item(parameter) = parameter else {
                self.refuse(&param_pointer, "parameter references are not supported");
                continue;
            };
            if let Some(generated) = self.parameter(operation_id, parameter, &param_pointer) {
                params.push(generated.api_arg);
                trait_args.push(generated.trait_arg);
                call_args.push(generated.call_arg);
            }
        }
        if let Some(body) = &operation.request_body {
            parses_request = true;
            let body_pointer = format!("{pointer}/requestBody");
            if let Some(ty) = self.request_body(body, &body_pointer) {
                params.push(quote!(body: Json<#ty>));
                trait_args.push(quote!(body: #ty));
                call_args.push(quote!(body.0));
            }
        }

        let responses = self.responses(
            &response_ident,
            path,
            method,
            operation_id,
            operation,
            parses_request,
            pointer,
        );

        for tag in &operation.tags {
            if !self.spec.tags.iter().any(|declared| &declared.name == tag) {
                self.refuse(pointer, format!("tag {tag} is not declared in #/tags"));
            }
        }
        if self.problems.len() > before {
            return None;
        }
        let tags = operation.tags.iter().map(|tag| {
            let variant = variant_ident(tag);
            quote!(ApiTags::#variant)
        });
        let tags: Vec<_> = tags.collect();
        let summary = operation.summary.as_deref().unwrap_or_default();
        let text = match &operation.description {
            Some(description) => format!("{summary}\n\n{}", description.trim()),
            None => summary.to_owned(),
        };
        let poem_path = path.replace('{', ":").replace('}', "");
        let poem_path = poem_path.as_str();
        let responses = responses?;
        // An operation that documents a 500 lets its handler fail with `Unexpected`, which the
        // response enum turns into the documented 500 or 503.
        let (output, answer) = if responses.answers_unexpected {
            let unexpected = unexpected_type();
            (
                quote!(Result<#response_ident, #unexpected>),
                quote!(.unwrap_or_else(#response_ident::from)),
            )
        } else {
            (quote!(#response_ident), quote!())
        };
        Some(GeneratedOperation {
            response: responses.items,
            trait_method: quote! {
                #[doc = #summary]
                fn #op_ident(&self, #(#trait_args),*) -> impl Future<Output = #output> + Send;
            },
            api_method: quote! {
                #[doc = #text]
                #[oai(path = #poem_path, method = #method, operation_id = #operation_id #(, tag = #tags)*)]
                async fn #op_ident(&self, #(#params),*) -> #response_ident {
                    self.0.#op_ident(#(#call_args),*).await #answer
                }
            },
        })
    }

    fn parameter(
        &mut self,
        operation_id: &str,
        parameter: &Parameter,
        pointer: &str,
    ) -> Option<GeneratedParameter> {
        let before = self.problems.len();
        let data = parameter.parameter_data_ref();
        let ParameterSchemaOrContent::Schema(schema) = &data.format else {
            self.refuse(pointer, "parameters with `content` are not supported");
            return None;
        };
        if data.deprecated.unwrap_or(false) || data.explode.is_some() || !data.examples.is_empty() {
            self.refuse(
                pointer,
                "deprecated, explode and examples on parameters are not supported",
            );
        }
        let (extractor, style_ok) = match parameter {
            Parameter::Path { style, .. } => (
                quote!(poem_openapi::param::Path),
                matches!(style, openapiv3::PathStyle::Simple),
            ),
            Parameter::Query {
                style,
                allow_reserved,
                allow_empty_value,
                ..
            } => (
                quote!(poem_openapi::param::Query),
                matches!(style, openapiv3::QueryStyle::Form)
                    && !allow_reserved
                    && allow_empty_value.is_none(),
            ),
            Parameter::Header { style, .. } => (
                quote!(poem_openapi::param::Header),
                matches!(style, openapiv3::HeaderStyle::Simple),
            ),
            Parameter::Cookie { .. } => {
                self.refuse(pointer, "cookie parameters are not supported");
                return None;
            }
        };
        if !style_ok {
            self.refuse(
                pointer,
                "only the default style of each parameter location is supported",
            );
        }
        let rust = self.rust_type(schema, &format!("{pointer}/schema"));
        if self.problems.len() > before {
            return None;
        }
        let rust = rust?;
        let name = &data.name;
        if let Some(pattern) = &rust.pattern {
            self.parameter_patterns
                .push((operation_id.to_owned(), name.clone(), pattern.clone()));
        }
        let arg = field_ident(name);
        let ty = rust.ty;
        let default = match schema {
            ReferenceOr::Item(schema) => schema.schema_data.default.clone(),
            ReferenceOr::Reference { .. } => None,
        };
        let mut options = vec![quote!(name = #name)];
        let value_ty = if let Some(default) = default {
            let function = format_ident!("{operation_id}_{}_default", arg);
            let json = default.to_string();
            self.examples.push(quote! {
                fn #function() -> #ty { example(#json) }
            });
            let function = function.to_string();
            options.push(quote!(default = #function));
            ty
        } else if data.required {
            ty
        } else {
            quote!(Option<#ty>)
        };
        if let Some(value) = &data.example {
            let function = format_ident!("{operation_id}_{}_example", arg);
            let json = value.to_string();
            self.examples.push(quote! {
                fn #function() -> #value_ty { example(#json) }
            });
            let function = function.to_string();
            options.push(quote!(example = #function));
        }
        if !rust.validators.is_empty() {
            let validators = &rust.validators;
            options.push(quote!(validator(#(#validators),*)));
        }
        let doc = doc(data.description.as_deref());
        Some(GeneratedParameter {
            api_arg: quote!(#doc #[oai(#(#options),*)] #arg: #extractor<#value_ty>),
            trait_arg: quote!(#arg: #value_ty),
            call_arg: quote!(#arg.0),
        })
    }

    fn request_body(
        &mut self,
        body: &ReferenceOr<RequestBody>,
        pointer: &str,
    ) -> Option<TokenStream> {
        let ReferenceOr::Item(body) = body else {
            self.refuse(pointer, "request body references are not supported");
            return None;
        };
        if !body.required || body.description.is_some() {
            self.refuse(
                pointer,
                "a request body must be required and carry no description",
            );
        }
        match self.json_content(&body.content, &format!("{pointer}/content"), false) {
            Ok(Some(ty)) => Some(ty),
            Err(()) => None,
            Ok(None) => {
                self.refuse(pointer, "a request body needs application/json content");
                None
            }
        }
    }

    /// The type of an `application/json` content map, which must hold a schema reference;
    /// `Ok(None)` for no content. A response's content may name examples (`answer`); they are
    /// checked and kept by `response_examples`.
    fn json_content(
        &mut self,
        content: &openapiv3::Content,
        pointer: &str,
        answer: bool,
    ) -> Result<Option<TokenStream>, ()> {
        let before = self.problems.len();
        let mut types = None;
        for (media_type, media) in content {
            let media_pointer = format!("{pointer}/{}", escape_pointer(media_type));
            if media_type != "application/json" {
                self.refuse(&media_pointer, "only application/json content is supported");
                continue;
            }
            if !answer && (media.example.is_some() || !media.examples.is_empty()) {
                self.refuse(&media_pointer, "examples belong on the component schema");
            }
            if answer && media.example.is_some() {
                self.refuse(
                    &media_pointer,
                    "an answer names its examples under `examples`",
                );
            }
            if !media.encoding.is_empty() {
                self.refuse(&media_pointer, "encoding is not supported");
            }
            let Some(schema) = &media.schema else {
                self.refuse(&media_pointer, "content needs a schema");
                continue;
            };
            let Some(rust) = self.rust_type(schema, &format!("{media_pointer}/schema")) else {
                continue;
            };
            if !rust.validators.is_empty() || !matches!(schema, ReferenceOr::Reference { .. }) {
                self.refuse(
                    &media_pointer,
                    "content must reference a component object schema",
                );
                continue;
            }
            types = Some(rust.ty);
        }
        if self.problems.len() > before {
            return Err(());
        }
        Ok(types)
    }

    #[allow(clippy::too_many_arguments)]
    fn responses(
        &mut self,
        response_ident: &Ident,
        path: &str,
        method: &str,
        operation_id: &str,
        operation: &Operation,
        parses_request: bool,
        pointer: &str,
    ) -> Option<GeneratedResponses> {
        let before = self.problems.len();
        let responses = &operation.responses;
        let pointer = format!("{pointer}/responses");
        if responses.default.is_some() {
            self.refuse(
                &format!("{pointer}/default"),
                "default responses are not supported; list each status",
            );
        }
        let mut variants = Vec::new();
        let mut error_arms = Vec::new();
        let mut bad_request = None;
        let mut internal = None;
        let mut unavailable = None;
        for (status, response) in &responses.responses {
            let StatusCode::Code(code) = status else {
                self.refuse(&pointer, "status ranges are not supported");
                continue;
            };
            let response_pointer = format!("{pointer}/{code}");
            let ReferenceOr::Item(response) = response else {
                self.refuse(&response_pointer, "response references are not supported");
                continue;
            };
            let variant = status_variant(*code);
            if variant.is_none() {
                self.refuse(&response_pointer, format!("status {code} is not supported"));
            }
            let content_pointer = format!("{response_pointer}/content");
            let body = self.json_content(&response.content, &content_pointer, true);
            if let (Ok(Some(ty)), Some(media)) = (&body, response.content.get("application/json")) {
                let answer = Answer {
                    path,
                    method,
                    status: *code,
                    ty,
                };
                let pointer = format!("{content_pointer}/application~1json/examples");
                self.response_examples(&answer, media, &pointer);
            }
            let headers = self.response_headers(response, &response_pointer);
            let (Some(variant), Ok(body), Some(headers)) = (variant, body, headers) else {
                continue;
            };
            match code {
                500 if body.is_none() || !response.headers.is_empty() => self.refuse(
                    &response_pointer,
                    "a 500 response answers unexpected errors: it needs a body and no headers",
                ),
                500 => internal = Some(variant.clone()),
                503 if body.is_none() || !only_retry_after(response) => self.refuse(
                    &response_pointer,
                    "a 503 response answers unexpected errors: it needs a body and no header but Retry-After",
                ),
                503 => unavailable = Some((variant.clone(), retry_after(response))),
                _ => {}
            }
            let doc = doc(Some(&response.description));
            let fields = body.iter().map(|ty| quote!(JsonAnswer<#ty>)).chain(headers);
            variants.push(quote!(#doc #[oai(status = #code)] #variant(#(#fields),*)));
            if response_has_only_body(response) {
                if *code == 400 {
                    bad_request = body.map(|ty| (variant.clone(), ty));
                } else if let Some(ty) = body {
                    error_arms.push((*code, variant.clone(), ty));
                }
            }
        }
        if self.problems.len() > before {
            return None;
        }
        let handler_attr;
        let handler;
        if parses_request {
            let Some((bad_request_variant, problem)) = bad_request else {
                self.refuse(
                    &pointer,
                    "an operation with parameters or a body needs a 400 response with a body and no headers",
                );
                return None;
            };
            let handler_ident = format_ident!("{operation_id}_bad_request");
            let handler_name = handler_ident.to_string();
            handler_attr = quote!(#[oai(bad_request_handler = #handler_name)]);
            // A request that cannot be parsed keeps the status poem gave it (a body over the
            // limit, a wrong content type) when the operation documents that status with the
            // same body; every other parse failure is a 400.
            let arms = error_arms
                .iter()
                .filter(|(code, _, ty)| PARSE_FAILURE_STATUSES.contains(code) && ty.to_string() == problem.to_string())
                .map(|(code, variant, _)| {
                    quote!(#code => #response_ident::#variant(JsonAnswer(#problem::from_request_error(err, PATH_PARAMS))),)
                });
            let arms: Vec<_> = arms.collect();
            let bad_request = quote!(#response_ident::#bad_request_variant(JsonAnswer(#problem::from_request_error(err, PATH_PARAMS))));
            let path_params = path_parameters(path);
            let body = if arms.is_empty() {
                bad_request
            } else {
                quote! {
                    match err.status().as_u16() {
                        #(#arms)*
                        _ => #bad_request,
                    }
                }
            };
            handler = quote! {
                fn #handler_ident(err: poem::Error) -> #response_ident {
                    const PATH_PARAMS: &[&str] = &[#(#path_params),*];
                    #body
                }
            };
        } else {
            handler_attr = quote!();
            handler = quote!();
        }
        let answers_unexpected = internal.is_some();
        let from_unexpected = internal.map(|internal| {
            answer_unexpected(response_ident, operation_id, &internal, unavailable)
        });
        Some(GeneratedResponses {
            items: quote! {
                #[derive(ApiResponse, Debug)]
                #handler_attr
                pub enum #response_ident { #(#variants),* }
                #handler
                #from_unexpected
            },
            answers_unexpected,
        })
    }

    /// The header fields of a response variant; `None` when a problem stands in the way.
    fn response_headers(&mut self, response: &Response, pointer: &str) -> Option<Vec<TokenStream>> {
        let before = self.problems.len();
        let mut headers = Vec::new();
        for (name, header) in &response.headers {
            let header_pointer = format!("{pointer}/headers/{}", escape_pointer(name));
            let ReferenceOr::Item(header) = header else {
                self.refuse(&header_pointer, "header references are not supported");
                continue;
            };
            let ParameterSchemaOrContent::Schema(schema) = &header.format else {
                self.refuse(&header_pointer, "headers with `content` are not supported");
                continue;
            };
            if header.deprecated.unwrap_or(false) || header.example.is_some() {
                self.refuse(
                    &header_pointer,
                    "deprecated and example on headers are not supported",
                );
            }
            let Some(rust) = self.rust_type(schema, &format!("{header_pointer}/schema")) else {
                continue;
            };
            if !rust.validators.is_empty() {
                self.refuse(
                    &header_pointer,
                    "poem-openapi cannot declare constraints on response headers",
                );
                continue;
            }
            let ty = rust.ty;
            let ty = if header.required {
                ty
            } else {
                quote!(Option<#ty>)
            };
            let doc = doc(header.description.as_deref());
            headers.push(quote!(#doc #[oai(header = #name)] #ty));
        }
        (self.problems.len() == before).then_some(headers)
    }
}

fn unexpected_type() -> TokenStream {
    let module: syn::Path =
        syn::parse_str(UNEXPECTED_MODULE).expect("UNEXPECTED_MODULE is a Rust path");
    quote!(#module::Unexpected)
}

/// Whether a response declares no header but `Retry-After`.
fn only_retry_after(response: &Response) -> bool {
    response
        .headers
        .keys()
        .all(|name| name.eq_ignore_ascii_case("Retry-After"))
}

/// Whether a response declares `Retry-After`, and if so whether it is required.
fn retry_after(response: &Response) -> Option<bool> {
    response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("Retry-After"))
        .map(|(_, header)| matches!(header, ReferenceOr::Item(header) if header.required))
}

/// `From<Unexpected>` for a response enum with a 500 variant (`internal`) and maybe a 503
/// (`unavailable`, with whether its `Retry-After` is declared and required): an unavailability
/// is answered with the 503 where there is one, everything else with the 500.
fn answer_unexpected(
    response_ident: &Ident,
    operation_id: &str,
    internal: &Ident,
    unavailable: Option<(Ident, Option<bool>)>,
) -> TokenStream {
    let module: syn::Path =
        syn::parse_str(UNEXPECTED_MODULE).expect("UNEXPECTED_MODULE is a Rust path");
    let unexpected = unexpected_type();
    let internal = quote! {
        Self::#internal(JsonAnswer(unexpected.into_problem(#operation_id, poem::http::StatusCode::INTERNAL_SERVER_ERROR).into()))
    };
    let body = match unavailable {
        Some((variant, retry_after)) => {
            let retry_after = match retry_after {
                None => quote!(),
                Some(true) => quote!(, #module::RETRY_AFTER_SECONDS),
                Some(false) => quote!(, Some(#module::RETRY_AFTER_SECONDS)),
            };
            quote! {
                if unexpected.is_unavailable() {
                    Self::#variant(JsonAnswer(unexpected.into_problem(#operation_id, poem::http::StatusCode::SERVICE_UNAVAILABLE).into()) #retry_after)
                } else {
                    #internal
                }
            }
        }
        None => internal,
    };
    quote! {
        impl From<#unexpected> for #response_ident {
            fn from(unexpected: #unexpected) -> Self {
                #body
            }
        }
    }
}

/// The names of the variables of a path template, in order.
fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn response_has_only_body(response: &Response) -> bool {
    response.headers.is_empty() && response.content.len() == 1
}
