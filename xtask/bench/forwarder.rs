//! The bench's floor for `GET /orders/{id}`: a bare forwarder on the stack the Order Processor
//! is built on (hyper serving HTTP/1.1, the storage call built by reqwest and sent over the
//! Order Processor's own `Channel`, one Tokio worker), with none of the service around it: no
//! routing, validation, JSON, access log, metrics, tracing, limits or retries. What it spends
//! per request is the least any service on this stack can spend on a request that makes one
//! storage call, so the bench reports it beside the Order Processor's figure.
//!
//! `SERVER_PORT` is the port to listen on (loopback), `STORAGE_SERVICE_URL` the Storage
//! Service; `GET /health/ready` answers 200, any other `GET` is sent on to the Storage
//! Service and its status and body are answered as they come.

use std::{convert::Infallible, net::Ipv4Addr, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode, body::Incoming, header, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use order_processor::storage::http::Channel;

type Body = Full<Bytes>;

/// The services' allocator (see `order_processor::allocator`), so that the floor is that of
/// the same stack.
#[global_allocator]
static ALLOCATOR: order_processor::allocator::Mimalloc = order_processor::allocator::Mimalloc;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(serve());
}

async fn serve() {
    let port: u16 = std::env::var("SERVER_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .expect("SERVER_PORT: a port");
    let storage: Arc<str> = std::env::var("STORAGE_SERVICE_URL")
        .expect("STORAGE_SERVICE_URL: the Storage Service")
        .trim_end_matches('/')
        .into();
    // As the Order Processor's storage client: reqwest builds the requests, the channel sends
    // them (pool settings of `HttpStorageConfig::default`).
    let client = reqwest::Client::new();
    let channel = Channel::default();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("a free port");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (client, channel, storage) = (client.clone(), channel.clone(), storage.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                forward(client.clone(), channel.clone(), storage.clone(), request)
            });
            // A connection that breaks ends here; the bench counts its errors from wrk.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: reqwest::Client,
    channel: Channel,
    storage: Arc<str>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    if path == "/health/ready" {
        return Ok(Response::new(Body::default()));
    }
    let Ok(request) = client.get(format!("{storage}{path}")).build() else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    // A request that got no answer comes back as the channel's stand-in, a 502.
    let answer = match channel.send(request).await {
        Ok(answer) => answer,
        Err(_) => return Ok(status(StatusCode::BAD_GATEWAY)),
    };
    let code = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let Ok(body) = answer.bytes().await else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    Ok(response)
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = code;
    response
}
