//! What both services share around their generated API: the documentation routes, Problem
//! answers for every error poem raises itself (unknown route, wrong method, body too large,
//! panic), the request limits (load shedding, deadline, body timeout, head size), the bearer
//! tokens of protected operations, a request id, one access-log line and the request metrics
//! per request, `GET /metrics`, and the server with its graceful shutdown.

use std::{
    borrow::Cow,
    convert::Infallible,
    io,
    marker::PhantomData,
    net::SocketAddr,
    panic::AssertUnwindSafe,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, LengthLimitError, Limited, combinators::BoxBody};
use poem::{
    Body, Endpoint, EndpointExt, IntoEndpoint, IntoResponse, Request, Response, Route,
    error::ReadBodyError,
    http::{HeaderValue, Method, StatusCode, header},
};
use poem_openapi::{OpenApi, OpenApiService, types::ToJSON};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, oneshot},
    task::JoinHandle,
};
use tracing::Instrument;

use crate::trace::{self, RequestContext, TraceContext, Traceparent};

use super::{
    connections,
    limits::ServerLimits,
    problem::{self, Problem},
};
use crate::{
    access::{self, Principal, Refused, Verifier},
    metrics::{self, MetricsToken, Refusal},
    periodic,
};

/// Largest request body, far above any order (a few hundred bytes) and small enough that a
/// flood of large bodies cannot exhaust memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long in-flight requests may run on after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// The probes' endpoints, answered however many requests are in progress: a busy replica
/// is alive, and must not be restarted for being busy.
const HEALTH_PATHS: [&str; 3] = ["/health", "/health/live", "/health/ready"];

/// Where Prometheus scrapes the metrics. Like the documentation routes it is outside the
/// API's spec.
const METRICS_PATH: &str = "/metrics";

/// Longest method logged; a longer one is cut. Every method the services answer is shorter.
const MAX_LOGGED_METHOD_CHARS: usize = 16;

/// A path of an API as its generated `ROUTES` lists it: the methods it answers, the
/// header parameters that each method's operation declares, and the scopes a bearer token
/// needs for each method whose operation declares `security` (all of them; none: a valid
/// token is enough). A method not in `security` is open.
#[derive(Debug)]
pub struct ApiRoute {
    pub template: &'static str,
    pub methods: &'static [Method],
    pub headers: &'static [(Method, &'static str)],
    pub security: &'static [(Method, &'static [&'static str])],
}

/// The routes that the docs add to every API.
const DOCS_ROUTES: &[ApiRoute] = &[
    ApiRoute {
        template: "/docs",
        methods: &[Method::GET],
        headers: &[],
        security: &[],
    },
    ApiRoute {
        template: "/openapi.json",
        methods: &[Method::GET],
        headers: &[],
        security: &[],
    },
    ApiRoute {
        template: "/openapi.yaml",
        methods: &[Method::GET],
        headers: &[],
        security: &[],
    },
];

/// The paths the service answers, as route templates with their methods: for the `Allow`
/// header of a 405 and for the route name in the access log.
struct RouteTable(Vec<RouteEntry>);

struct RouteEntry {
    route: &'static ApiRoute,
    segments: Vec<&'static str>,
}

impl RouteTable {
    /// The API's routes, then the docs routes.
    fn new(api_routes: &'static [ApiRoute]) -> Self {
        let entries = api_routes
            .iter()
            .chain(DOCS_ROUTES)
            .map(|route| RouteEntry {
                route,
                segments: route.template.trim_end_matches('/').split('/').collect(),
            });
        Self(entries.collect())
    }

    /// The route of `path`. It runs several times on every request, so it walks the path's
    /// segments in place rather than collecting them.
    fn find(&self, path: &str) -> Option<&RouteEntry> {
        let path = path.trim_end_matches('/');
        self.0.iter().find(|entry| {
            let mut segments = path.split('/');
            entry.segments.iter().all(|pattern| {
                segments.next().is_some_and(|segment| {
                    (pattern.starts_with('{') && !segment.is_empty()) || *pattern == segment
                })
            }) && segments.next().is_none()
        })
    }
}

