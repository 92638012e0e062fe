//! Component schemas and the Rust types of schemas: objects, string enums, primitives with
//! their validators, and the patterns, each compiled once.

use openapiv3::{
    IntegerFormat, ReferenceOr, Schema, SchemaKind, StringFormat, Type, VariantOrUnknownOrEmpty,
};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::{
    naming::{field_ident, field_parser_ident, ident, variant_ident},
    server::{Generator, doc},
    spec::escape_pointer,
};

/// What a schema becomes in Rust: its type, its validators and, for a reference to a named
/// primitive, the description that poem-openapi shows in place of the reference.
pub(crate) struct RustType {
    pub(crate) ty: TokenStream,
    pub(crate) validators: Vec<TokenStream>,
    /// The string's `pattern`: checked by one of `validators`, written into the document by
    /// `Api` (see `Generator::patterns`).
    pub(crate) pattern: Option<String>,
    pub(crate) description: Option<String>,
    /// Holds a date-time, which serde writes otherwise than poem-openapi (see
    /// `as_poem_json` in `server`).
    pub(crate) holds_date_time: bool,
}

impl<'a> Generator<'a> {
    /// The component schema that `reference` names.
    pub(crate) fn component(
        &mut self,
        reference: &str,
        pointer: &str,
    ) -> Option<(&'a str, &'a Schema)> {
        let Some(name) = reference.strip_prefix("#/components/schemas/") else {
            self.refuse(
                pointer,
                format!("reference {reference} is not to #/components/schemas"),
            );
            return None;
        };
        let spec = self.spec;
        let schema = spec
            .components
            .as_ref()
            .and_then(|components| components.schemas.get_key_value(name));
        match schema {
            Some((name, ReferenceOr::Item(schema))) => Some((name, schema)),
            Some((_, ReferenceOr::Reference { .. })) => {
                self.refuse(pointer, format!("{name} is a reference to a reference"));
                None
            }
            None => {
                self.refuse(pointer, format!("{reference} does not exist"));
                None
            }
        }
    }

