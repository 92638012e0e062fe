//! Turns each OpenAPI document in `openapi/` into two Rust modules in `OUT_DIR`:
//! `<name>_server.rs`, a typed poem-openapi server interface (types with the spec's
//! validators, one response enum per operation and a `Handlers` trait that hand-written code
//! implements), and `<name>_client.rs`, a progenitor client.
//!
//! The server generator covers the part of OpenAPI 3.0 that the specs use. Anything else
//! stops the build with the file and the JSON pointer of the construct, so that a spec can
//! never be served differently from what it says.

use std::{collections::BTreeSet, fmt, fs, path::Path, process};

use heck::{ToSnakeCase, ToUpperCamelCase};
use openapiv3::{
    IntegerFormat, OpenAPI, Operation, Parameter, ParameterSchemaOrContent, ReferenceOr,
    RequestBody, Response, Schema, SchemaKind, StatusCode, StringFormat, Type,
    VariantOrUnknownOrEmpty,
};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

/// Statuses other than 400 that poem gives to a request it cannot parse.
const PARSE_FAILURE_STATUSES: &[u16] = &[413, 415];

/// The specs, and the module name their generated code is written under.
const SPECS: &[(&str, &str)] = &[
    ("openapi/order-processor.yaml", "order_processor"),
    ("openapi/storage-service.yaml", "storage_service"),
];

fn main() {
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    for (spec_path, module) in SPECS {
        println!("cargo:rerun-if-changed={spec_path}");
        let spec = read_spec(spec_path).unwrap_or_else(|message| fail(spec_path, &message));
        let server = generate_server(&spec).unwrap_or_else(|err| fail(spec_path, &err.to_string()));
        write_rust(&out_dir, &format!("{module}_server.rs"), server);
        let client = generate_client(&spec).unwrap_or_else(|message| fail(spec_path, &message));
        write_rust(&out_dir, &format!("{module}_client.rs"), client);
    }
}

fn fail(spec_path: &str, message: &str) -> ! {
    eprintln!("error: {spec_path}: {message}");
    process::exit(1);
}

fn read_spec(path: &str) -> Result<OpenAPI, String> {
    let text = fs::read_to_string(path).map_err(|err| format!("cannot read: {err}"))?;
    let spec: OpenAPI =
        serde_yaml::from_str(&text).map_err(|err| format!("not an OpenAPI 3.0 document: {err}"))?;
    if !spec.openapi.starts_with("3.0.") {
        return Err(format!("#/openapi: version {} is not 3.0.x", spec.openapi));
    }
    Ok(spec)
}

fn write_rust(out_dir: &str, file: &str, tokens: TokenStream) {
    let syntax = syn::parse2::<syn::File>(tokens)
        .unwrap_or_else(|err| panic!("generated {file} does not parse: {err}"));
    let path = Path::new(out_dir).join(file);
    fs::write(&path, prettyplease::unparse(&syntax))
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

fn generate_client(spec: &OpenAPI) -> Result<TokenStream, String> {
    let mut settings = progenitor::GenerationSettings::default();
    settings
        .with_interface(progenitor::InterfaceStyle::Builder)
        .with_tag(progenitor::TagStyle::Merged);
    progenitor::Generator::new(&settings)
        .generate_tokens(spec)
        .map_err(|err| format!("progenitor cannot generate a client: {err}"))
}

/// A construct the server generator does not support, and where it is.
#[derive(Debug)]
struct Unsupported {
    pointer: String,
    what: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.what)
    }
}

type Result<T, E = Unsupported> = std::result::Result<T, E>;

fn unsupported<T>(pointer: &str, what: impl Into<String>) -> Result<T> {
    Err(Unsupported {
        pointer: pointer.to_owned(),
        what: what.into(),
    })
}

/// Escapes one segment of a JSON pointer (RFC 6901).
fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn ident(name: &str) -> Ident {
    Ident::new(name, Span::call_site())
}

/// A snake_case Rust identifier for a JSON name; `type` and other keywords get a trailing `_`.
fn field_ident(name: &str) -> Ident {
    let snake = name.to_snake_case();
    if syn::parse_str::<Ident>(&snake).is_ok() {
        ident(&snake)
    } else {
        format_ident!("{snake}_")
    }
}