/// The application of one service: its API, Swagger UI at `/docs`, the spec at
/// `/openapi.json` and `/openapi.yaml`, and the shared middleware. `routes` and
/// `document_additions` are the API's generated `ROUTES` and `document_additions`; `P` is the
/// service's generated Problem type.
pub fn app<T, P>(
    api: OpenApiService<T, ()>,
    routes: &'static [ApiRoute],
    document_additions: fn() -> serde_json::Value,
) -> impl Endpoint<Output = Response>
where
    T: OpenApi + 'static,
    P: From<Problem> + ToJSON + 'static,
{
    // Installed before the first request, so that nothing the service records is lost.
    metrics::handle();
    let spec = api.spec();
    Middleware {
        api: api.into_endpoint(),
        docs: docs::<T>(spec, document_additions),
        routes: RouteTable::new(routes),
        problem: PhantomData::<fn() -> P>,
    }
}

/// The shared middleware around the routes `api` and `docs`, in the order it takes a request:
/// `GET /metrics` ([`serve_metrics`]); the request id, trace, access log and request metrics
/// ([`Middleware::log_request`]); the server's limits ([`Middleware::admit`]); a panic answered
/// as a Problem; the bearer tokens ([`Middleware::authorize`]); the declared headers
/// ([`invalid_header`]); every error of the routes answered as a Problem ([`error_response`]).
/// One endpoint rather than a stack of poem's `around` layers: each layer held the future of
/// the next and moved it again, and three looked the route up again, several thousand
/// instructions a request.
struct Middleware<E, P> {
    api: E,
    /// Taken by the docs' paths exactly, everything else going to `api`: a poem `Route` over
    /// both would match each path twice and rewrite each API request's URI for the nesting.
    docs: Route,
    routes: RouteTable,
    problem: PhantomData<fn() -> P>,
}

impl<E: Endpoint, P: From<Problem> + ToJSON> Endpoint for Middleware<E, P> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        if request.uri().path() == METRICS_PATH {
            return Ok(serve_metrics::<P>(&request));
        }
        Ok(self.log_request(request).await)
    }
}

impl<E: Endpoint, P: From<Problem> + ToJSON> Middleware<E, P> {
    /// Gives the request an id (the caller's `X-Request-Id` when it has a safe form, a fresh
    /// one otherwise) and a span of the caller's trace (its `traceparent` when valid, a new
    /// trace otherwise); runs it in a log span that carries both, with both carried on to
    /// every storage call; echoes the request id, and logs one line with method, route,
    /// status and latency, and records the same in the request metrics. The method is the
    /// only field taken from the client as it came: it is cut to a few characters, and logged
    /// as a string value, which the text format quotes and escapes.
    async fn log_request(&self, request: Request) -> Response {
        let started = Instant::now();
        let _in_flight = metrics::InFlight::enter();
        let request_id = trace::request_id_from(request.headers());
        let trace = TraceContext::continuing(Traceparent::from_headers(request.headers()));
        let method = request.method().clone();
        let route = self.routes.find(request.uri().path());
        let template = route.map(|entry| entry.route.template);
        let (span, trace) = trace::request_span(&request_id, trace);
        // A safe request id is visible ASCII, which a header value always takes.
        let request_id_header = HeaderValue::from_str(&request_id).ok();
        let context = RequestContext::new(trace, request_id_header.as_ref());
        // Boxed here so that the rest of the request, the largest future of the stack, is
        // moved once into the heap rather than with each future around it.
        let mut response = trace::within(context, Box::pin(self.admit(request, route)))
            .instrument(span.clone())
            .await;
        let status = response.status().as_u16();
        let latency = started.elapsed();
        span.in_scope(|| {
            let method = clipped(method.as_str(), MAX_LOGGED_METHOD_CHARS);
            tracing::info!(
                method = &*method,
                route = template.unwrap_or("-"),
                status,
                ?latency,
                "request"
            );
        });
        metrics::request_answered(
            template.unwrap_or("unmatched"),
            metrics::method_label(&method),
            status,
            latency,
        );
        if let Some(value) = request_id_header {
            response.headers_mut().insert(trace::REQUEST_ID, value);
        }
        response
    }

