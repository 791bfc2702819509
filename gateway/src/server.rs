//! The HTTP front: routing, authentication, body limits, the chat and messages
//! handlers, and the response body type that meters streams as they pass.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::busy::BusyPoll;
use crate::config::{ConfigError, Settings};
use crate::error::GatewayError;
use crate::fastpath::{
    find_usage, parse_json, replace_model, ChatProbe, MessagesProbe, SseKind, SseMeter,
};
use crate::metrics::Metrics;
use crate::providers::{AnyProvider, ByteStream, ChatRequest, Provider, Upstream};
use crate::translate::{
    anthropic_to_openai_request, openai_to_anthropic_response, OpenAiToAnthropicStream, Translated,
};

/// A model route.
struct Route {
    name: String,
    upstream_model: Option<String>,
    provider: usize,
}

impl Route {
    fn upstream_name(&self) -> &str {
        self.upstream_model.as_deref().unwrap_or(&self.name)
    }
}

/// Everything a request needs, shared by all connections.
pub struct State {
    routes: Vec<Route>,
    by_name: HashMap<String, usize>,
    providers: Vec<AnyProvider>,
    metrics: Metrics,
    api_keys: Vec<Box<[u8]>>,
    max_body: usize,
    body_timeout: Duration,
    models_body: Bytes,
    busy: Option<Arc<BusyPoll>>,
}

impl State {
    /// Builds the routes, providers, upstream client and metrics registry.
    pub fn new(s: &Settings, busy: Option<Arc<BusyPoll>>) -> Result<Self, ConfigError> {
        let upstream = Arc::new(Upstream::new(s)?);
        let providers = s
            .providers
            .iter()
            .map(|p| AnyProvider::new(&p.kind, &upstream))
            .collect::<Result<Vec<_>, _>>()?;
        let routes: Vec<Route> = s
            .models
            .iter()
            .map(|m| Route {
                name: m.name.clone(),
                upstream_model: m.upstream_model.clone(),
                provider: m.provider,
            })
            .collect();
        let by_name = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let provider_names: Vec<String> = s.providers.iter().map(|p| p.name.clone()).collect();
        let metrics = Metrics::new(
            &provider_names,
            &routes
                .iter()
                .map(|r| (r.name.clone(), r.provider))
                .collect::<Vec<_>>(),
        );
        let data: Vec<serde_json::Value> = routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.name, "object": "model", "created": 0,
                    "owned_by": provider_names[r.provider],
                })
            })
            .collect();
        let models_body = serde_json::to_vec(&serde_json::json!({"object": "list", "data": data}))
            .map(Bytes::from)
            .unwrap_or_default();
        Ok(State {
            routes,
            by_name,
            providers,
            metrics,
            api_keys: s
                .api_keys
                .iter()
                .map(|k| k.as_bytes().to_vec().into_boxed_slice())
                .collect(),
            max_body: s.limits.max_body_bytes,
            body_timeout: Duration::from_millis(s.limits.client_body_timeout_ms),
            busy,
            models_body,
        })
    }

    fn authorize(&self, h: &HeaderMap, allow_x_api_key: bool) -> Result<(), GatewayError> {
        if self.api_keys.is_empty() {
            return Ok(());
        }
        let bearer = h.get(AUTHORIZATION).and_then(|v| {
            let v = v.as_bytes();
            (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &v[7..])
        });
        let key = bearer.or_else(|| {
            allow_x_api_key
                .then(|| h.get("x-api-key").map(HeaderValue::as_bytes))
                .flatten()
        });
        match key {
            Some(k) if self.api_keys.iter().any(|a| **a == *k) => Ok(()),
            _ => Err(GatewayError::Unauthorized),
        }
    }

    fn route(&self, model: &str) -> Result<usize, GatewayError> {
        self.by_name
            .get(model)
            .copied()
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_string()))
    }
}