/// `#[doc = "..."]`, which poem-openapi turns into `description` (or `summary`).
fn doc(text: Option<&str>) -> TokenStream {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => quote!(#[doc = #text]),
        None => quote!(),
    }
}

/// What a schema becomes in Rust: its type, its validators and, for a reference to a named
/// primitive, the description that poem-openapi shows in place of the reference.
struct RustType {
    ty: TokenStream,
    validators: Vec<TokenStream>,
    /// The string's `pattern`: checked by one of `validators`, written into the document by
    /// `Api` (see `Generator::patterns`).
    pattern: Option<String>,
    description: Option<String>,
}

struct Generator<'a> {
    spec: &'a OpenAPI,
    /// Example functions, in the order they were needed.
    examples: Vec<TokenStream>,
    /// Every distinct `pattern`, in the order met: each becomes a static `CompiledPattern`.
    /// poem-openapi's own `pattern` validator compiles its regex on every check, which cost
    /// more CPU than the rest of an order; a `custom` validator checks with a regex compiled
    /// once, but poem-openapi leaves it out of the document, so the patterns are written into
    /// it by `Api` from `property_patterns` and `parameter_patterns`.
    patterns: Vec<String>,
    /// (schema, property, pattern) of each patterned property.
    property_patterns: Vec<(String, String, String)>,
    /// (operationId, parameter, pattern) of each patterned parameter.
    parameter_patterns: Vec<(String, String, String)>,
}

fn generate_server(spec: &OpenAPI) -> Result<TokenStream> {
    let mut generator = Generator {
        spec,
        examples: Vec::new(),
        patterns: Vec::new(),
        property_patterns: Vec::new(),
        parameter_patterns: Vec::new(),
    };
    let tags = generator.tags()?;
    let schemas = generator.schemas()?;
    let operations = generator.operations()?;
    let examples = &generator.examples;
    let service = generator.service();
    let patterns = generator.compiled_patterns();
    let api = generator.documented_api();
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

        /// Parses an example of the spec. Examples are only built when the document is
        /// generated, and the round-trip test generates every one of them.
        fn example<T: ParseFromJSON>(json: &str) -> T {
            let value = serde_json::from_str(json).expect("an example in the spec is valid JSON");
            T::parse_from_json(Some(value)).unwrap_or_else(|err| {
                panic!("an example in the spec does not match its schema: {}", err.into_message())
            })
        }

        #tags
        #patterns
        #schemas
        #operations
        #api
        #(#examples)*
        #service
    })
}

