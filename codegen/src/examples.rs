//! The examples of each answer. poem-openapi cannot declare examples on a response, so the
//! generator writes them, with the components they name, into a JSON merge patch (RFC 7396)
//! that the service merges into the document it serves: `document_additions()`, which also
//! carries the security of the spec (see `security`). Each example is parsed as its answer's
//! type when the document is built, and written back as the service writes that answer, so
//! one that breaks its schema, or that serde would write otherwise than poem-openapi, fails
//! the round-trip test rather than showing in Swagger UI.

use openapiv3::{Example, MediaType, ReferenceOr};
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::{Map, Value, json};

use crate::{server::Generator, spec::escape_pointer};

const COMPONENT_PREFIX: &str = "#/components/examples/";

/// The content type under which poem-openapi's `Json` payload declares an answer's body: the
/// examples go there in the served document.
const SERVED_JSON: &str = "application/json; charset=utf-8";

/// The answer whose content names examples.
pub(crate) struct Answer<'a> {
    pub(crate) path: &'a str,
    pub(crate) method: &'a str,
    pub(crate) status: u16,
    /// The Rust type of its body.
    pub(crate) ty: &'a TokenStream,
}

/// The examples met so far: each example's JSON with the type it must parse as, and the
/// component examples named. What the patch adds under each answer is in
/// `Generator::additions`.
#[derive(Default)]
pub(crate) struct Examples {
    checks: Vec<(TokenStream, String)>,
    used_components: Vec<String>,
}

impl Generator<'_> {
    /// Checks and keeps the examples of one answer's `application/json` content. Each is a
    /// reference to `#/components/examples`, or an example with a `value` of its own.
    pub(crate) fn response_examples(
        &mut self,
        answer: &Answer<'_>,
        media: &MediaType,
        pointer: &str,
    ) {
        let examples = &media.examples;
        if examples.is_empty() {
            return;
        }
        let mut written = Map::new();
        for (name, example) in examples {
            let example_pointer = format!("{pointer}/{}", escape_pointer(name));
            let value = match example {
                ReferenceOr::Reference { reference } => {
                    let Some(component) = self.component_example(reference, &example_pointer)
                    else {
                        continue;
                    };
                    written.insert(name.clone(), json!({ "$ref": reference }));
                    component
                }
                ReferenceOr::Item(example) => {
                    let Some(value) = self.example_value(example, &example_pointer) else {
                        continue;
                    };
                    let item = serde_json::to_value(example).expect("an example is JSON");
                    written.insert(name.clone(), item);
                    value
                }
            };
            self.answer_examples
                .checks
                .push((answer.ty.clone(), value.to_string()));
        }
        let answers = self.additions.entry("paths").or_insert_with(|| json!({}));
        answers[answer.path][answer.method]["responses"][answer.status.to_string()]["content"]
            [SERVED_JSON]["examples"] = Value::Object(written);
    }

    /// Has `document_additions()` parse and write back the example of a component schema
    /// too, as it does the examples of answers.
    pub(crate) fn check_schema_example(&mut self, ty: TokenStream, json: String) {
        self.answer_examples.checks.push((ty, json));
    }

    /// The value of the component example `reference` names, which is then in use.
    fn component_example(&mut self, reference: &str, pointer: &str) -> Option<Value> {
        let found = reference.strip_prefix(COMPONENT_PREFIX).and_then(|name| {
            self.spec
                .components
                .as_ref()
                .and_then(|components| components.examples.get(name))
                .map(|example| (name, example))
        });
        match found {
            Some((name, ReferenceOr::Item(example))) => {
                let pointer = format!("{COMPONENT_PREFIX}{}", escape_pointer(name));
                self.answer_examples.used_components.push(name.to_owned());
                self.example_value(example, &pointer)
            }
            Some((_, ReferenceOr::Reference { .. })) => {
                self.refuse(pointer, format!("{reference} is itself a reference"));
                None
            }
            None => {
                self.refuse(
                    pointer,
                    format!("{reference} is not an example under #/components/examples"),
                );
                None
            }
        }
    }

    fn example_value(&mut self, example: &Example, pointer: &str) -> Option<Value> {
        if example.external_value.is_some() {
            self.refuse(pointer, "externalValue is not supported; give the value");
            return None;
        }
        let value = example.value.clone();
        if value.is_none() {
            self.refuse(pointer, "an example needs a value");
        }
        value
    }

    /// Every component example must be named by an answer: the document would otherwise
    /// show an example that no answer gives.
    pub(crate) fn check_component_examples(&mut self) {
        let names: Vec<String> = self
            .spec
            .components
            .iter()
            .flat_map(|components| components.examples.keys().cloned())
            .collect();
        for name in names {
            if !self.answer_examples.used_components.contains(&name) {
                self.refuse(
                    &format!("#/components/examples/{}", escape_pointer(&name)),
                    "no answer names this example",
                );
            }
        }
    }

    /// `document_additions()`: the merge patch, and a check of every example against its
    /// answer's type.
    pub(crate) fn document_additions(&self) -> TokenStream {
        let mut patch = self.additions.clone();
        let components: Map<String, Value> = self
            .spec
            .components
            .iter()
            .flat_map(|components| &components.examples)
            .map(|(name, example)| {
                let value = serde_json::to_value(example).expect("an example is JSON");
                (name.clone(), value)
            })
            .collect();
        if !components.is_empty() {
            patch.insert("components".to_owned(), json!({ "examples": components }));
        }
        let schemes = self
            .spec
            .components
            .as_ref()
            .map(|components| &components.security_schemes)
            .filter(|schemes| !schemes.is_empty());
        if let Some(schemes) = schemes {
            let schemes = serde_json::to_value(schemes).expect("security schemes are JSON");
            patch.entry("components").or_insert_with(|| json!({}))["securitySchemes"] = schemes;
        }
        let patch = Value::Object(patch).to_string();
        let checks = self
            .answer_examples
            .checks
            .iter()
            .map(|(ty, json)| quote!(answer_example::<#ty>(#json);));
        quote! {
            /// What the spec declares that poem-openapi cannot: the examples of its answers
            /// and the components they name, its security schemes and the security of each
            /// operation, as a JSON merge patch (RFC 7396) for the served document. Each
            /// example is parsed as its answer's type first, and written back.
            pub fn document_additions() -> serde_json::Value {
                #(#checks)*
                serde_json::from_str(#patch).expect("the generator writes valid JSON")
            }
        }
    }
}
