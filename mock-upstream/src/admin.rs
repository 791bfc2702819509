//! The `/__mock/` admin endpoints: run-time fault settings and request stats.
//!
//! Gateways forward only `/v1/...` routes, so gateway traffic never reaches these paths.
//! Admin requests are not counted as traffic and are never faulted, not even during an
//! outage, so that a lab suite can always end what it started.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::body::MockBody;
use crate::faults::{FaultSettings, FaultUpdateError, Outage};
use crate::render::{self, Flavor};
use crate::server::{json, read_body, ReadError, State};

/// Path prefix of every admin endpoint.
pub(crate) const PREFIX: &str = "/__mock/";
/// Largest accepted `PUT /__mock/faults` body.
const MAX_BODY: usize = 64 * 1024;
/// How long a change waits for the main port to close or listen again before answering.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// Serves one admin request (any path; non-admin paths get 404).
pub(crate) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<MockBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match (path.as_str(), &method) {
        ("/__mock/faults", &Method::GET) => settings(&state.faults.load()),
        ("/__mock/faults", &Method::PUT) => put_faults(&state, req.into_body()).await,
        ("/__mock/faults", &Method::DELETE) | ("/__mock/faults/reset", &Method::POST) => {
            let startup = state.faults.startup();
            let reset = state.faults.update(|_| Ok::<_, Infallible>(startup));
            match reset {
                Ok(next) => applied(&state, next).await,
                Err(never) => match never {},
            }
        }
        ("/__mock/stats", &Method::GET) => {
            let stats = state
                .metrics
                .stats(state.faults.outage(), *state.listening.borrow());
            json(StatusCode::OK, Bytes::from(stats.to_string()))
        }
        ("/__mock/faults" | "/__mock/faults/reset" | "/__mock/stats", _) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Method {method} is not allowed on {path}."),
            None,
            "method_not_allowed",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("Unknown admin URL: {method} {path} (admin endpoints: /__mock/faults, /__mock/faults/reset, /__mock/stats)."),
            None,
            "unknown_url",
        ),
    }
}

/// `PUT /__mock/faults`: a partial update, applied whole or not at all.
async fn put_faults(state: &State, body: Incoming) -> Response<MockBody> {
    let body = match read_body(body, MAX_BODY).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => {
            let message = format!("The body is larger than {MAX_BODY} bytes.");
            return error(StatusCode::PAYLOAD_TOO_LARGE, &message, None, "too_large");
        }
        Err(ReadError::Body(err)) => {
            let message = format!("Reading the body failed: {err}");
            return error(StatusCode::BAD_REQUEST, &message, None, "unreadable_body");
        }
    };
    let admin_listener = state.admin_listener;
    let result = state.faults.update(|current| {
        let next = current.with_update(&body)?;
        if next.outage == Outage::Refuse && !admin_listener {
            return Err(FaultUpdateError::RefuseNeedsAdminListener);
        }
        Ok(next)
    });
    match result {
        Ok(next) => applied(state, next).await,
        Err(err) => error(
            StatusCode::BAD_REQUEST,
            &err.to_string(),
            err.key(),
            err.code(),
        ),
    }
}

/// Answers a change once the main port matches it (closed during `outage: refuse`,
/// listening otherwise), so that a suite's next step sees the new state.
async fn applied(state: &State, next: FaultSettings) -> Response<MockBody> {
    let want = next.outage != Outage::Refuse;
    let mut listening = state.listening.subscribe();
    let reached = tokio::time::timeout(LISTEN_WAIT, listening.wait_for(|l| *l == want))
        .await
        .is_ok_and(|r| r.is_ok());
    if reached {
        return settings(&next);
    }
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "The settings are applied, but the main port does not listen again yet (see the mock's stderr); poll GET /__mock/stats until \"listening\" is true.",
        Some("outage"),
        "listener_pending",
    )
}

/// The settings as the JSON body of `GET /__mock/faults`.
fn settings(settings: &FaultSettings) -> Response<MockBody> {
    // Serializing numbers and fixed strings cannot fail.
    let body = serde_json::to_vec(settings).unwrap_or_default();
    json(StatusCode::OK, Bytes::from(body))
}

fn error(status: StatusCode, message: &str, param: Option<&str>, code: &str) -> Response<MockBody> {
    let body = render::error_body(
        Flavor::OpenAi,
        status.as_u16(),
        "invalid_request_error",
        message,
        param,
        Some(code),
    );
    json(status, body)
}

/// Serves only the admin endpoints on `listener` (`--admin-listen`), forever.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>, builder: http1::Builder) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                eprintln!("mock-upstream: admin accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
