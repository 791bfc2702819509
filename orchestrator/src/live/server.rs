//! A small HTTP/1.1 server for the live page and the cAdvisor stand-in: GET only, one
//! handler deciding the answer from the path. It runs on the run's tokio runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::LiveError;

/// One answer: status, content type and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    pub fn ok(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.into(),
        }
    }
    pub fn not_found() -> Self {
        Self {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from_static(b"not found\n"),
        }
    }
}

/// Decides the answer to a GET of `path` (query string removed).
pub type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// A listening server; dropping it stops accepting (open connections end with their task).
pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (port 0 picks one) and serves `handler` until the [`Server`] is dropped.
pub async fn serve(addr: SocketAddr, handler: Handler) -> Result<Server, LiveError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| LiveError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| LiveError::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(answer(&handler, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(Server { addr, task })
}

fn answer<B>(handler: &Handler, req: &Request<B>) -> Response<Full<Bytes>> {
    let reply = if req.method() == hyper::Method::GET || req.method() == hyper::Method::HEAD {
        handler(req.uri().path())
    } else {
        Reply {
            status: 405,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from_static(b"GET only\n"),
        }
    };
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::OK);
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    // The page polls: never answer from a cache.
    headers.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    resp
}