    pub(crate) fn schemas(&mut self) -> TokenStream {
        let spec = self.spec;
        let Some(components) = &spec.components else {
            return quote!();
        };
        let mut items = Vec::new();
        for (name, schema) in &components.schemas {
            let pointer = format!("#/components/schemas/{}", escape_pointer(name));
            let ReferenceOr::Item(schema) = schema else {
                self.refuse(&pointer, "a component schema must not be a reference");
                continue;
            };
            match &schema.schema_kind {
                SchemaKind::Type(Type::Object(_)) => {
                    items.extend(self.object(name, schema, &pointer));
                }
                SchemaKind::Type(Type::String(string)) if !string.enumeration.is_empty() => {
                    items.extend(self.string_enum(name, schema, &pointer));
                }
                // Named primitives are expanded where they are used: poem-openapi has no
                // named primitive schemas, and the round trip inlines them on both sides.
                // Checked here, so that their problems are reported once, at their own place.
                _ => {
                    self.rust_type(&ReferenceOr::Item(schema.clone()), &pointer);
                }
            }
        }
        quote!(#(#items)*)
    }

    fn string_enum(&mut self, name: &str, schema: &Schema, pointer: &str) -> Option<TokenStream> {
        let SchemaKind::Type(Type::String(string)) = &schema.schema_kind else {
            unreachable!("called for string enums only");
        };
        let before = self.problems.len();
        self.check_schema_data(schema, pointer, &["description"]);
        let mut variants = Vec::new();
        for value in &string.enumeration {
            let Some(value) = value else {
                self.refuse(pointer, "`null` in an enum is not supported");
                continue;
            };
            let variant = variant_ident(value);
            variants.push(quote!(#[oai(rename = #value)] #[serde(rename = #value)] #variant));
        }
        if self.problems.len() > before {
            return None;
        }
        let ident = ident(name);
        let doc = doc(schema.schema_data.description.as_deref());
        Some(quote! {
            #doc
            #[derive(Enum, serde::Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
            #[oai(rename = #name)]
            pub enum #ident { #(#variants),* }
        })
    }

    fn object(&mut self, name: &str, schema: &Schema, pointer: &str) -> Option<TokenStream> {
        let SchemaKind::Type(Type::Object(object)) = &schema.schema_kind else {
            unreachable!("called for objects only");
        };
        let before = self.problems.len();
        self.check_schema_data(schema, pointer, &["description", "example"]);
        if object.additional_properties.is_some()
            || object.min_properties.is_some()
            || object.max_properties.is_some()
        {
            self.refuse(
                pointer,
                "additionalProperties, minProperties and maxProperties are not supported",
            );
        }
        for required in &object.required {
            if !object.properties.contains_key(required) {
                self.refuse(
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
            let Some(rust) = self.rust_type(&property_schema, &field_pointer) else {
                continue;
            };
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
            let (ty, skip_none, serde_skip_none) = if object.required.contains(property) {
                (ty, quote!(), quote!())
            } else {
                (
                    quote!(Option<#ty>),
                    quote!(, skip_serializing_if_is_none),
                    quote!(, skip_serializing_if = "Option::is_none"),
                )
            };
            let serde_with = if rust.holds_date_time {
                quote!(, serialize_with = "as_poem_json")
            } else {
                quote!()
            };
            let parser = field_parser_ident(name, property);
            let parser_name = parser.to_string();
            fields.push(quote! {
                #doc
                #[oai(rename = #property, deserialize_with = #parser_name #skip_none #validators)]
                #[serde(rename = #property #serde_skip_none #serde_with)]
                pub #field: #ty
            });
            field_parsers.push(quote! {
                fn #parser(value: Option<serde_json::Value>) -> Result<#ty, ParseError<#ty>> {
                    parse_field(#property, value)
                }
            });
        }
        if self.problems.len() > before {
            return None;
        }
        let ident = ident(name);
        let doc = doc(schema.schema_data.description.as_deref());
        let (example_flag, example_impl) = match &schema.schema_data.example {
            Some(value) => {
                let json = value.to_string();
                self.check_schema_example(quote!(#ident), json.clone());
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
        Some(quote! {
            #doc
            #[derive(Object, serde::Serialize, Clone, Debug, PartialEq)]
            #[oai(rename = #name #example_flag)]
            pub struct #ident { #(#fields),* }
            #example_impl
            #(#field_parsers)*
        })
    }

    /// The Rust type of a property, parameter or header schema; `None` when a problem stands
    /// in the way (recorded where it is).
    pub(crate) fn rust_type(
        &mut self,
        schema: &ReferenceOr<Schema>,
        pointer: &str,
    ) -> Option<RustType> {
        let schema = match schema {
            ReferenceOr::Reference { reference } => {
                let (name, component) = self.component(reference, pointer)?;
                let named = matches!(component.schema_kind, SchemaKind::Type(Type::Object(_)))
                    || matches!(&component.schema_kind, SchemaKind::Type(Type::String(s)) if !s.enumeration.is_empty());
                if named {
                    let ty = ident(name);
                    return Some(RustType {
                        ty: quote!(#ty),
                        validators: Vec::new(),
                        pattern: None,
                        description: None,
                        holds_date_time: false,
                    });
                }
                // A named primitive's own problems are reported at the component (see
                // `schemas`), not again at every place that uses it.
                let reported = self.problems.len();
                let expanded = self.rust_type(&ReferenceOr::Item(component.clone()), pointer);
                self.problems.truncate(reported);
                let mut rust = expanded?;
                rust.description = component.schema_data.description.clone();
                return Some(rust);
            }
            ReferenceOr::Item(schema) => schema,
        };
        let before = self.problems.len();
        self.check_schema_data(schema, pointer, &["description", "example", "default"]);
        let mut validators = Vec::new();
        let mut pattern = None;
        let mut holds_date_time = false;
        let ty = match &schema.schema_kind {
            SchemaKind::Type(Type::String(string)) => {
                if !string.enumeration.is_empty() {
                    self.refuse(pointer, "an enum must be a component schema, to get a name");
                }
                if let Some(min) = string.min_length {
                    validators.push(quote!(min_length = #min));
                }
                if let Some(max) = string.max_length {
                    validators.push(quote!(max_length = #max));
                }
                if let Some(regex) = &string.pattern {
                    match regex::Regex::new(regex) {
                        Err(err) => self.refuse(pointer, format!("pattern {regex:?}: {err}")),
                        Ok(_) => {
                            // After the length validators, where poem-openapi puts its own
                            // `pattern`, so that a value that breaks several gets the same
                            // message as before.
                            let check = self.compiled_pattern(regex).to_string();
                            validators.push(quote!(custom = #check));
                            pattern = Some(regex.clone());
                        }
                    }
                }
                match &string.format {
                    VariantOrUnknownOrEmpty::Empty => Some(quote!(String)),
                    VariantOrUnknownOrEmpty::Item(StringFormat::DateTime) => {
                        holds_date_time = true;
                        Some(quote!(chrono::DateTime<chrono::Utc>))
                    }
                    VariantOrUnknownOrEmpty::Unknown(format) if format == "uuid" => {
                        Some(quote!(uuid::Uuid))
                    }
                    other => {
                        self.refuse(pointer, format!("string format {other:?} is not supported"));
                        None
                    }
                }
            }
            SchemaKind::Type(Type::Integer(integer)) => {
                if !integer.enumeration.is_empty() || integer.multiple_of.is_some() {
                    self.refuse(pointer, "enum and multipleOf on integers are not supported");
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
                    VariantOrUnknownOrEmpty::Item(IntegerFormat::Int32) => Some(quote!(i32)),
                    VariantOrUnknownOrEmpty::Item(IntegerFormat::Int64) => Some(quote!(i64)),
                    _ => {
                        self.refuse(
                            pointer,
                            "an integer needs `format: int32` or `format: int64`",
                        );
                        None
                    }
                }
            }
            SchemaKind::Type(Type::Boolean(boolean)) => {
                if !boolean.enumeration.is_empty() {
                    self.refuse(pointer, "enum on booleans is not supported");
                }
                Some(quote!(bool))
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
                match &array.items {
                    None => {
                        self.refuse(pointer, "an array needs `items`");
                        None
                    }
                    Some(items) => {
                        let items_pointer = format!("{pointer}/items");
                        let item = self.rust_type(&unbox(items), &items_pointer);
                        match item {
                            Some(item) if !item.validators.is_empty() => {
                                self.refuse(
                                    &items_pointer,
                                    "constraints on array items are not supported",
                                );
                                None
                            }
                            Some(item) => {
                                holds_date_time = item.holds_date_time;
                                let item = item.ty;
                                Some(quote!(Vec<#item>))
                            }
                            None => None,
                        }
                    }
                }
            }
            SchemaKind::Type(Type::Number(_)) => {
                self.refuse(
                    pointer,
                    "`type: number` is not supported: binary fractions are not exact; use integers of minor units",
                );
                None
            }
            SchemaKind::Type(Type::Object(_)) => {
                self.refuse(
                    pointer,
                    "an inline object is not supported; make it a component schema",
                );
                None
            }
            _ => {
                self.refuse(
                    pointer,
                    "oneOf, allOf, anyOf, not and untyped schemas are not supported",
                );
                None
            }
        };
        if self.problems.len() > before {
            return None;
        }
        Some(RustType {
            ty: ty?,
            validators,
            pattern,
            description: None,
            holds_date_time,
        })
    }

    /// Refuses each schema keyword outside `allowed` that the generator would silently drop.
    fn check_schema_data(&mut self, schema: &Schema, pointer: &str, allowed: &[&str]) {
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
        for (name, _) in present
            .iter()
            .filter(|(name, is_present)| *is_present && !allowed.contains(name))
        {
            self.refuse(pointer, format!("`{name}` is not supported here"));
        }
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

    pub(crate) fn compiled_patterns(&self) -> TokenStream {
        if self.patterns.is_empty() {
            return quote!();
        }
        // A pattern met only on a component that nothing uses gets no static: it would be
        // dead code.
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

pub(crate) fn validator_attr(validators: &[TokenStream]) -> TokenStream {
    if validators.is_empty() {
        quote!()
    } else {
        quote!(, validator(#(#validators),*))
    }
}

#[cfg(test)]
mod tests {
    use openapiv3::OpenAPI;

    use super::*;

    /// Components that the schemas under test refer to.
    const SPEC: &str = r##"
openapi: 3.0.3
info: {title: Types, version: 1.0.0}
paths: {}
components:
  schemas:
    Colour: {type: string, enum: [red, green]}
    Thing: {type: object, properties: {name: {type: string}}}
    Sku: {type: string, description: A stock-keeping unit., pattern: '^[A-Z]{3}$'}
    Grams: {type: number}
"##;

    /// The Rust type and validators of `schema` (YAML), or the problems it has.
    fn map(schema: &str) -> Result<(String, Vec<String>), Vec<String>> {
        let spec: OpenAPI = serde_yaml::from_str(SPEC).expect("the spec parses");
        let schema: ReferenceOr<Schema> = serde_yaml::from_str(schema).expect("the schema parses");
        let mut generator = Generator::new(&spec);
        let rust = generator.rust_type(&schema, "#/x");
        let problems: Vec<String> = generator
            .problems
            .iter()
            .map(|p| p.message.clone())
            .collect();
        match rust {
            Some(rust) if problems.is_empty() => Ok((
                rust.ty.to_string(),
                rust.validators.iter().map(ToString::to_string).collect(),
            )),
            _ => Err(problems),
        }
    }

    fn ty(schema: &str) -> String {
        map(schema).expect("the schema maps to a type").0
    }

    #[test]
    fn strings_map_by_format() {
        assert_eq!(ty("{type: string}"), "String");
        assert_eq!(ty("{type: string, format: uuid}"), "uuid :: Uuid");
        assert_eq!(
            ty("{type: string, format: date-time}"),
            "chrono :: DateTime < chrono :: Utc >"
        );
    }

    #[test]
    fn integers_map_by_format() {
        assert_eq!(ty("{type: integer, format: int32}"), "i32");
        assert_eq!(ty("{type: integer, format: int64}"), "i64");
        assert_eq!(
            map("{type: integer}"),
            Err(vec![
                "an integer needs `format: int32` or `format: int64`".to_owned()
            ])
        );
    }

    #[test]
    fn booleans_and_arrays_map_to_bool_and_vec() {
        assert_eq!(ty("{type: boolean}"), "bool");
        assert_eq!(
            ty("{type: array, items: {$ref: '#/components/schemas/Thing'}}"),
            "Vec < Thing >"
        );
    }

    #[test]
    fn named_objects_and_enums_map_to_their_name() {
        assert_eq!(ty("{$ref: '#/components/schemas/Thing'}"), "Thing");
        assert_eq!(ty("{$ref: '#/components/schemas/Colour'}"), "Colour");
    }

    #[test]
    fn constraints_become_validators() {
        let (ty, validators) =
            map("{type: integer, format: int32, minimum: 1, maximum: 1000}").expect("maps");
        assert_eq!(ty, "i32");
        assert_eq!(
            validators,
            [
                "minimum (value = 1.0 , exclusive = false)",
                "maximum (value = 1000.0 , exclusive = false)"
            ]
        );
        let (_, validators) = map("{type: string, minLength: 1, maxLength: 64}").expect("maps");
        assert_eq!(validators, ["min_length = 1usize", "max_length = 64usize"]);
    }

    #[test]
    fn a_named_primitive_is_expanded_with_its_description_and_compiled_pattern() {
        let spec: OpenAPI = serde_yaml::from_str(SPEC).expect("the spec parses");
        let mut generator = Generator::new(&spec);
        let schema = ReferenceOr::Reference {
            reference: "#/components/schemas/Sku".to_owned(),
        };
        let rust = generator.rust_type(&schema, "#/x").expect("maps");
        assert_eq!(rust.ty.to_string(), "String");
        assert_eq!(rust.description.as_deref(), Some("A stock-keeping unit."));
        assert_eq!(rust.pattern.as_deref(), Some("^[A-Z]{3}$"));
        assert_eq!(rust.validators[0].to_string(), "custom = \"& PATTERN_0\"");
    }

    #[test]
    fn a_named_primitive_with_a_problem_is_not_reported_again_where_it_is_used() {
        assert_eq!(map("{$ref: '#/components/schemas/Grams'}"), Err(vec![]));
    }
}