impl Generator<'_> {
    fn tags(&self) -> Result<TokenStream> {
        if self.spec.tags.is_empty() {
            return unsupported("#/tags", "the spec must declare its tags");
        }
        let variants = self.spec.tags.iter().map(|tag| {
            let variant = ident(&tag.name.to_upper_camel_case());
            let name = &tag.name;
            let doc = doc(tag.description.as_deref());
            quote!(#doc #[oai(rename = #name)] #variant)
        });
        Ok(quote! {
            #[derive(Tags)]
            pub enum ApiTags { #(#variants),* }
        })
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

    fn component<'s>(&'s self, reference: &str, pointer: &str) -> Result<(&'s str, &'s Schema)> {
        let Some(name) = reference.strip_prefix("#/components/schemas/") else {
            return unsupported(
                pointer,
                format!("reference {reference} is not to #/components/schemas"),
            );
        };
        let schema = self
            .spec
            .components
            .as_ref()
            .and_then(|components| components.schemas.get_key_value(name));
        match schema {
            Some((name, ReferenceOr::Item(schema))) => Ok((name, schema)),
            Some((_, ReferenceOr::Reference { .. })) => {
                unsupported(pointer, format!("{name} is a reference to a reference"))
            }
            None => unsupported(pointer, format!("{reference} does not exist")),
        }
    }

    fn schemas(&mut self) -> Result<TokenStream> {
        let Some(components) = &self.spec.components else {
            return Ok(quote!());
        };
        let mut items = Vec::new();
        for (name, schema) in &components.schemas {
            let pointer = format!("#/components/schemas/{}", escape_pointer(name));
            let ReferenceOr::Item(schema) = schema else {
                return unsupported(&pointer, "a component schema must not be a reference");
            };
            match &schema.schema_kind {
                SchemaKind::Type(Type::Object(_)) => {
                    items.push(self.object(name, schema, &pointer)?)
                }
                SchemaKind::Type(Type::String(string)) if !string.enumeration.is_empty() => {
                    items.push(self.string_enum(name, schema, &pointer)?)
                }
                // Named primitives are expanded where they are used: poem-openapi has no
                // named primitive schemas, and the round trip inlines them on both sides.
                _ => {
                    self.rust_type(&ReferenceOr::Item(schema.clone()), &pointer)?;
                }
            }
        }
        Ok(quote!(#(#items)*))
    }

    fn string_enum(&self, name: &str, schema: &Schema, pointer: &str) -> Result<TokenStream> {
        let SchemaKind::Type(Type::String(string)) = &schema.schema_kind else {
            unreachable!("called for string enums only");
        };
        check_schema_data(schema, pointer, &["description"])?;
        let mut variants = Vec::new();
        for value in &string.enumeration {
            let Some(value) = value else {
                return unsupported(pointer, "`null` in an enum is not supported");
            };
            let variant = ident(&value.to_upper_camel_case());
            variants.push(quote!(#[oai(rename = #value)] #variant));
        }
        let ident = ident(name);
        let doc = doc(schema.schema_data.description.as_deref());
        Ok(quote! {
            #doc
            #[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Hash)]
            #[oai(rename = #name)]
            pub enum #ident { #(#variants),* }
        })
    }

    fn object(&mut self, name: &str, schema: &Schema, pointer: &str) -> Result<TokenStream> {
        let SchemaKind::Type(Type::Object(object)) = &schema.schema_kind else {
            unreachable!("called for objects only");
        };
        check_schema_data(schema, pointer, &["description", "example"])?;
        if object.additional_properties.is_some()
            || object.min_properties.is_some()
            || object.max_properties.is_some()
        {
            return unsupported(
                pointer,
                "additionalProperties, minProperties and maxProperties are not supported",
            );
        }
        for required in &object.required {
            if !object.properties.contains_key(required) {
                return unsupported(
                    pointer,
                    format!("required property {required} is not defined"),
                );
            }
        }
        let mut fields = Vec::new();
        let mut field_parsers = Vec::new();
        for (property, property_schema) in &object.properties {
            let field_pointer = format!("{pointer}/properties/{}", escape_pointer(property));
            let property_schema = unbox(property_schema);
            let rust = self.rust_type(&property_schema, &field_pointer)?;
            if let Some(pattern) = &rust.pattern {
                self.property_patterns
                    .push((name.to_owned(), property.clone(), pattern.clone()));
            }
            let field = field_ident(property);
            let own_description = match &property_schema {
                ReferenceOr::Item(schema) => schema.schema_data.description.clone(),
                ReferenceOr::Reference { .. } => None,
            };
            let doc = doc(own_description.or(rust.description).as_deref());
            let validators = validator_attr(&rust.validators);
            let ty = rust.ty;
            let (ty, skip_none) = if object.required.contains(property) {
                (ty, quote!())
            } else {
                (quote!(Option<#ty>), quote!(, skip_serializing_if_is_none))
            };
            let parser = format_ident!("parse_{}_{}", name.to_snake_case(), field);
            let parser_name = parser.to_string();
            fields.push(quote! {
                #doc
                #[oai(rename = #property, deserialize_with = #parser_name #skip_none #validators)]
                pub #field: #ty
            });
            field_parsers.push(quote! {
                fn #parser(value: Option<serde_json::Value>) -> Result<#ty, ParseError<#ty>> {
                    parse_field(#property, value)
                }
            });
        }
        let ident = ident(name);
        let doc = doc(schema.schema_data.description.as_deref());
        let (example_flag, example_impl) = match &schema.schema_data.example {
            Some(value) => {
                let json = value.to_string();
                (
                    quote!(, example),
                    quote! {
                        impl poem_openapi::types::Example for #ident {
                            fn example() -> Self {
                                example(#json)
                            }
                        }
                    },
                )
            }
            None => (quote!(), quote!()),
        };
        Ok(quote! {
            #doc
            #[derive(Object, Clone, Debug, PartialEq)]
            #[oai(rename = #name #example_flag)]
            pub struct #ident { #(#fields),* }
            #example_impl
            #(#field_parsers)*
        })
    }

    /// The Rust type of a property, parameter or header schema.
    fn rust_type(&mut self, schema: &ReferenceOr<Schema>, pointer: &str) -> Result<RustType> {
        let schema = match schema {
            ReferenceOr::Reference { reference } => {
                let (name, component) = self.component(reference, pointer)?;
                let named = matches!(component.schema_kind, SchemaKind::Type(Type::Object(_)))
                    || matches!(&component.schema_kind, SchemaKind::Type(Type::String(s)) if !s.enumeration.is_empty());
                if named {
                    let ty = ident(name);
                    return Ok(RustType {
                        ty: quote!(#ty),
                        validators: Vec::new(),
                        pattern: None,
                        description: None,
                    });
                }
                let description = component.schema_data.description.clone();
                let mut rust = self.rust_type(&ReferenceOr::Item(component.clone()), pointer)?;
                rust.description = description;
                return Ok(rust);
            }
            ReferenceOr::Item(schema) => schema,
        };
        check_schema_data(schema, pointer, &["description", "example", "default"])?;
        let mut validators = Vec::new();
        let mut pattern = None;
        let ty = match &schema.schema_kind {
            SchemaKind::Type(Type::String(string)) => {
                if !string.enumeration.is_empty() {
                    return unsupported(
                        pointer,
                        "an enum must be a component schema, to get a name",
                    );
                }
                if let Some(min) = string.min_length {
                    validators.push(quote!(min_length = #min));
                }
                if let Some(max) = string.max_length {
                    validators.push(quote!(max_length = #max));
                }
                if let Some(regex) = &string.pattern {
                    if let Err(err) = regex::Regex::new(regex) {
                        return unsupported(pointer, format!("pattern {regex:?}: {err}"));
                    }
                    // After the length validators, where poem-openapi puts its own `pattern`,
                    // so that a value that breaks several gets the same message as before.
                    let check = self.compiled_pattern(regex).to_string();
                    validators.push(quote!(custom = #check));
                    pattern = Some(regex.clone());
                }
                match &string.format {
                    VariantOrUnknownOrEmpty::Empty => quote!(String),
                    VariantOrUnknownOrEmpty::Item(StringFormat::DateTime) => {
                        quote!(chrono::DateTime<chrono::Utc>)
                    }
                    VariantOrUnknownOrEmpty::Unknown(format) if format == "uuid" => {
                        quote!(uuid::Uuid)
                    }
                    other => {
                        return unsupported(
                            pointer,
                            format!("string format {other:?} is not supported"),
                        );
                    }
                }
            }
            SchemaKind::Type(Type::Integer(integer)) => {
                if !integer.enumeration.is_empty() || integer.multiple_of.is_some() {
                    return unsupported(
                        pointer,
                        "enum and multipleOf on integers are not supported",
                    );
                }
                if let Some(min) = integer.minimum {
                    let (min, exclusive) = (float(min), integer.exclusive_minimum);
                    validators.push(quote!(minimum(value = #min, exclusive = #exclusive)));
                }
                if let Some(max) = integer.maximum {
                    let (max, exclusive) = (float(max), integer.exclusive_maximum);
                    validators.push(quote!(maximum(value = #max, exclusive = #exclusive)));
                }
                match &integer.format {
                    VariantOrUnknownOrEmpty::Item(IntegerFormat::Int32) => quote!(i32),
                    VariantOrUnknownOrEmpty::Item(IntegerFormat::Int64) => quote!(i64),
                    _ => {
                        return unsupported(
                            pointer,
                            "an integer needs `format: int32` or `format: int64`",
                        );
                    }
                }
            }
            SchemaKind::Type(Type::Boolean(boolean)) => {
                if !boolean.enumeration.is_empty() {
                    return unsupported(pointer, "enum on booleans is not supported");
                }
                quote!(bool)
            }
            SchemaKind::Type(Type::Array(array)) => {
                if let Some(min) = array.min_items {
                    validators.push(quote!(min_items = #min));
                }
                if let Some(max) = array.max_items {
                    validators.push(quote!(max_items = #max));
                }
                if array.unique_items {
                    validators.push(quote!(unique_items = true));
                }
                let Some(items) = &array.items else {
                    return unsupported(pointer, "an array needs `items`");
                };
                let items_pointer = format!("{pointer}/items");
                let item = self.rust_type(&unbox(items), &items_pointer)?;
                if !item.validators.is_empty() {
                    return unsupported(
                        &items_pointer,
                        "constraints on array items are not supported",
                    );
                }
                let item = item.ty;
                quote!(Vec<#item>)
            }
            SchemaKind::Type(Type::Number(_)) => {
                return unsupported(
                    pointer,
                    "`type: number` is not supported: binary fractions are not exact; use integers of minor units",
                );
            }
            SchemaKind::Type(Type::Object(_)) => {
                return unsupported(
                    pointer,
                    "an inline object is not supported; make it a component schema",
                );
            }
            _ => {
                return unsupported(
                    pointer,
                    "oneOf, allOf, anyOf, not and untyped schemas are not supported",
                );
            }
        };
        Ok(RustType {
            ty,
            validators,
            pattern,
            description: None,
        })
    }

    /// The expression of the validator that checks `pattern`.
    fn compiled_pattern(&mut self, pattern: &str) -> TokenStream {
        let index = match self.patterns.iter().position(|known| known == pattern) {
            Some(index) => index,
            None => {
                self.patterns.push(pattern.to_owned());
                self.patterns.len() - 1
            }
        };
        let name = format_ident!("PATTERN_{index}");
        quote!(&#name)
    }

    fn compiled_patterns(&self) -> TokenStream {
        if self.patterns.is_empty() {
            return quote!();
        }
        // A pattern met only where the build then stops, or on a component that nothing
        // uses, gets no static: it would be dead code.
        let used = |pattern: &String| {
            self.property_patterns
                .iter()
                .chain(&self.parameter_patterns)
                .any(|(_, _, used)| used == pattern)
        };
        let statics = self.patterns.iter().enumerate().filter(|(_, pattern)| used(pattern)).map(|(index, pattern)| {
            let name = format_ident!("PATTERN_{index}");
            let doc = format!("`{pattern}`");
            quote! {
                #[doc = #doc]
                static #name: CompiledPattern = CompiledPattern {
                    pattern: #pattern,
                    regex: std::sync::LazyLock::new(|| {
                        regex::Regex::new(#pattern).expect("the generator compiled this pattern")
                    }),
                };
            }
        });
        quote! {
            /// A `pattern` of the spec with its regex, compiled on first use and then kept.
            struct CompiledPattern {
                pattern: &'static str,
                regex: std::sync::LazyLock<regex::Regex>,
            }

            impl<T: AsRef<str>> poem_openapi::validation::Validator<T> for &CompiledPattern {
                fn check(&self, value: &T) -> bool {
                    self.regex.is_match(value.as_ref())
                }
            }

            /// As poem-openapi's `pattern` validator names itself in an error message.
            impl std::fmt::Display for CompiledPattern {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    write!(f, "pattern(\"{}\")", self.pattern)
                }
            }

            #(#statics)*
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

    fn operations(&mut self) -> Result<TokenStream> {
        let mut items = Vec::new();
        let mut trait_methods = Vec::new();
        let mut api_methods = Vec::new();
        let mut operation_ids = BTreeSet::new();
        for (path, item) in &self.spec.paths.paths {
            let path_pointer = format!("#/paths/{}", escape_pointer(path));
            let ReferenceOr::Item(item) = item else {
                return unsupported(&path_pointer, "path references are not supported");
            };
            if !item.parameters.is_empty() {
                return unsupported(
                    &path_pointer,
                    "path-level parameters are not supported; declare them on each operation",
                );
            }
            for (method, operation) in item.iter() {
                let pointer = format!("{path_pointer}/{method}");
                let Some(operation_id) = &operation.operation_id else {
                    return unsupported(&pointer, "every operation needs an operationId");
                };
                if !operation_ids.insert(operation_id.clone()) {
                    return unsupported(
                        &pointer,
                        format!("operationId {operation_id} is not unique"),
                    );
                }
                let generated = self.operation(path, method, operation_id, operation, &pointer)?;
                items.push(generated.response);
                trait_methods.push(generated.trait_method);
                api_methods.push(generated.api_method);
            }
        }
        Ok(quote! {
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
        })
    }

    fn operation(
        &mut self,
        path: &str,
        method: &str,
        operation_id: &str,
        operation: &Operation,
        pointer: &str,
    ) -> Result<GeneratedOperation> {
        if operation.summary.is_none() {
            return unsupported(pointer, "every operation needs a summary");
        }
        if operation
            .summary
            .as_deref()
            .is_some_and(|summary| summary.contains("\n\n"))
        {
            return unsupported(pointer, "a summary must be one paragraph");
        }
        if !operation.security.as_ref().is_none_or(Vec::is_empty)
            || !operation.callbacks.is_empty()
            || !operation.servers.is_empty()
            || operation.deprecated
        {
            return unsupported(
                pointer,
                "security, callbacks, servers and deprecated on operations are not supported",
            );
        }
        let op_ident = ident(operation_id);
        let response_ident = format_ident!("{}Response", operation_id.to_upper_camel_case());

        let mut params = Vec::new();
        let mut trait_args = Vec::new();
        let mut call_args = Vec::new();
        for (index, parameter) in operation.parameters.iter().enumerate() {
            let param_pointer = format!("{pointer}/parameters/{index}");
            let ReferenceOr::Item(parameter) = parameter else {
                return unsupported(&param_pointer, "parameter references are not supported");
            };
            let generated = self.parameter(operation_id, parameter, &param_pointer)?;
            params.push(generated.api_arg);
            trait_args.push(generated.trait_arg);
            call_args.push(generated.call_arg);
        }
        if let Some(body) = &operation.request_body {
            let body_pointer = format!("{pointer}/requestBody");
            let ty = self.request_body(body, &body_pointer)?;
            params.push(quote!(body: Json<#ty>));
            trait_args.push(quote!(body: #ty));
            call_args.push(quote!(body.0));
        }

        let responses = self.responses(
            &response_ident,
            path,
            operation_id,
            operation,
            !params.is_empty(),
            pointer,
        )?;

        let tags = operation.tags.iter().map(|tag| {
            let variant = ident(&tag.to_upper_camel_case());
            quote!(ApiTags::#variant)
        });
        let tags: Vec<_> = tags.collect();
        for tag in &operation.tags {
            if !self.spec.tags.iter().any(|declared| &declared.name == tag) {
                return unsupported(pointer, format!("tag {tag} is not declared in #/tags"));
            }
        }
        let summary = operation.summary.as_deref().unwrap_or_default();
        let text = match &operation.description {
            Some(description) => format!("{summary}\n\n{}", description.trim()),
            None => summary.to_owned(),
        };
        let poem_path = path.replace('{', ":").replace('}', "");
        let poem_path = poem_path.as_str();
        Ok(GeneratedOperation {
            response: responses,
            trait_method: quote! {
                #[doc = #summary]
                fn #op_ident(&self, #(#trait_args),*) -> impl Future<Output = #response_ident> + Send;
            },
            api_method: quote! {
                #[doc = #text]
                #[oai(path = #poem_path, method = #method, operation_id = #operation_id #(, tag = #tags)*)]
                async fn #op_ident(&self, #(#params),*) -> #response_ident {
                    self.0.#op_ident(#(#call_args),*).await
                }
            },
        })
    }

    fn parameter(
        &mut self,
        operation_id: &str,
        parameter: &Parameter,
        pointer: &str,
    ) -> Result<GeneratedParameter> {
        let data = parameter.parameter_data_ref();
        let ParameterSchemaOrContent::Schema(schema) = &data.format else {
            return unsupported(pointer, "parameters with `content` are not supported");
        };
        if data.deprecated.unwrap_or(false) || data.explode.is_some() || !data.examples.is_empty() {
            return unsupported(
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
                return unsupported(pointer, "cookie parameters are not supported");
            }
        };
        if !style_ok {
            return unsupported(
                pointer,
                "only the default style of each parameter location is supported",
            );
        }
        let rust = self.rust_type(schema, &format!("{pointer}/schema"))?;
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
        Ok(GeneratedParameter {
            api_arg: quote!(#doc #[oai(#(#options),*)] #arg: #extractor<#value_ty>),
            trait_arg: quote!(#arg: #value_ty),
            call_arg: quote!(#arg.0),
        })
    }

    fn request_body(
        &mut self,
        body: &ReferenceOr<RequestBody>,
        pointer: &str,
    ) -> Result<TokenStream> {
        let ReferenceOr::Item(body) = body else {
            return unsupported(pointer, "request body references are not supported");
        };
        if !body.required || body.description.is_some() {
            return unsupported(
                pointer,
                "a request body must be required and carry no description",
            );
        }
        let ty = self.json_content(&body.content, &format!("{pointer}/content"))?;
        ty.ok_or_else(|| Unsupported {
            pointer: pointer.to_owned(),
            what: "a request body needs application/json content".to_owned(),
        })
    }

    /// The type of an `application/json` content map, which must hold a schema reference.
    fn json_content(
        &mut self,
        content: &openapiv3::Content,
        pointer: &str,
    ) -> Result<Option<TokenStream>> {
        let mut types = None;
        for (media_type, media) in content {
            let media_pointer = format!("{pointer}/{}", escape_pointer(media_type));
            if media_type != "application/json" {
                return unsupported(&media_pointer, "only application/json content is supported");
            }
            if media.example.is_some() || !media.examples.is_empty() || !media.encoding.is_empty() {
                return unsupported(&media_pointer, "examples belong on the component schema");
            }
            let Some(schema) = &media.schema else {
                return unsupported(&media_pointer, "content needs a schema");
            };
            let rust = self.rust_type(schema, &format!("{media_pointer}/schema"))?;
            if !rust.validators.is_empty() || !matches!(schema, ReferenceOr::Reference { .. }) {
                return unsupported(
                    &media_pointer,
                    "content must reference a component object schema",
                );
            }
            types = Some(rust.ty);
        }
        Ok(types)
    }

    fn responses(
        &mut self,
        response_ident: &Ident,
        path: &str,
        operation_id: &str,
        operation: &Operation,
        parses_request: bool,
        pointer: &str,
    ) -> Result<TokenStream> {
        let responses = &operation.responses;
        let pointer = format!("{pointer}/responses");
        if responses.default.is_some() {
            return unsupported(
                &format!("{pointer}/default"),
                "default responses are not supported; list each status",
            );
        }
        let mut variants = Vec::new();
        let mut error_arms = Vec::new();
        let mut bad_request = None;
        for (status, response) in &responses.responses {
            let StatusCode::Code(code) = status else {
                return unsupported(&pointer, "status ranges are not supported");
            };
            let response_pointer = format!("{pointer}/{code}");
            let ReferenceOr::Item(response) = response else {
                return unsupported(&response_pointer, "response references are not supported");
            };
            let variant = status_variant(*code, &response_pointer)?;
            let body =
                self.json_content(&response.content, &format!("{response_pointer}/content"))?;
            let headers = self.response_headers(response, &response_pointer)?;
            let doc = doc(Some(&response.description));
            let fields = body.iter().map(|ty| quote!(Json<#ty>)).chain(headers);
            variants.push(quote!(#doc #[oai(status = #code)] #variant(#(#fields),*)));
            if response_has_only_body(response) {
                let ty = body.clone();
                if *code == 400 {
                    bad_request = ty.map(|ty| (variant.clone(), ty));
                } else if let Some(ty) = ty {
                    error_arms.push((*code, variant.clone(), ty));
                }
            }
        }
        let handler_attr;
        let handler;
        if parses_request {
            let Some((bad_request_variant, problem)) = bad_request else {
                return unsupported(
                    &pointer,
                    "an operation with parameters or a body needs a 400 response with a body and no headers",
                );
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
                    quote!(#code => #response_ident::#variant(Json(#problem::from_request_error(err, PATH_PARAMS))),)
                });
            let arms: Vec<_> = arms.collect();
            let bad_request = quote!(#response_ident::#bad_request_variant(Json(#problem::from_request_error(err, PATH_PARAMS))));
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
        Ok(quote! {
            #[derive(ApiResponse, Debug)]
            #handler_attr
            pub enum #response_ident { #(#variants),* }
            #handler
        })
    }

    fn response_headers(&mut self, response: &Response, pointer: &str) -> Result<Vec<TokenStream>> {
        let mut headers = Vec::new();
        for (name, header) in &response.headers {
            let header_pointer = format!("{pointer}/headers/{}", escape_pointer(name));
            let ReferenceOr::Item(header) = header else {
                return unsupported(&header_pointer, "header references are not supported");
            };
            let ParameterSchemaOrContent::Schema(schema) = &header.format else {
                return unsupported(&header_pointer, "headers with `content` are not supported");
            };
            if header.deprecated.unwrap_or(false) || header.example.is_some() {
                return unsupported(
                    &header_pointer,
                    "deprecated and example on headers are not supported",
                );
            }
            let rust = self.rust_type(schema, &format!("{header_pointer}/schema"))?;
            if !rust.validators.is_empty() {
                return unsupported(
                    &header_pointer,
                    "poem-openapi cannot declare constraints on response headers",
                );
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
        Ok(headers)
    }
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

/// The names of the variables of a path template, in order.
fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

fn response_has_only_body(response: &Response) -> bool {
    response.headers.is_empty() && response.content.len() == 1
}

fn unbox(schema: &ReferenceOr<Box<Schema>>) -> ReferenceOr<Schema> {
    match schema {
        ReferenceOr::Reference { reference } => ReferenceOr::Reference {
            reference: reference.clone(),
        },
        ReferenceOr::Item(schema) => ReferenceOr::Item((**schema).clone()),
    }
}

/// A float literal: poem-openapi reads `minimum` and `maximum` as floats.
fn float(value: i64) -> proc_macro2::Literal {
    proc_macro2::Literal::f64_unsuffixed(value as f64)
}

fn validator_attr(validators: &[TokenStream]) -> TokenStream {
    if validators.is_empty() {
        quote!()
    } else {
        quote!(, validator(#(#validators),*))
    }
}

/// Refuses the schema keywords outside `allowed` that the generator would silently drop.
fn check_schema_data(schema: &Schema, pointer: &str, allowed: &[&str]) -> Result<()> {
    let data = &schema.schema_data;
    let present = [
        ("nullable", data.nullable),
        ("readOnly", data.read_only),
        ("writeOnly", data.write_only),
        ("deprecated", data.deprecated),
        ("externalDocs", data.external_docs.is_some()),
        ("discriminator", data.discriminator.is_some()),
        ("title", data.title.is_some()),
        ("x- extensions", !data.extensions.is_empty()),
        ("example", data.example.is_some()),
        ("default", data.default.is_some()),
        ("description", data.description.is_some()),
    ];
    match present
        .iter()
        .find(|(name, is_present)| *is_present && !allowed.contains(name))
    {
        Some((name, _)) => unsupported(pointer, format!("`{name}` is not supported here")),
        None => Ok(()),
    }
}

/// The response enum variant for a status: its reason phrase in UpperCamelCase.
fn status_variant(code: u16, pointer: &str) -> Result<Ident> {
    let reason = match code {
        200 => "Ok",
        201 => "Created",
        202 => "Accepted",
        204 => "NoContent",
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        412 => "PreconditionFailed",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        422 => "UnprocessableEntity",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => return unsupported(pointer, format!("status {code} is not supported")),
    };
    Ok(ident(reason))
}