    /// Holds a request to the limits of the server that serves it: a head within
    /// `max_uri_bytes` (414) and `max_header_bytes` (431); a place among the requests in
    /// progress (503 at once when there is none, except for the health endpoints); a body of
    /// at most `MAX_BODY_BYTES` (413), whether announced or chunked, read within
    /// `body_read_timeout` (408); and an answer within `request_deadline` (503).
    async fn admit(&self, mut request: Request, route: Option<&RouteEntry>) -> Response {
        let Some(admission) = request.data::<Arc<Admission>>().cloned() else {
            return self.guard(request, route, None).await;
        };
        let limits = &admission.limits;
        let uri_bytes = target_bytes(request.uri());
        if uri_bytes > limits.max_uri_bytes {
            metrics::refused(Refusal::UriTooLong);
            return problem_response::<P>(Problem::new(
                problem::URI_TOO_LONG,
                format!(
                    "the request target is longer than {} bytes",
                    limits.max_uri_bytes
                ),
            ));
        }
        if head_bytes(&request, uri_bytes) > limits.max_header_bytes {
            metrics::refused(Refusal::HeadersTooLarge);
            return problem_response::<P>(Problem::new(
                problem::HEADERS_TOO_LARGE,
                format!(
                    "the request head is larger than {} bytes",
                    limits.max_header_bytes
                ),
            ));
        }
        let _in_flight = if HEALTH_PATHS.contains(&request.uri().path()) {
            None
        } else {
            match admission.in_flight.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    metrics::refused(Refusal::Overloaded);
                    return problem_response::<P>(Problem::new(
                        problem::OVERLOADED,
                        "too many requests are in progress; retry after the given delay",
                    ));
                }
            }
        };
        let answer = async {
            let announced = request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if announced.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
                return body_too_large::<P>();
            }
            let body = whole_body(request.take_body());
            match tokio::time::timeout(limits.body_read_timeout, body).await {
                Ok(Ok(bytes)) => request.set_body(Body::from(bytes)),
                Ok(Err(ReadBodyError::PayloadTooLarge)) => return body_too_large::<P>(),
                Ok(Err(err)) => return error_response::<P>(&err.into(), route),
                Err(_) => {
                    metrics::refused(Refusal::RequestTimeout);
                    let mut response = problem_response::<P>(Problem::new(
                        problem::REQUEST_TIMEOUT,
                        format!(
                            "the request body did not arrive within {} ms",
                            limits.body_read_timeout.as_millis()
                        ),
                    ));
                    // The rest of the body may still be on its way: the connection cannot
                    // carry another request.
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    return response;
                }
            }
            self.guard(request, route, admission.access.as_deref())
                .await
        };
        // The calls a request makes end a tenth of its deadline early, so that the handler
        // still answers with what it knows (the order it recorded) before the cut below.
        let inner_deadline = tokio::time::Instant::now() + limits.request_deadline.mul_f64(0.9);
        let answer = crate::deadline::within(inner_deadline, answer);
        match tokio::time::timeout(limits.request_deadline, answer).await {
            Ok(answered) => answered,
            Err(_) => {
                metrics::refused(Refusal::DeadlineExceeded);
                tracing::warn!(deadline = ?limits.request_deadline, "the request did not finish within its deadline");
                problem_response::<P>(Problem::new(
                    problem::DEADLINE_EXCEEDED,
                    format!(
                        "the request did not finish within {} ms; retry after the given delay",
                        limits.request_deadline.as_millis()
                    ),
                ))
            }
        }
    }

    /// Answers a panic of what follows as a Problem.
    async fn guard(
        &self,
        request: Request,
        route: Option<&RouteEntry>,
        verifier: Option<&Verifier>,
    ) -> Response {
        match AssertUnwindSafe(self.authorize(request, route, verifier))
            .catch_unwind()
            .await
        {
            Ok(response) => response,
            Err(_) => problem_response::<P>(Problem::new(
                problem::INTERNAL,
                "an unexpected error occurred",
            )),
        }
    }

    /// Holds the operations that the API's `ROUTES` protect to a bearer token holding their
    /// scopes, when the server checks tokens (`verifier`): `401` without a valid one, `403`
    /// without a scope. Runs the rest of the request with the verified caller as
    /// [`access::caller`].
    async fn authorize(
        &self,
        request: Request,
        route: Option<&RouteEntry>,
        verifier: Option<&Verifier>,
    ) -> Response {
        let needed = verifier
            .zip(route)
            .and_then(|(_, entry)| required_scopes(entry, &request));
        let caller = match (verifier, needed) {
            (Some(verifier), Some(needed)) => match authenticate(verifier, &request, needed) {
                Ok(principal) => Some(principal),
                Err(denied) => return denied.response::<P>(verifier.audience(), needed),
            },
            _ => None,
        };
        access::within(caller, self.route(request, route)).await
    }

    /// Refuses a declared header that poem would misread ([`invalid_header`]), then answers
    /// from the routes, every error of theirs as a Problem.
    async fn route(&self, request: Request, route: Option<&RouteEntry>) -> Response {
        if let Some(problem) = route.and_then(|entry| invalid_header(entry, &request)) {
            return problem_response::<P>(problem);
        }
        let path = request.uri().path();
        let answer = if DOCS_ROUTES.iter().any(|docs| docs.template == path) {
            self.docs.call(request).await
        } else {
            self.api
                .call(request)
                .await
                .map(IntoResponse::into_response)
        };
        match answer {
            Ok(answer) => answer,
            Err(err) => error_response::<P>(&err, route),
        }
    }
}

