//! The HTTP server: one hyper connection per accepted socket, so that a fault
//! can close a connection without answering, which an axum handler cannot do.
//! Every request passes the fault gate (count, delay, drop or fail) before
//! reaching the API or, for `/_sim`, the control routes.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::faults::Injected;
use crate::shared::Shared;
use crate::status::ApiError;
use crate::sync::lock;
use crate::{control, http};

/// The API server's own limit on request bodies.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Serves until the task is aborted; aborting drops the open connections too.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let control = control::router(shared.clone());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // Small request/response pairs: Nagle's algorithm would add delays.
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let control = control.clone();
                let service = service_fn(move |request| gate(shared.clone(), control.clone(), request));
                connections.spawn(async move {
                    // Ends with an error when a fault drops the connection; nothing to report.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Returned to hyper to make it close the connection without a response.
#[derive(Debug)]
struct ConnectionDropped;

impl fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for ConnectionDropped {}

async fn gate(shared: Arc<Shared>, control: Router, request: Request<Incoming>) -> Result<Response, ConnectionDropped> {
    let path = request.uri().path();
    if path == "/_sim" || path.starts_with("/_sim/") {
        let response: Result<Response, Infallible> = control.oneshot(request).await;
        return Ok(response.unwrap_or_else(|never| match never {}));
    }
    let endpoint = http::classify(request.method(), request.uri());
    let counted = endpoint.as_ref().ok().and_then(http::Endpoint::verb_and_resource);
    lock(&shared.counters).record(counted);
    let delay = shared.faults.latency_for(request.method());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let lose_answer = match shared.faults.take_injection(request.method(), request.uri().path()) {
        Some(Injected::Drop) => return Err(ConnectionDropped),
        Some(Injected::Error { status, retry_after }) => {
            return Ok(ApiError::injected(status, retry_after).into_response())
        }
        Some(Injected::LoseAnswer) => true,
        None => false,
    };
    let (parts, body) = request.into_parts();
    let response = match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Err(_) => ApiError::request_too_large(MAX_BODY_BYTES).into_response(),
        Ok(body) => match endpoint {
            Ok(endpoint) => http::respond(&shared, endpoint, &parts.headers, &body),
            Err(error) => error.into_response(),
        },
    };
    if lose_answer {
        return Err(ConnectionDropped);
    }
    Ok(response)
}
