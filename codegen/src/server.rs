//! The server generator: one walk over the spec that turns it into a poem-openapi server
//! interface and records every construct it cannot turn into one. The walk goes on past a
//! problem, so that one run reports them all; its code is only handed out when there is none.

use openapiv3::OpenAPI;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::{Map, Value};

use crate::{examples::Examples, naming::variant_ident, routes::RouteData, spec::Problem};

/// Walks one spec; `generate` assembles what it collected.
pub(crate) struct Generator<'a> {
    pub(crate) spec: &'a OpenAPI,
    /// What the spec asks that the generator cannot do, in the order met.
    pub(crate) problems: Vec<Problem>,
    /// Example functions, in the order they were needed.
    pub(crate) examples: Vec<TokenStream>,
    /// Every distinct `pattern`, in the order met: each becomes a static `CompiledPattern`.
    /// poem-openapi's own `pattern` validator compiles its regex on every check, which cost
    /// more CPU than the rest of an order; a `custom` validator checks with a regex compiled
    /// once, but poem-openapi leaves it out of the document, so the patterns are written into
    /// it by `Api` from `property_patterns` and `parameter_patterns`.
    pub(crate) patterns: Vec<String>,
    /// (schema, property, pattern) of each patterned property.
    pub(crate) property_patterns: Vec<(String, String, String)>,
    /// (operationId, parameter, pattern) of each patterned parameter.
    pub(crate) parameter_patterns: Vec<(String, String, String)>,
    /// The paths with their methods, header parameters and security, for `ROUTES`.
    pub(crate) routes: Vec<RouteData>,
    /// The examples of the answers, checked by `document_additions()`.
    pub(crate) answer_examples: Examples,
    /// What `document_additions()` merges into the served document: the answers' examples
    /// and the components they name, the security schemes and each operation's security.
    pub(crate) additions: Map<String, Value>,
}

/// The server interface of `spec`, or every problem that stands in the way.
pub(crate) fn generate(spec: &OpenAPI) -> Result<TokenStream, Vec<Problem>> {
    let mut generator = Generator::new(spec);
    let tags = generator.tags();
    generator.security_schemes();
    let schemas = generator.schemas();
    let operations = generator.operations();
    generator.check_component_examples();
    if !generator.problems.is_empty() {
        return Err(generator.problems);
    }
    let examples = &generator.examples;
    let service = generator.service();
    let patterns = generator.compiled_patterns();
    let api = generator.documented_api();
    let routes = generator.route_table();
    let additions = generator.document_additions();
    Ok(quote! {
        use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Tags, payload::Json, types::{ParseError, ParseFromJSON}};

        /// Implemented by the error body of the operations, to answer a request that
        /// could not be parsed (malformed JSON, a broken constraint, a wrong content type)
        /// in the documented shape. poem names path parameters `param0`, `param1`... in
        /// their order in the path; `path_params` holds their names in the spec.
        pub trait FromRequestError {
            fn from_request_error(err: poem::Error, path_params: &[&str]) -> Self;
        }

        /// Parses one field of an object, naming the field in the error: poem-openapi's own
        /// message says which type it expected but not where. It is also stricter than
        /// poem-openapi where the schema is: no schema here is nullable, so an explicit `null`
        /// is refused, and a string field takes only a JSON string, not a number.
        fn parse_field<T: ParseFromJSON>(name: &str, value: Option<serde_json::Value>) -> Result<T, ParseError<T>> {
            let refuse = |message: &str| Err(ParseError::custom(format!("field `{name}` {message}")));
            match &value {
                None => {}
                Some(serde_json::Value::Null) => return refuse("must not be null"),
                Some(value) => {
                    if let poem_openapi::registry::MetaSchemaRef::Inline(schema) = T::schema_ref()
                        && schema.ty == "string"
                        && !value.is_string()
                    {
                        return refuse("must be a string");
                    }
                }
            }
            let missing = value.is_none();
            T::parse_from_json(value).map_err(|err| {
                if missing {
                    ParseError::custom(format!("field `{name}` is required"))
                } else {
                    ParseError::custom(format!("field `{name}` {}", err.into_message()))
                }
            })
        }

        /// A JSON answer, written by serde straight from its value. poem-openapi's `Json`
        /// builds a `serde_json::Value` of the whole answer first, and then writes that.
        /// Every type it holds writes the same JSON either way, which `answer_example`
        /// checks on each example of the spec.
        #[derive(Debug)]
        pub struct JsonAnswer<T>(pub T);

        impl<T: poem_openapi::types::Type> poem_openapi::payload::Payload for JsonAnswer<T> {
            const CONTENT_TYPE: &'static str = <Json<T> as poem_openapi::payload::Payload>::CONTENT_TYPE;

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                T::schema_ref()
            }

            fn register(registry: &mut poem_openapi::registry::Registry) {
                T::register(registry);
            }
        }

        impl<T: serde::Serialize + Send> poem::IntoResponse for JsonAnswer<T> {
            fn into_response(self) -> poem::Response {
                poem::web::Json(self.0).into_response()
            }
        }

        /// Writes a field as poem-openapi would: for a date-time, `to_rfc3339`, with
        /// `+00:00` where chrono's serde writes `Z`.
        fn as_poem_json<T: poem_openapi::types::ToJSON, S: serde::Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
            serde::Serialize::serialize(&value.to_json(), serializer)
        }

        /// Parses an example of the spec. Examples are only built when the document is
        /// generated, and the round-trip test generates every one of them.
        fn example<T: ParseFromJSON>(json: &str) -> T {
            let value = serde_json::from_str(json).expect("an example in the spec is valid JSON");
            T::parse_from_json(Some(value)).unwrap_or_else(|err| {
                panic!("an example in the spec does not match its schema: {}", err.into_message())
            })
        }

        /// Parses an example of an answer or of a component schema, as `example` does, and
        /// checks that `JsonAnswer` writes it as poem-openapi's `Json` would.
        fn answer_example<T: ParseFromJSON + poem_openapi::types::ToJSON + serde::Serialize>(json: &str) {
            let answer: T = example(json);
            let written = serde_json::to_value(&answer).expect("an answer is JSON");
            assert_eq!(Some(written), answer.to_json(), "serde and poem-openapi write {json} apart");
        }

        #tags
        #patterns
        #schemas
        #operations
        #api
        #(#examples)*
        #service
        #routes
        #additions
    })
}