/// Answers `GET /metrics` ahead of the rest of the middleware: a scrape is neither shed nor
/// held to the deadline, so that the metrics of a saturated replica can still be read, and
/// it is neither counted nor logged, so that scraping does not show up in what it measures.
/// When the server has a [`MetricsToken`], it must come as `Authorization: Bearer <token>`.
fn serve_metrics<P: From<Problem> + ToJSON>(request: &Request) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = problem_response::<P>(Problem::new(
            problem::METHOD_NOT_ALLOWED,
            "this path does not answer this method",
        ));
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let token = request
        .data::<Arc<Admission>>()
        .and_then(|admission| admission.metrics_token.as_ref());
    if let Some(token) = token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .map_or(&[][..], HeaderValue::as_bytes);
        if !token.admits(presented) {
            let mut response = problem_response::<P>(Problem::new(
                problem::UNAUTHORIZED,
                "the metrics need the bearer token of METRICS_TOKEN_FILE",
            ));
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    Response::builder()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render())
}

/// The documentation routes: the document at `/openapi.json` and `/openapi.yaml`, and
/// Swagger UI at `/docs`. The document is poem-openapi's (`spec`) with what the generator adds
/// that poem-openapi cannot declare (`additions`, the answers' examples). All three are built on
/// their first request: the page inlines a 1.5 MB bundle and the document, and building them at
/// start-up delayed readiness and kept them resident in every replica, browsed or not.
fn docs<T: OpenApi + 'static>(spec: String, additions: fn() -> serde_json::Value) -> Route {
    let documents = Arc::new(Documents {
        spec,
        additions,
        swagger_ui: swagger_ui::<T>,
        json: OnceLock::new(),
        yaml: OnceLock::new(),
        page: OnceLock::new(),
    });
    let (json, yaml, page) = (documents.clone(), documents.clone(), documents);
    Route::new()
        .at(
            "/openapi.json",
            poem::endpoint::make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(json.json().to_owned())
            }),
        )
        .at(
            "/openapi.yaml",
            poem::endpoint::make_sync(move |_| {
                Response::builder()
                    .content_type("application/x-yaml")
                    .header("Content-Disposition", "inline; filename=\"spec.yaml\"")
                    .body(yaml.yaml().to_owned())
            }),
        )
        .at(
            "/docs",
            poem::endpoint::make_sync(move |_| poem::web::Html(page.page().to_owned())),
        )
}

