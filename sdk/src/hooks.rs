//! What every request passes through before it is sent: the bearer token the service needs
//! when it checks access, and the headers the caller adds (a request id, a W3C
//! `traceparent`), so that one purchase can be followed from the Books Service through the
//! Order Processor to the Storage Service.

use std::{fmt, sync::Arc};

use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};

/// Headers for one request, asked for as each request is sent: a closure can read the
/// caller's current span, task-local or context.
type HeaderSource = dyn Fn() -> Vec<(HeaderName, HeaderValue)> + Send + Sync;

/// The hooks a client holds. Cheap to clone: clones share them.
#[derive(Clone, Default)]
pub struct Hooks {
    headers: Option<Arc<HeaderSource>>,
    /// `Bearer <token>`, marked sensitive.
    authorization: Option<HeaderValue>,
}

/// Never the token: only whether there is one.
impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("headers", &self.headers.is_some())
            .field("bearer_token", &self.authorization.is_some())
            .finish()
    }
}

/// A token that cannot be sent as a bearer token. It does not hold the token, so that it can
/// be shown and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBearerToken;

impl fmt::Display for InvalidBearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a bearer token is one or more letters, digits, `-`, `.`, `_`, `~`, `+` or `/`, \
             then optionally `=` (RFC 6750)",
        )
    }
}

impl std::error::Error for InvalidBearerToken {}

impl Hooks {
    /// Hooks that add, to every request, the headers `source` answers at that moment.
    pub fn with_headers(
        source: impl Fn() -> Vec<(HeaderName, HeaderValue)> + Send + Sync + 'static,
    ) -> Self {
        Self::default().headers(source)
    }

    /// These hooks, with the headers `source` answers in place of any earlier source.
    pub(crate) fn headers(
        self,
        source: impl Fn() -> Vec<(HeaderName, HeaderValue)> + Send + Sync + 'static,
    ) -> Self {
        Self {
            headers: Some(Arc::new(source)),
            ..self
        }
    }

    /// These hooks, also sending `Authorization: Bearer <token>` with every request, the
    /// header value marked sensitive so that no debug output shows it. A header of the same
    /// name from `with_headers` takes its place, so a source can answer a renewed token.
    pub fn with_bearer_token(self, token: &str) -> Result<Self, InvalidBearerToken> {
        // RFC 6750's b64token: what a JWT is made of. Anything else, such as a token read
        // from a file with its newline, would be sent as something else or not at all.
        let (body, padding) = token.split_at(token.trim_end_matches('=').len());
        let valid = !body.is_empty()
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
            && padding.bytes().all(|b| b == b'=');
        if !valid {
            return Err(InvalidBearerToken);
        }
        let mut value =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| InvalidBearerToken)?;
        value.set_sensitive(true);
        Ok(Self {
            authorization: Some(value),
            ..self
        })
    }

    /// Called by the generated client on every request it builds.
    pub(crate) fn apply(&self, request: &mut reqwest::Request) {
        // progenitor sends the contract's version as `api-version`; the service reads
        // nothing from it, and an undocumented header has no place on the wire.
        request.headers_mut().remove("api-version");
        if let Some(authorization) = &self.authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        if let Some(source) = &self.headers {
            for (name, value) in source() {
                request.headers_mut().insert(name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib29rcyJ9.c2lnbmF0dXJl";

    fn applied(hooks: &Hooks) -> reqwest::Request {
        let url = "http://127.0.0.1:9/orders".parse().expect("a URL");
        let mut request = reqwest::Request::new(reqwest::Method::GET, url);
        hooks.apply(&mut request);
        request
    }

    #[test]
    fn the_token_is_sent_as_a_sensitive_bearer_header_and_never_shown() {
        let hooks = Hooks::default()
            .with_bearer_token(TOKEN)
            .expect("a valid token");
        let request = applied(&hooks);
        let authorization = &request.headers()[AUTHORIZATION];
        assert_eq!(authorization, &format!("Bearer {TOKEN}"));
        assert!(authorization.is_sensitive());
        assert!(!format!("{request:?}").contains(TOKEN), "{request:?}");
        assert_eq!(
            format!("{hooks:?}"),
            "Hooks { headers: false, bearer_token: true }"
        );
    }

    #[test]
    fn only_a_bearer_token_of_rfc_6750_is_taken() {
        for token in ["", "=", "has space", "line\n", "a=b", "tab\t", "é"] {
            assert_eq!(
                Hooks::default().with_bearer_token(token).map(|_| ()),
                Err(InvalidBearerToken),
                "{token:?}"
            );
        }
        for token in [TOKEN, "abc==", "a-._~+/Z9"] {
            assert!(Hooks::default().with_bearer_token(token).is_ok(), "{token}");
        }
    }

    #[test]
    fn headers_of_the_caller_come_after_the_token_and_can_renew_it() {
        let hooks = Hooks::default()
            .with_bearer_token(TOKEN)
            .expect("a valid token")
            .headers(|| vec![(AUTHORIZATION, HeaderValue::from_static("Bearer renewed"))]);
        assert_eq!(applied(&hooks).headers()[AUTHORIZATION], "Bearer renewed");
    }
}