/// `#[doc = "..."]`, which poem-openapi turns into `description` (or `summary`).
pub(crate) fn doc(text: Option<&str>) -> TokenStream {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => quote!(#[doc = #text]),
        None => quote!(),
    }
}

impl<'a> Generator<'a> {
    pub(crate) fn new(spec: &'a OpenAPI) -> Self {
        Self {
            spec,
            problems: Vec::new(),
            examples: Vec::new(),
            patterns: Vec::new(),
            property_patterns: Vec::new(),
            parameter_patterns: Vec::new(),
            routes: Vec::new(),
            answer_examples: Examples::default(),
            additions: Map::new(),
        }
    }

    /// Records a problem at `pointer`; the walk goes on.
    pub(crate) fn refuse(&mut self, pointer: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(pointer, message));
    }

    fn tags(&mut self) -> TokenStream {
        if self.spec.tags.is_empty() {
            self.refuse("#/tags", "the spec must declare its tags");
        }
        let variants = self.spec.tags.iter().map(|tag| {
            let variant = variant_ident(&tag.name);
            let name = &tag.name;
            let doc = doc(tag.description.as_deref());
            quote!(#doc #[oai(rename = #name)] #variant)
        });
        quote! {
            #[derive(Tags)]
            pub enum ApiTags { #(#variants),* }
        }
    }

    fn service(&self) -> TokenStream {
        let info = &self.spec.info;
        let title = &info.title;
        let version = &info.version;
        let description = match &info.description {
            Some(text) => quote!(.description(#text)),
            None => quote!(),
        };
        let servers = self.spec.servers.iter().map(|server| {
            let url = &server.url;
            let description = match &server.description {
                Some(text) => quote!(.description(#text)),
                None => quote!(),
            };
            quote!(.server(poem_openapi::ServerObject::new(#url) #description))
        });
        quote! {
            /// The OpenAPI service of `handlers`, with the spec's title, version, description
            /// and servers.
            pub fn service<H: Handlers>(handlers: H) -> poem_openapi::OpenApiService<Api<H>, ()> {
                poem_openapi::OpenApiService::new(Api(handlers), #title, #version)
                    #description
                    #(#servers)*
            }
        }
    }

    /// `Api`: the operations, with the `pattern` of every patterned property and parameter
    /// written into the document, where poem-openapi puts nothing for a `custom` validator.
    fn documented_api(&self) -> TokenStream {
        let properties = self
            .property_patterns
            .iter()
            .map(|(schema, property, pattern)| quote!((#schema, #property, #pattern)));
        let parameters = self
            .parameter_patterns
            .iter()
            .map(|(operation, parameter, pattern)| quote!((#operation, #parameter, #pattern)));
        quote! {
            /// The API served: `Operations`, with the patterns in its document.
            pub struct Api<H>(pub H);

            /// (schema, property, pattern)
            const PROPERTY_PATTERNS: &[(&str, &str, &str)] = &[#(#properties),*];
            /// (operationId, parameter, pattern)
            const PARAMETER_PATTERNS: &[(&str, &str, &str)] = &[#(#parameters),*];

            impl<H: Handlers> OpenApi for Api<H> {
                fn meta() -> Vec<poem_openapi::registry::MetaApi> {
                    let mut meta = Operations::<H>::meta();
                    let operations = meta
                        .iter_mut()
                        .flat_map(|api| &mut api.paths)
                        .flat_map(|path| &mut path.operations);
                    for operation in operations {
                        for parameter in &mut operation.params {
                            let pattern = PARAMETER_PATTERNS.iter().find(|(id, name, _)| {
                                operation.operation_id == Some(*id) && parameter.name == *name
                            });
                            if let Some((_, _, pattern)) = pattern {
                                set_pattern(&mut parameter.schema, pattern);
                            }
                        }
                    }
                    meta
                }

                fn register(registry: &mut poem_openapi::registry::Registry) {
                    Operations::<H>::register(registry);
                    for (schema, property, pattern) in PROPERTY_PATTERNS {
                        let properties = registry
                            .schemas
                            .get_mut(*schema)
                            .into_iter()
                            .flat_map(|schema| &mut schema.properties);
                        for (_, schema) in properties.filter(|(name, _)| name == property) {
                            set_pattern(schema, pattern);
                        }
                    }
                }

                fn add_routes(
                    self,
                    route_table: &mut std::collections::HashMap<
                        String,
                        std::collections::HashMap<poem::http::Method, poem::endpoint::BoxEndpoint<'static>>,
                    >,
                ) {
                    Operations(self.0).add_routes(route_table)
                }
            }

            fn set_pattern(schema: &mut poem_openapi::registry::MetaSchemaRef, pattern: &str) {
                if let poem_openapi::registry::MetaSchemaRef::Inline(schema) = schema {
                    schema.pattern = Some(pattern.to_owned());
                }
            }
        }
    }
}