/// Swagger UI's page over poem-openapi's document `spec`, from a service that declares the
/// same title, version, description and servers.
fn swagger_ui<T: OpenApi + 'static>(spec: &str) -> String {
    let document: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
    let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    let mut service = OpenApiService::new(
        DocumentOf::<T>(PhantomData),
        text(&document["info"]["title"]),
        text(&document["info"]["version"]),
    );
    if let Some(description) = document["info"]["description"].as_str() {
        service = service.description(description);
    }
    for server in document["servers"].as_array().into_iter().flatten() {
        let object = poem_openapi::ServerObject::new(text(&server["url"]));
        service = service.server(match server["description"].as_str() {
            Some(description) => object.description(description),
            None => object,
        });
    }
    service.swagger_ui_html()
}

/// The served document in its three forms, each built once, on first use.
struct Documents {
    /// poem-openapi's document, as JSON.
    spec: String,
    additions: fn() -> serde_json::Value,
    /// Swagger UI's page over poem-openapi's document, given that document: reading the
    /// document's title and servers out of it is left to the page's first request.
    swagger_ui: fn(&str) -> String,
    json: OnceLock<String>,
    yaml: OnceLock<String>,
    page: OnceLock<String>,
}

impl Documents {
    fn json(&self) -> &str {
        self.json.get_or_init(|| {
            let mut document = serde_json::from_str(&self.spec).unwrap_or_default();
            merge_patch(&mut document, (self.additions)());
            serde_json::to_string_pretty(&document).unwrap_or_default()
        })
    }

    fn yaml(&self) -> &str {
        self.yaml.get_or_init(|| {
            let document: serde_json::Value = serde_json::from_str(self.json()).unwrap_or_default();
            serde_yaml::to_string(&document).unwrap_or_default()
        })
    }

    /// poem-openapi builds the page only from its own document, which the page inlines
    /// verbatim: that text is replaced by the served one.
    fn page(&self) -> &str {
        self.page
            .get_or_init(|| (self.swagger_ui)(&self.spec).replacen(&self.spec, self.json(), 1))
    }
}

/// Applies a JSON merge patch (RFC 7396) to `target`.
fn merge_patch(target: &mut serde_json::Value, patch: serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    let serde_json::Value::Object(target) = target else {
        unreachable!("made an object above");
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(&key);
        } else {
            merge_patch(target.entry(key).or_insert(serde_json::Value::Null), value);
        }
    }
}

/// The document of the API `T`, without an instance of it.
struct DocumentOf<T>(PhantomData<fn() -> T>);

impl<T: OpenApi> OpenApi for DocumentOf<T> {
    fn meta() -> Vec<poem_openapi::registry::MetaApi> {
        T::meta()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        T::register(registry);
    }

    fn add_routes(
        self,
        _: &mut std::collections::HashMap<
            String,
            std::collections::HashMap<Method, poem::endpoint::BoxEndpoint<'static>>,
        >,
    ) {
    }
}

/// A Problem answer; for 503 with `Retry-After`.
pub fn problem_response<P: From<Problem> + ToJSON>(problem: Problem) -> Response {
    let status = problem.kind.status;
    let body = P::from(problem).to_json().unwrap_or_default();
    let mut response = Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(body.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(super::RETRY_AFTER_SECONDS),
        );
    }
    response
}

