//! Bearer access: the one construct of OpenAPI security the generator supports. A spec
//! declares one `type: http`, `scheme: bearer` scheme under `components.securitySchemes`; an
//! operation that needs a token names it in a `security` of exactly one requirement, with the
//! empty scope array that OpenAPI 3.0 requires of an http scheme, and lists the scopes it needs
//! in its `x-required-scopes` extension. An operation without `security` is open.
//!
//! poem-openapi only declares security through the scheme types its handlers take, which
//! would also make it answer a missing token itself, not in the Problem shape, and always.
//! The server's middleware checks tokens instead, from `ROUTES`, and the scheme and each
//! operation's requirement reach the served document through `document_additions()`.

use openapiv3::{Operation, ReferenceOr, SecurityScheme};
use serde_json::{Value, json};

use crate::{server::Generator, spec::escape_pointer};

/// The operation extension that lists the scopes a token needs.
const REQUIRED_SCOPES: &str = "x-required-scopes";

const SCHEMES_POINTER: &str = "#/components/securitySchemes";

impl Generator<'_> {
    /// Checks `components.securitySchemes` and the absence of a top-level `security`.
    pub(crate) fn security_schemes(&mut self) {
        let spec = self.spec;
        if spec.security.is_some() {
            self.refuse(
                "#/security",
                "a top-level `security` is not supported; declare `security` on each operation that needs a token",
            );
        }
        let Some(components) = &spec.components else {
            return;
        };
        let mut bearer = 0;
        for (name, scheme) in &components.security_schemes {
            let pointer = format!("{SCHEMES_POINTER}/{}", escape_pointer(name));
            let kind = match scheme {
                ReferenceOr::Reference { .. } => {
                    self.refuse(&pointer, "security scheme references are not supported");
                    continue;
                }
                ReferenceOr::Item(SecurityScheme::HTTP { scheme, .. }) => {
                    // Authentication scheme names are case-insensitive (RFC 9110).
                    if scheme.eq_ignore_ascii_case("bearer") {
                        bearer += 1;
                        if bearer > 1 {
                            self.refuse(
                                &pointer,
                                "only one security scheme is supported: the server checks one kind of token",
                            );
                        }
                        continue;
                    }
                    format!("http scheme {scheme}")
                }
                ReferenceOr::Item(SecurityScheme::APIKey { .. }) => "type apiKey".to_owned(),
                ReferenceOr::Item(SecurityScheme::OAuth2 { .. }) => "type oauth2".to_owned(),
                ReferenceOr::Item(SecurityScheme::OpenIDConnect { .. }) => {
                    "type openIdConnect".to_owned()
                }
            };
            self.refuse(
                &pointer,
                format!("{kind} is not supported; only `type: http` with `scheme: bearer` is"),
            );
        }
    }

    /// The scopes that `operation` needs: `None` when it is open, all of `Some(scopes)`
    /// (none: a valid token is enough) when it needs a bearer token. Its `security` and
    /// `x-required-scopes` are added to the served document.
    pub(crate) fn operation_security(
        &mut self,
        path: &str,
        method: &str,
        operation: &Operation,
        pointer: &str,
    ) -> Option<Vec<String>> {
        let before = self.problems.len();
        for name in operation.extensions.keys() {
            if name != REQUIRED_SCOPES {
                self.refuse(
                    &format!("{pointer}/{}", escape_pointer(name)),
                    format!(
                        "extension {name} is not supported on operations; the only one is {REQUIRED_SCOPES}"
                    ),
                );
            }
        }
        let listed = operation.extensions.get(REQUIRED_SCOPES);
        let Some(security) = &operation.security else {
            if listed.is_some() {
                self.refuse(
                    &format!("{pointer}/{REQUIRED_SCOPES}"),
                    format!("{REQUIRED_SCOPES} needs a `security` requirement on the operation"),
                );
            }
            return None;
        };
        self.requirement(security, &format!("{pointer}/security"));
        let scopes = match listed {
            Some(listed) => self.required_scopes(listed, &format!("{pointer}/{REQUIRED_SCOPES}")),
            None => Vec::new(),
        };
        if self.problems.len() > before {
            return None;
        }
        let operation_patch =
            &mut self.additions.entry("paths").or_insert_with(|| json!({}))[path][method];
        operation_patch["security"] = serde_json::to_value(security).expect("security is JSON");
        if let Some(listed) = listed {
            operation_patch[REQUIRED_SCOPES] = listed.clone();
        }
        Some(scopes)
    }

    /// Checks an operation's `security`: one requirement, naming one declared scheme, with
    /// no scopes.
    fn requirement(&mut self, security: &[openapiv3::SecurityRequirement], pointer: &str) {
        let requirement = match security {
            [] => {
                self.refuse(
                    pointer,
                    "an empty `security` is not supported; leave it out for an open operation",
                );
                return;
            }
            [requirement] => requirement,
            _ => {
                self.refuse(
                    pointer,
                    "alternative security requirements are not supported; give exactly one",
                );
                return;
            }
        };
        let pointer = format!("{pointer}/0");
        let [(name, scopes)] = requirement.iter().collect::<Vec<_>>()[..] else {
            self.refuse(
                &pointer,
                "a security requirement must name exactly one scheme",
            );
            return;
        };
        let pointer = format!("{pointer}/{}", escape_pointer(name));
        let declared = self
            .spec
            .components
            .as_ref()
            .is_some_and(|components| components.security_schemes.contains_key(name));
        if !declared {
            self.refuse(
                &pointer,
                format!("security scheme {name} is not declared in {SCHEMES_POINTER}"),
            );
        } else if !scopes.is_empty() {
            self.refuse(
                &pointer,
                format!(
                    "OpenAPI 3.0 requires the scope array of an http scheme's requirement to be empty; list the scopes in {REQUIRED_SCOPES}"
                ),
            );
        }
    }

    /// The scope names of `x-required-scopes`: an array of unique, non-empty names without
    /// whitespace.
    fn required_scopes(&mut self, listed: &Value, pointer: &str) -> Vec<String> {
        let Some(items) = listed.as_array().filter(|items| !items.is_empty()) else {
            self.refuse(
                pointer,
                format!(
                    "{REQUIRED_SCOPES} must be an array of at least one scope name; leave it out when a valid token is enough"
                ),
            );
            return Vec::new();
        };
        let mut scopes: Vec<String> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let item_pointer = format!("{pointer}/{index}");
            match item.as_str() {
                Some(scope) if scope.is_empty() || scope.contains(char::is_whitespace) => {
                    self.refuse(
                        &item_pointer,
                        "a scope name must be non-empty and without whitespace",
                    );
                }
                Some(scope) if scopes.iter().any(|listed| listed == scope) => {
                    self.refuse(&item_pointer, format!("scope {scope} is listed twice"));
                }
                Some(scope) => scopes.push(scope.to_owned()),
                None => self.refuse(&item_pointer, "a scope name must be a string"),
            }
        }
        scopes
    }
}
