//! What every request passes through before it is sent: the headers the caller adds (a
//! request id, a W3C `traceparent`), so that one purchase can be followed from the Books
//! Service through the Order Processor to the Storage Service.

use std::{fmt, sync::Arc};

use reqwest::header::{HeaderName, HeaderValue};

/// Headers for one request, asked for as each request is sent: a closure can read the
/// caller's current span, task-local or context.
type HeaderSource = dyn Fn() -> Vec<(HeaderName, HeaderValue)> + Send + Sync;

/// The hooks a client holds. Cheap to clone: clones share them.
#[derive(Clone, Default)]
pub struct Hooks {
    headers: Option<Arc<HeaderSource>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("headers", &self.headers.is_some())
            .finish()
    }
}

impl Hooks {
    /// Hooks that add, to every request, the headers `source` answers at that moment.
    pub fn with_headers(
        source: impl Fn() -> Vec<(HeaderName, HeaderValue)> + Send + Sync + 'static,
    ) -> Self {
        Self {
            headers: Some(Arc::new(source)),
        }
    }

    /// Called by the generated client on every request it builds.
    pub(crate) fn apply(&self, request: &mut reqwest::Request) {
        // progenitor sends the contract's version as `api-version`; the service reads
        // nothing from it, and an undocumented header has no place on the wire.
        request.headers_mut().remove("api-version");
        if let Some(source) = &self.headers {
            for (name, value) in source() {
                request.headers_mut().insert(name, value);
            }
        }
    }
}