/// The Problem answer to an error of the routes: an unknown path, a method the path does not
/// answer (with its `Allow`), a request the operation could not read, or any other.
fn error_response<P: From<Problem> + ToJSON>(
    err: &poem::Error,
    route: Option<&RouteEntry>,
) -> Response {
    match err.status() {
        StatusCode::NOT_FOUND => {
            problem_response::<P>(Problem::new(problem::NOT_FOUND, "no resource at this path"))
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            let mut response = problem_response::<P>(Problem::new(
                problem::METHOD_NOT_ALLOWED,
                "this path does not answer this method",
            ));
            if let Some(allow) = route.and_then(|entry| allow_header(entry.route.methods)) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            response
        }
        status if status.is_client_error() => {
            problem_response::<P>(Problem::from_request_error(err, &[]))
        }
        status => {
            tracing::error!(%status, error = %err, "unhandled error");
            problem_response::<P>(Problem::new(
                problem::INTERNAL,
                "an unexpected error occurred",
            ))
        }
    }
}

fn allow_header(methods: &[Method]) -> Option<HeaderValue> {
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    HeaderValue::from_str(&names.join(", ")).ok()
}

/// The scopes the request's operation needs, or `None` when it is open. A `HEAD` is answered
/// by the `GET` of its path, and needs what that needs.
fn required_scopes(entry: &RouteEntry, request: &Request) -> Option<&'static [&'static str]> {
    let method = match *request.method() {
        Method::HEAD => &Method::GET,
        ref method => method,
    };
    entry
        .route
        .security
        .iter()
        .find(|(protected, _)| protected == method)
        .map(|(_, scopes)| *scopes)
}

/// Why a request to a protected operation is not let through.
enum Denied {
    Unauthenticated(Refused),
    /// The token is valid but lacks these scopes.
    Forbidden(Vec<&'static str>),
}

/// The caller of `request` when its bearer token is valid and holds every scope of `needed`.
/// A refusal is logged with its reason alone: never the token, nor any claim but `sub`.
fn authenticate(
    verifier: &Verifier,
    request: &Request,
    needed: &'static [&'static str],
) -> Result<Principal, Denied> {
    let principal = bearer_token(request)
        .and_then(|token| verifier.verify(token))
        .map_err(|refused| {
            metrics::refused(Refusal::Unauthenticated);
            match refused {
                Refused::Missing => tracing::debug!("a protected operation without a bearer token"),
                refused => tracing::info!(reason = refused.reason(), "refused a bearer token"),
            }
            Denied::Unauthenticated(refused)
        })?;
    let missing = principal.missing(needed);
    if missing.is_empty() {
        return Ok(principal);
    }
    metrics::refused(Refusal::Forbidden);
    tracing::info!(sub = principal.subject(), missing = %missing.join(" "), "the bearer token lacks a scope of the operation");
    Err(Denied::Forbidden(missing))
}

/// The token of the one `Authorization: Bearer` header. Another scheme counts as no token;
/// several headers or one that is not text, as a malformed token.
fn bearer_token(request: &Request) -> Result<&str, Refused> {
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Refused::Missing);
    };
    if values.next().is_some() {
        return Err(Refused::Malformed);
    }
    let value = value.to_str().map_err(|_| Refused::Malformed)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refused::Missing);
    }
    match token.trim() {
        "" => Err(Refused::Malformed),
        token => Ok(token),
    }
}