/// Per-request metrics bookkeeping, recorded when dropped: with the handler for
/// whole answers, with the body for streams.
struct Guard {
    state: Arc<State>,
    slot: usize,
    provider: Option<usize>,
    start: Instant,
    status: u16,
    input: u64,
    output: u64,
    armed: bool,
}

impl Guard {
    fn new(state: &Arc<State>) -> Self {
        let slot = state.metrics.unrouted();
        state.metrics.start(slot);
        Guard {
            state: state.clone(),
            slot,
            provider: None,
            start: Instant::now(),
            // Stays 499 (client closed) if the handler is dropped before answering.
            status: 499,
            input: 0,
            output: 0,
            armed: true,
        }
    }

    fn route(&mut self, idx: usize) {
        self.state.metrics.reroute(self.slot, idx);
        self.slot = idx;
        let p = self.state.routes[idx].provider;
        self.provider = self.state.providers[p].is_remote().then_some(p);
    }

    fn upstream_ok(&self) {
        if let Some(p) = self.provider {
            self.state.metrics.upstream_ok(p);
        }
    }

    fn fail(&self, e: &GatewayError) {
        self.state.metrics.error(self.slot, e);
        if let Some(p) = self.provider.filter(|_| e.is_upstream_failure()) {
            self.state.metrics.upstream_failed(p);
        }
    }

    fn usage(&mut self, body: &[u8]) {
        if let Some(u) = find_usage(body) {
            self.input = u.input().unwrap_or(0);
            self.output = u.output().unwrap_or(0);
        }
    }

    /// Moves the bookkeeping into a new guard (for a stream body); this one goes inert.
    fn take(&mut self) -> Guard {
        self.armed = false;
        Guard {
            state: self.state.clone(),
            armed: true,
            ..*self
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let m = &self.state.metrics;
        m.status(self.slot, self.status);
        m.tokens(self.slot, self.input, self.output);
        m.finish(self.slot, self.start.elapsed());
    }
}

/// A response body: a whole buffer, or a metered stream.
pub enum Body {
    Full(Option<Bytes>),
    Stream(Box<Metered>),
}

/// A stream going to the client, watched for TTFT and tokens on the way.
pub struct Metered {
    inner: ByteStream,
    meter: SseMeter,
    guard: Guard,
    done: bool,
    /// Chunks taken from the upstream but not yet sent.
    held: BytesMut,
    /// Scheduler turns given to the upstream connection since the last new chunk.
    yielded: u8,
    /// An upstream failure seen after some held data, returned on the next poll.
    pending_err: Option<GatewayError>,
}

/// Scheduler turns a held chunk waits for more before it is sent.
const YIELDS: u8 = 3;

/// Held chunks are sent once they reach this size.
const COALESCE_MAX: usize = 16 * 1024;

impl Metered {
    fn failed(&mut self, e: GatewayError) -> Poll<Option<Result<Bytes, GatewayError>>> {
        self.done = true;
        self.guard.fail(&e);
        tracing::debug!(error = %e, "stream aborted");
        Poll::Ready(Some(Err(e)))
    }

    fn emit(&mut self) -> Poll<Option<Result<Bytes, GatewayError>>> {
        self.yielded = 0;
        let chunk = self.held.split().freeze();
        if self.meter.feed(&chunk) {
            let d = self.guard.start.elapsed();
            self.guard.state.metrics.ttft(self.guard.slot, d);
        }
        Poll::Ready(Some(Ok(chunk)))
    }