impl Denied {
    /// The Problem answer, with the challenge of RFC 6750 that never echoes the token:
    /// `realm` is the service's audience; a refused token adds `error="invalid_token"`, a
    /// missing scope `error="insufficient_scope"` and the scopes the operation needs.
    fn response<P: From<Problem> + ToJSON>(&self, realm: &str, needed: &[&str]) -> Response {
        let (problem, challenge) = match self {
            Self::Unauthenticated(Refused::Missing) => (
                Problem::new(problem::UNAUTHORIZED, Refused::Missing.detail()),
                format!("Bearer realm=\"{realm}\""),
            ),
            Self::Unauthenticated(refused) => (
                Problem::new(problem::UNAUTHORIZED, refused.detail()),
                format!("Bearer realm=\"{realm}\", error=\"invalid_token\""),
            ),
            Self::Forbidden(missing) => (
                Problem::new(
                    problem::FORBIDDEN,
                    format!(
                        "this operation needs a token with the scope {}",
                        missing.join(" and ")
                    ),
                ),
                format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                    needed.join(" ")
                ),
            ),
        };
        let mut response = problem_response::<P>(problem);
        // The realm is checked when it is read and the rest is fixed text: always a valid
        // header value.
        if let Ok(challenge) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// The Problem of a declared header parameter of the request's operation whose value is not
/// visible ASCII, which poem would read as absent (an `Idempotency-Key` silently dropped).
fn invalid_header(entry: &RouteEntry, request: &Request) -> Option<Problem> {
    entry
        .route
        .headers
        .iter()
        .filter(|(method, _)| method == request.method())
        .find(|(_, name)| {
            request
                .headers()
                .get_all(*name)
                .iter()
                .any(|value| value.to_str().is_err())
        })
        .map(|(_, name)| Problem::invalid_field(name, "must hold visible ASCII characters only"))
}

/// What the server that serves the application admits: handed to the application with each
/// request (see [`Server::run`]), so that one server's limits and count of requests in
/// progress hold for everything it serves.
struct Admission {
    limits: ServerLimits,
    in_flight: Semaphore,
    metrics_token: Option<MetricsToken>,
    /// Checks the tokens of protected operations; `None`: access is open.
    access: Option<Arc<Verifier>>,
}

/// All of a request's body, at most `MAX_BODY_BYTES` of it. Not poem's `into_bytes_limit`,
/// which zeroes a 4 KiB buffer on every call, body or none (4 k instructions a request), and
/// holds it in the future of the request; an empty body is not read at all.
async fn whole_body(body: Body) -> Result<Bytes, ReadBodyError> {
    if body.is_empty() {
        return Ok(Bytes::new());
    }
    let body: BoxBody<Bytes, io::Error> = body.into();
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(ReadBodyError::PayloadTooLarge),
        Err(err) => Err(ReadBodyError::Io(
            err.downcast::<io::Error>()
                .map_or_else(io::Error::other, |err| *err),
        )),
    }
}

fn body_too_large<P: From<Problem> + ToJSON>() -> Response {
    metrics::refused(Refusal::BodyTooLarge);
    problem_response::<P>(Problem::new(
        problem::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    ))
}

/// The length of a request target as it came on the wire, near enough: `/path?query`, or
/// `http://host/path?query`.
fn target_bytes(uri: &poem::http::Uri) -> usize {
    uri.scheme_str().map_or(0, |scheme| scheme.len() + 3)
        + uri
            .authority()
            .map_or(0, |authority| authority.as_str().len())
        + uri
            .path_and_query()
            .map_or(0, |target| target.as_str().len())
}

/// The size of a request's head as it came on the wire: request line and header lines.
fn head_bytes(request: &Request, target_bytes: usize) -> usize {
    // "METHOD target HTTP/1.1\r\n": two spaces, the version, the line end.
    let request_line = request.method().as_str().len() + target_bytes + 12;
    let header_lines: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    request_line + header_lines
}

/// At most `max` characters of `value`, with `…` in place of the rest.
fn clipped(value: &str, max: usize) -> Cow<'_, str> {
    match value.char_indices().nth(max) {
        None => Cow::Borrowed(value),
        Some((end, _)) => Cow::Owned(format!("{}…", &value[..end])),
    }
}

/// A bound, not yet running, server.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    limits: ServerLimits,
    metrics_token: Option<MetricsToken>,
    access: Option<Arc<Verifier>>,
}