    /// The next chunk for the client. The upstream body arrives one chunk per
    /// scheduler turn (hyper hands it over through a one-slot channel from the
    /// upstream connection's task), so when a chunk is followed by nothing the stream
    /// yields up to [`YIELDS`] times to let that task decode what it already read:
    /// chunks that were already there go out in one write (measured: 19 writes per
    /// 16-token stream down to 1), and a chunk that is alone goes out a few
    /// scheduler turns (about a microsecond) later.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, GatewayError>>> {
        if let Some(e) = self.pending_err.take() {
            return self.failed(e);
        }
        loop {
            if self.done {
                return if self.held.is_empty() {
                    Poll::Ready(None)
                } else {
                    self.emit()
                };
            }
            if self.held.len() >= COALESCE_MAX {
                return self.emit();
            }
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(c))) => {
                    self.held.extend_from_slice(&c);
                    self.yielded = 0;
                }
                Poll::Ready(Some(Err(e))) => {
                    if self.held.is_empty() {
                        return self.failed(e);
                    }
                    self.pending_err = Some(e);
                    return self.emit();
                }
                Poll::Ready(None) => self.done = true,
                Poll::Pending => {
                    if self.held.is_empty() {
                        return Poll::Pending;
                    }
                    if self.yielded >= YIELDS {
                        return self.emit();
                    }
                    self.yielded += 1;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.guard.input = self.meter.input.unwrap_or(0);
        self.guard.output = self.meter.output_tokens();
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = GatewayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, GatewayError>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(m) => m.poll_chunk(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Stream(m) => m.done && m.held.is_empty() && m.pending_err.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

fn full(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(body: Bytes) -> Response<Body> {
    full(StatusCode::OK, "application/json", body)
}

fn sse(inner: ByteStream, kind: SseKind, mut guard: Guard) -> Response<Body> {
    guard.status = 200;
    let body = Body::Stream(Box::new(Metered {
        inner,
        meter: SseMeter::new(kind),
        guard,
        done: false,
        held: BytesMut::new(),
        yielded: 0,
        pending_err: None,
    }));
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Which API a request came in on (decides the error body's shape).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Messages,
}

fn error_response(e: &GatewayError, api: Api) -> Response<Body> {
    let body = match api {
        Api::Chat => e.openai_body(),
        Api::Messages => e.anthropic_body(),
    };
    full(e.status(), "application/json", body)
}

async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<(http::request::Parts, Bytes), GatewayError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let (parts, body) = req.into_parts();
    let collect = Limited::new(body, limit).collect();
    // Biased: a body that is already here never arms the timer.
    let collected = tokio::select! {
        biased;
        r = collect => r,
        () = tokio::time::sleep(timeout) => {
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            return Err(GatewayError::ClientTimeout(ms));
        }
    };
    let bytes = collected
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                GatewayError::PayloadTooLarge { limit }
            } else {
                GatewayError::ClientBody(e.to_string())
            }
        })?
        .to_bytes();
    Ok((parts, bytes))
}

async fn chat(
    state: &Arc<State>,
    req: Request<Incoming>,
    g: &mut Guard,
) -> Result<Response<Body>, GatewayError> {
    state.authorize(req.headers(), false)?;
    let (parts, body) = read_body(req, state.max_body, state.body_timeout).await?;
    let probe: ChatProbe = parse_json(&body)?;
    let idx = state.route(&probe.model)?;
    g.route(idx);
    let route = &state.routes[idx];
    let stream = probe.stream.unwrap_or(false);
    let include_usage = probe
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let up_body = match &route.upstream_model {
        Some(u) => replace_model(&body, &probe.model, u)?,
        None => body.clone(),
    };
    let provider = &state.providers[route.provider];
    let creq = ChatRequest {
        body: up_body,
        model: route.upstream_name(),
        include_usage,
        headers: &parts.headers,
    };
    if stream {
        let s = provider.chat_stream(creq).await?;
        g.upstream_ok();
        Ok(sse(s, SseKind::OpenAi, g.take()))
    } else {
        let b = provider.chat(creq).await?;
        g.upstream_ok();
        g.usage(&b);
        Ok(json(b))
    }
}

async fn messages(
    state: &Arc<State>,
    req: Request<Incoming>,
    g: &mut Guard,
) -> Result<Response<Body>, GatewayError> {
    state.authorize(req.headers(), true)?;
    let (parts, body) = read_body(req, state.max_body, state.body_timeout).await?;
    let probe: MessagesProbe = parse_json(&body)?;
    let idx = state.route(&probe.model)?;
    g.route(idx);
    let route = &state.routes[idx];
    let stream = probe.stream.unwrap_or(false);
    match &state.providers[route.provider] {
        AnyProvider::Anthropic(p) => {
            let up_body = match &route.upstream_model {
                Some(u) => replace_model(&body, &probe.model, u)?,
                None => body.clone(),
            };
            if stream {
                let s = p.messages_stream(up_body, &parts.headers).await?;
                g.upstream_ok();
                Ok(sse(s, SseKind::Anthropic, g.take()))
            } else {
                let b = p.messages(up_body, &parts.headers).await?;
                g.upstream_ok();
                g.usage(&b);
                Ok(json(b))
            }
        }
        provider => {
            let (oai, stream) = anthropic_to_openai_request(&body, route.upstream_name())?;
            let creq = ChatRequest {
                body: Bytes::from(oai),
                model: route.upstream_name(),
                include_usage: true,
                headers: &parts.headers,
            };
            if stream {
                let s = provider.chat_stream(creq).await?;
                g.upstream_ok();
                let t = Translated::new(s, OpenAiToAnthropicStream::new(route.upstream_name()));
                Ok(sse(Box::pin(t), SseKind::Anthropic, g.take()))
            } else {
                let b = provider.chat(creq).await?;
                g.upstream_ok();
                let a = openai_to_anthropic_response(&b)?;
                g.usage(&a);
                Ok(json(a))
            }
        }
    }
}

async fn api(state: Arc<State>, req: Request<Incoming>, which: Api) -> Response<Body> {
    let mut g = Guard::new(&state);
    let result = match which {
        Api::Chat => chat(&state, req, &mut g).await,
        Api::Messages => messages(&state, req, &mut g).await,
    };
    let resp = result.unwrap_or_else(|e| {
        g.fail(&e);
        error_response(&e, which)
    });
    g.status = resp.status().as_u16();
    resp
}

fn plain_error(state: &State, e: GatewayError) -> Response<Body> {
    let m = &state.metrics;
    m.error(m.unrouted(), &e);
    m.status(m.unrouted(), e.status().as_u16());
    error_response(&e, Api::Chat)
}

/// Routes one request.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(b) = &state.busy {
        b.activity();
    }
    let path = req.uri().path();
    let post = req.method() == Method::POST;
    let get = req.method() == Method::GET;
    Ok(match path {
        "/v1/chat/completions" | "/chat/completions" if post => api(state, req, Api::Chat).await,
        "/v1/messages" if post => api(state, req, Api::Messages).await,
        "/health" if get => json(Bytes::from_static(b"{\"status\":\"ok\"}")),
        "/metrics" if get => full(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(state.metrics.render()),
        ),
        "/v1/models" if get => match state.authorize(req.headers(), true) {
            Ok(()) => json(state.models_body.clone()),
            Err(e) => plain_error(&state, e),
        },
        "/v1/chat/completions"
        | "/chat/completions"
        | "/v1/messages"
        | "/health"
        | "/metrics"
        | "/v1/models" => plain_error(&state, GatewayError::MethodNotAllowed(path.to_string())),
        _ => plain_error(&state, GatewayError::RouteNotFound(path.to_string())),
    })
}

/// How long in-flight requests may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Accepts connections, one task per connection, until `shutdown` completes; then
/// stops accepting, lets in-flight requests (streams included) finish for up to
/// [`SHUTDOWN_GRACE`], and returns.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // Small SSE frames: one flattened write beats a long iovec list.
    http.timer(TokioTimer::new()).writev(false);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let conn = http.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| handle(state.clone(), req)),
        );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace period");
    }
}