impl Server {
    /// Binds `addr`; the server holds to the default [`ServerLimits`] until given others.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            limits: ServerLimits::default(),
            metrics_token: None,
            access: None,
        })
    }

    #[must_use]
    pub fn with_limits(self, limits: ServerLimits) -> Self {
        Self { limits, ..self }
    }

    /// Asks `GET /metrics` for `token` as a bearer token; `None` leaves it open.
    #[must_use]
    pub fn with_metrics_token(self, metrics_token: Option<MetricsToken>) -> Self {
        Self {
            metrics_token,
            ..self
        }
    }

    /// Checks the bearer tokens of the operations that the API's `ROUTES` protect with
    /// `access`; `None`, the default, leaves access open.
    #[must_use]
    pub fn with_access(self, access: Option<Arc<Verifier>>) -> Self {
        Self { access, ..self }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish for up to
    /// `DRAIN_TIMEOUT`. The limits on requests apply to an application built by [`app`].
    pub async fn run(
        self,
        app: impl Endpoint + 'static,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        #[cfg(unix)]
        connections::raise_open_file_limit(self.limits.max_connections);
        match &self.access {
            Some(verifier) => verifier.announce(),
            None => tracing::warn!(
                "neither AUTH_JWKS_FILE nor AUTH_HS256_SECRET_FILE is set: access is open, every caller may use every operation"
            ),
        }
        let admission = Arc::new(Admission {
            in_flight: Semaphore::new(self.limits.max_requests_in_flight),
            limits: self.limits.clone(),
            metrics_token: self.metrics_token,
            access: self.access.clone(),
        });
        let app = app.data(admission).map_to_response().boxed();
        let serving = connections::serve(self.listener, app, self.limits, shutdown, DRAIN_TIMEOUT);
        let watching_keys = async {
            match &self.access {
                Some(verifier) => verifier.watch().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = serving => {}
            never = metrics_upkeep() => match never {},
            never = watching_keys => match never {},
        }
        Ok(())
    }
}

impl Server {
    /// Serves `app` on a Tokio task until the returned handle is stopped or dropped. Must be
    /// called inside a Tokio runtime.
    pub fn spawn(self, app: impl Endpoint + 'static) -> Running {
        let addr = self.addr;
        let (stop, stopped) = oneshot::channel::<()>();
        // A dropped sender means the handle is gone: stop as well.
        let task = tokio::spawn(self.run(app, async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            stop: Some(stop),
            task,
        }
    }
}

/// A server running on a background task. Dropping it also shuts the server down
/// (gracefully, without waiting), so that a failing test cannot leave a server behind.
pub struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Running {
    /// The base URL of the server, without a trailing slash, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, waits for in-flight requests to finish, and answers how
    /// the server ended.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            // The server may have ended already; its result below says why.
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(io::Error::other)?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Dropping the sender completes the shutdown future on the server task.
        self.stop.take();
    }
}

/// Keeps the metrics' memory bounded while the server runs, scraped or not (see
/// [`metrics::UPKEEP_PERIOD`]).
async fn metrics_upkeep() -> Infallible {
    periodic::forever(metrics::UPKEEP_PERIOD, metrics::upkeep).await
}

/// Completes on SIGTERM (what Kubernetes sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn a_merge_patch_adds_replaces_and_removes_members_and_keeps_the_rest_in_order() {
        let mut document = json!({
            "openapi": "3.0.0",
            "paths": { "/a": { "get": { "responses": { "400": { "description": "Bad." } } } } },
            "gone": true
        });
        merge_patch(
            &mut document,
            json!({
                "paths": { "/a": { "get": { "responses": { "400": { "examples": { "x": 1 } } } } } },
                "components": { "examples": { "x": { "value": 1 } } },
                "openapi": "3.0.3",
                "gone": null
            }),
        );
        assert_eq!(
            document,
            json!({
                "openapi": "3.0.3",
                "paths": { "/a": { "get": { "responses": {
                    "400": { "description": "Bad.", "examples": { "x": 1 } }
                } } } },
                "components": { "examples": { "x": { "value": 1 } } }
            })
        );
        let keys: Vec<&String> = document.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["openapi", "paths", "components"]);
    }
}
