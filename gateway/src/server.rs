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
use futures_util::{Stream as _, StreamExt as _};
use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE,
    RETRY_AFTER,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::busy::BusyPoll;
use crate::config::{ConfigError, RetrySettings, Settings};
use crate::error::GatewayError;
use crate::fastpath::{
    check_body, find_usage, parse_json, replace_model, restore_model, restore_model_in_chunk,
    ChatProbe, MessagesProbe, SseKind, SseMeter,
};
use crate::governance::cache::{AnswerKey, Cache};
use crate::governance::coalesce::{self, Coalescer, Joined};
use crate::governance::keys::KeyTable;
use crate::governance::{quota_headers, Charge, Limits, ModelLimits, Quotas};
use crate::metrics::Metrics;
use crate::providers::{AnyProvider, ByteStream, ChatRequest, Provider, Upstream};
use crate::routing::{self, breaker::Outcome, Deployment, ModelRoute};
use crate::translate::{
    anthropic_to_openai_request, openai_to_anthropic_response, OpenAiToAnthropicStream, Translated,
};

/// Everything a request needs, shared by all connections.
pub struct State {
    routes: Vec<ModelRoute>,
    by_name: HashMap<String, usize>,
    providers: Vec<AnyProvider>,
    metrics: Metrics,
    retry: RetrySettings,
    keys: KeyTable,
    limits: Limits,
    /// Per route: the answer cache and the coalescer, for models that opted in.
    caches: Box<[Option<Cache>]>,
    coalescers: Box<[Option<Coalescer<SharedAnswer>>]>,
    /// Whether any model caches or coalesces; when not, requests skip both.
    sharing: bool,
    max_body: usize,
    max_depth: usize,
    body_timeout: Duration,
    models_body: Bytes,
    /// Per key: its own `/v1/models` list when it may use only some models.
    key_models_body: Box<[Option<Bytes>]>,
    busy: Option<Arc<BusyPoll>>,
}

/// What coalesced requests receive from the one that called.
type SharedAnswer = Result<Bytes, GatewayError>;

/// Metrics slots by (model index, provider index).
type SlotIndex = HashMap<(usize, usize), usize>;

/// The metrics slots (model, provider) of every model's deployments, and a lookup.
fn metric_slots(s: &Settings) -> (Vec<(String, usize)>, SlotIndex) {
    let mut slots = Vec::new();
    let mut index = HashMap::new();
    for (mi, m) in s.models.iter().enumerate() {
        for d in &m.deployments {
            index.entry((mi, d.provider)).or_insert_with(|| {
                slots.push((m.name.clone(), d.provider));
                slots.len() - 1
            });
        }
    }
    (slots, index)
}

/// The `/v1/models` list of the models `allowed` (route indexes; `None` = all).
fn models_body(s: &Settings, allowed: Option<&[usize]>) -> Bytes {
    let data: Vec<serde_json::Value> = s
        .models
        .iter()
        .enumerate()
        .filter(|(i, _)| allowed.is_none_or(|a| a.contains(i)))
        .map(|(_, m)| {
            serde_json::json!({
                "id": m.name, "object": "model", "created": 0,
                "owned_by": s.providers[m.deployments[0].provider].name,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"object": "list", "data": data}))
        .map(Bytes::from)
        .unwrap_or_default()
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
        let (slots, slot_index) = metric_slots(s);
        let routes: Vec<ModelRoute> = s
            .models
            .iter()
            .enumerate()
            .map(|(mi, m)| {
                ModelRoute::new(m, &s.providers, &s.retry, |p| {
                    slot_index.get(&(mi, p)).copied().unwrap_or(usize::MAX)
                })
            })
            .collect();
        let by_name = routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let provider_names: Vec<String> = s.providers.iter().map(|p| p.name.clone()).collect();
        let key_names: Vec<String> = s.keys.iter().map(|k| k.name.clone()).collect();
        let metrics = Metrics::with_routes(&provider_names, &slots, &routes).with_keys(&key_names);
        let keys = KeyTable::new(&s.keys, s.models.len());
        let limits = Limits::new(
            &keys,
            s.models
                .iter()
                .map(|m| ModelLimits::new(m.rpm, m.tpm))
                .collect(),
        );
        let caches: Box<[Option<Cache>]> = s
            .models
            .iter()
            .map(|m| m.cache.as_ref().map(Cache::new))
            .collect();
        let coalescers: Box<[Option<Coalescer<SharedAnswer>>]> = s
            .models
            .iter()
            .map(|m| m.coalesce.then(Coalescer::default))
            .collect();
        Ok(State {
            routes,
            by_name,
            providers,
            metrics,
            retry: s.retry.clone(),
            sharing: caches.iter().any(Option::is_some) || coalescers.iter().any(Option::is_some),
            keys,
            limits,
            caches,
            coalescers,
            max_body: s.limits.max_body_bytes,
            max_depth: s.limits.max_json_depth,
            body_timeout: Duration::from_millis(s.limits.client_body_timeout_ms),
            busy,
            models_body: models_body(s, None),
            key_models_body: s
                .keys
                .iter()
                .map(|k| k.models.as_deref().map(|a| models_body(s, Some(a))))
                .collect(),
        })
    }

    /// The key a request presents (index), `None` when authentication is off.
    fn authorize(
        &self,
        h: &HeaderMap,
        allow_x_api_key: bool,
    ) -> Result<Option<usize>, GatewayError> {
        if self.keys.is_empty() {
            return Ok(None);
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
        match key.and_then(|k| self.keys.find(k)) {
            Some(i) => Ok(Some(i)),
            None => Err(GatewayError::Unauthorized),
        }
    }

    /// The route of `model`; a model the key may not use is as unknown as a missing one.
    fn route(&self, model: &str, key: Option<usize>) -> Result<usize, GatewayError> {
        self.by_name
            .get(model)
            .copied()
            .filter(|&m| key.is_none_or(|k| self.keys.get(k).allows(m)))
            .ok_or_else(|| GatewayError::ModelNotFound(model.to_string()))
    }
}

/// Per-request metrics bookkeeping, recorded when dropped: with the handler for
/// whole answers, with the body for streams.
struct Guard {
    state: Arc<State>,
    slot: usize,
    start: Instant,
    status: u16,
    input: u64,
    output: u64,
    /// The (model, deployment) a stream holds in flight until it ends.
    in_flight: Option<(usize, usize)>,
    /// The deployment that answered last, and the attempts made.
    deployment: Option<HeaderValue>,
    attempts: u32,
    /// Time spent waiting (client body, upstream, backoff, a coalesced leader): what
    /// the overhead figure leaves out.
    waited: Duration,
    /// Tokens to settle with the limits once the usage is known.
    charge: Option<Charge>,
    /// `x-gateway-cache` of the answer: hit, miss, or none.
    cache: Option<&'static str>,
    /// The request's duration when already read (a whole answer's, at its head):
    /// the metrics take it instead of reading the clock again.
    elapsed: Option<Duration>,
    armed: bool,
}

impl Guard {
    fn new(state: &Arc<State>) -> Self {
        let slot = state.metrics.unrouted();
        state.metrics.start(slot);
        Guard {
            state: state.clone(),
            slot,
            start: Instant::now(),
            // Stays 499 (client closed) if the handler is dropped before answering.
            status: 499,
            input: 0,
            output: 0,
            in_flight: None,
            deployment: None,
            attempts: 0,
            waited: Duration::ZERO,
            charge: None,
            cache: None,
            elapsed: None,
            armed: true,
        }
    }

    /// Moves the request to a metrics slot (once its model or deployment is known).
    fn route(&mut self, slot: usize) {
        if slot != self.slot {
            self.state.metrics.reroute(self.slot, slot);
            self.slot = slot;
        }
    }

    fn fail(&self, e: &GatewayError) {
        self.state.metrics.error(self.slot, e);
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
            in_flight: self.in_flight.take(),
            deployment: None,
            ..*self
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some((m, d)) = self.in_flight {
            self.state.routes[m].deployments[d].end();
        }
        if let Some(c) = self.charge {
            let used = self.input + self.output;
            let st = &self.state;
            // A whole answer's head was timed already: that instant, not another clock read.
            let now = self
                .elapsed
                .map_or_else(routing::now_ns, |e| routing::ns_at(self.start + e));
            st.limits.settle(&st.keys, c, used, now);
        }
        let m = &self.state.metrics;
        m.status(self.slot, self.status);
        m.tokens(self.slot, self.input, self.output);
        m.finish(
            self.slot,
            self.elapsed.unwrap_or_else(|| self.start.elapsed()),
        );
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
    /// A chunk taken from the upstream but not yet sent, while it is the only one:
    /// sent as it is (no copy, no allocation), the common case under load.
    first: Option<Bytes>,
    /// Chunks taken from the upstream but not yet sent, when more than one came.
    held: BytesMut,
    /// An upstream failure seen after some held data, returned on the next poll.
    pending_err: Option<GatewayError>,
}

/// Held chunks are sent once they reach this size.
const COALESCE_MAX: usize = 16 * 1024;

impl Metered {
    fn failed(&mut self, e: GatewayError) -> Poll<Option<Result<Bytes, GatewayError>>> {
        self.done = true;
        self.guard.fail(&e);
        tracing::debug!(error = %e, "stream aborted");
        Poll::Ready(Some(Err(e)))
    }

    /// Bytes taken from the upstream and not yet sent.
    fn held_len(&self) -> usize {
        self.held.len() + self.first.as_ref().map_or(0, Bytes::len)
    }

    fn hold(&mut self, c: Bytes) {
        if self.held.is_empty() && self.first.is_none() {
            self.first = Some(c);
            return;
        }
        if let Some(f) = self.first.take() {
            self.held.extend_from_slice(&f);
        }
        self.held.extend_from_slice(&c);
    }

    fn emit(&mut self) -> Poll<Option<Result<Bytes, GatewayError>>> {
        let chunk = match self.first.take() {
            Some(f) => f,
            None => self.held.split().freeze(),
        };
        if self.meter.feed(&chunk) {
            let d = self.guard.start.elapsed();
            self.guard.state.metrics.ttft(self.guard.slot, d);
        }
        Poll::Ready(Some(Ok(chunk)))
    }

    /// The next chunk for the client: every chunk the upstream stream has ready
    /// (the plain-HTTP client decodes all it read in one go), in one write.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, GatewayError>>> {
        if let Some(e) = self.pending_err.take() {
            return self.failed(e);
        }
        loop {
            if self.done {
                return if self.held_len() == 0 {
                    Poll::Ready(None)
                } else {
                    self.emit()
                };
            }
            if self.held_len() >= COALESCE_MAX {
                return self.emit();
            }
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(c))) => {
                    self.hold(c);
                    if self.inner.would_wait() {
                        return self.emit(); // hyper polls again: that poll waits
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    if self.held_len() == 0 {
                        return self.failed(e);
                    }
                    self.pending_err = Some(e);
                    return self.emit();
                }
                Poll::Ready(None) => self.done = true,
                Poll::Pending if self.held_len() == 0 => return Poll::Pending,
                Poll::Pending => return self.emit(),
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
            Body::Stream(m) => m.done && m.held_len() == 0 && m.pending_err.is_none(),
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
    full_in(HeaderMap::new(), status, content_type, body)
}

/// A whole answer whose headers start as `headers` (the limits', say).
fn full_in(
    headers: HeaderMap,
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(body)));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json(body: Bytes) -> Response<Body> {
    full(StatusCode::OK, "application/json", body)
}

/// A stream's response; its headers start as `headers` (the limits', say).
fn sse(inner: ByteStream, kind: SseKind, mut guard: Guard, headers: HeaderMap) -> Response<Body> {
    guard.status = 200;
    let body = Body::Stream(Box::new(Metered {
        inner,
        meter: SseMeter::new(kind),
        guard,
        done: false,
        first: None,
        held: BytesMut::new(),
        pending_err: None,
    }));
    let mut r = Response::new(body);
    *r.headers_mut() = headers;
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
    let mut r = full(e.status(), "application/json", body);
    if let Some(ms) = e.retry_after_ms() {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000).max(1)));
    }
    if let GatewayError::RateLimited {
        kind,
        limit,
        remaining,
        reset_ms,
        ..
    } = e
    {
        let q = crate::governance::limiter::Quota {
            limit: *limit,
            remaining: *remaining,
            reset_ms: *reset_ms,
        };
        quota_headers(r.headers_mut(), *kind, q);
    }
    r
}

/// Reads the body; the time spent waiting for bytes still to come is added to `waited`.
async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
    waited: &mut Duration,
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
    let mut collect = std::pin::pin!(collect_body(body, limit));
    // A body that is already here (the usual case) costs no timer and no clock read.
    let bytes = match futures_util::poll!(collect.as_mut()) {
        Poll::Ready(r) => r?,
        Poll::Pending => {
            let t0 = Instant::now();
            let r = tokio::time::timeout(timeout, collect).await;
            *waited += t0.elapsed();
            r.map_err(|_| {
                GatewayError::ClientTimeout(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX))
            })??
        }
    };
    Ok((parts, bytes))
}

/// The request body, at most `limit` bytes. A body that comes in one frame (the usual
/// case) is returned as it is: no list of frames, no copy.
async fn collect_body(mut body: Incoming, limit: usize) -> Result<Bytes, GatewayError> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| GatewayError::ClientBody(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let have = first.as_ref().map_or(0, Bytes::len) + more.as_ref().map_or(0, BytesMut::len);
        if have + data.len() > limit {
            return Err(GatewayError::PayloadTooLarge { limit });
        }
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut m = BytesMut::with_capacity(f.len() + data.len());
                m.extend_from_slice(f);
                m.extend_from_slice(&data);
                more = Some(m);
            }
            (Some(_), Some(m)) => m.extend_from_slice(&data),
        }
    }
    Ok(match (first, more) {
        (_, Some(m)) => m.freeze(),
        (f, None) => f.unwrap_or_default(),
    })
}

/// What the client asked, parsed once; every attempt builds its upstream call from it.
struct Job<'a> {
    api: Api,
    body: &'a Bytes,
    /// The model the client named (borrowed from `body`).
    model: &'a str,
    stream: bool,
    include_usage: bool,
    headers: &'a HeaderMap,
    /// The key used (index), for limits and for sharing answers only within a key.
    key: Option<usize>,
    /// Tokens reserved against token limits before the call (`max_tokens`).
    reserve: u64,
}

/// A successful attempt's answer.
enum Answer {
    Full(Bytes),
    Stream(ByteStream, SseKind),
}

/// Keeps a deployment's in-flight count right even when the request is dropped
/// (client gone) in the middle of an attempt.
struct InFlight<'a>(&'a Deployment);

impl<'a> InFlight<'a> {
    fn new(d: &'a Deployment) -> Self {
        d.begin();
        InFlight(d)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The upstream's stream with the client's model name put back in every chunk.
fn restore_stream(s: ByteStream, upstream: &str, client: &str) -> ByteStream {
    let field = |m: &str| Bytes::from(format!("\"model\":{}", serde_json::Value::from(m)));
    let (from, to) = (field(upstream), field(client));
    ByteStream::boxed(s.map(move |r| r.map(|c| restore_model_in_chunk(c, &from, &to))))
}

/// One attempt on one deployment.
async fn attempt(
    state: &State,
    job: &Job<'_>,
    route: &ModelRoute,
    dep: &Deployment,
) -> Result<Answer, GatewayError> {
    let upstream = dep.upstream_model.as_deref().unwrap_or(&route.name);
    let renamed = upstream != job.model;
    let provider = &state.providers[dep.provider];
    let answer = match (job.api, provider) {
        (Api::Messages, AnyProvider::Anthropic(p)) => {
            let body = if renamed {
                replace_model(job.body, job.model, upstream)?
            } else {
                job.body.clone()
            };
            if job.stream {
                Answer::Stream(
                    p.messages_stream(body, job.headers).await?,
                    SseKind::Anthropic,
                )
            } else {
                Answer::Full(p.messages(body, job.headers).await?)
            }
        }
        (Api::Messages, provider) => {
            let (oai, _) = anthropic_to_openai_request(job.body, upstream)?;
            let creq = ChatRequest {
                body: Bytes::from(oai),
                model: upstream,
                include_usage: true,
                headers: job.headers,
            };
            if job.stream {
                let s = provider.chat_stream(creq).await?;
                let t = Translated::new(s, OpenAiToAnthropicStream::new(job.model));
                return Ok(Answer::Stream(ByteStream::boxed(t), SseKind::Anthropic));
            }
            let b = provider.chat(creq).await?;
            Answer::Full(openai_to_anthropic_response(&b)?)
        }
        (Api::Chat, provider) => {
            let body = if renamed {
                replace_model(job.body, job.model, upstream)?
            } else {
                job.body.clone()
            };
            let creq = ChatRequest {
                body,
                model: upstream,
                include_usage: job.include_usage,
                headers: job.headers,
            };
            if job.stream {
                Answer::Stream(provider.chat_stream(creq).await?, SseKind::OpenAi)
            } else {
                Answer::Full(provider.chat(creq).await?)
            }
        }
    };
    Ok(match answer {
        a if !renamed => a,
        Answer::Full(b) => Answer::Full(restore_model(b, upstream, job.model)),
        Answer::Stream(s, k) => Answer::Stream(restore_stream(s, upstream, job.model), k),
    })
}

/// How trying one model ended.
enum Tried {
    Answer(Answer),
    /// Not worth another attempt anywhere (a client error, or the retry budget is spent).
    Fatal(GatewayError),
    /// This model's deployments are used up; a fallback may still answer.
    Exhausted(GatewayError),
}

/// Counts one attempt's outcome for the breaker, the latency EWMA and the metrics.
fn record(
    state: &State,
    route: &ModelRoute,
    dep: &Deployment,
    r: Result<(), &GatewayError>,
    took: Duration,
    now_ns: u64,
) {
    if r.is_err_and(|e| !e.is_from_upstream()) {
        return; // refused before anything was sent (e.g. a translation error)
    }
    let now = now_ns / 1_000_000;
    state.metrics.upstream(dep.provider, r);
    let failed = r.err().filter(|e| e.is_upstream_failure());
    match failed {
        None => {
            dep.breaker.record(now, Outcome::Success, &dep.label);
            if state.providers[dep.provider].is_remote() {
                state.metrics.upstream_ok(dep.provider);
            }
        }
        Some(e) => {
            let retry_after_ms = e.retry_after_ms();
            dep.breaker
                .record(now, Outcome::Failure { retry_after_ms }, &dep.label);
            state.metrics.upstream_failed(dep.provider);
        }
    }
    // A failure weighs like a slow answer (at least twice the EWMA, at least 1 ms), so
    // the latency strategy does not favour a deployment that fails fast.
    let sample = match failed {
        None => took,
        Some(_) => took
            .max(Duration::from_nanos(dep.ewma_ns() as u64 * 2))
            .max(Duration::from_millis(1)),
    };
    dep.observe(sample, route.decay_ns(), now_ns);
}

/// The wait before retrying the deployment that just failed; `None` when its
/// `retry-after` is longer than the gateway is willing to wait.
fn same_deployment_wait(state: &State, last: &GatewayError, n: u32) -> Option<Duration> {
    match last.retry_after_ms() {
        Some(ms) if ms > state.retry.retry_after_max_ms => None,
        Some(ms) => Some(Duration::from_millis(ms)),
        None => Some(routing::backoff(&state.retry, n)),
    }
}

/// Tries model `m` (the client's model or a fallback) with its retries. `first`
/// is the client's model, whose retry budget every attempt after the first uses.
async fn try_model(state: &State, job: &Job<'_>, first: usize, m: usize, g: &mut Guard) -> Tried {
    let route = &state.routes[m];
    let (mut tried, mut last, mut prev) = (0u64, None::<GatewayError>, None::<usize>);
    for n in 0..=route.retries {
        if g.attempts > 0 && !state.routes[first].take_retry() {
            // Over the retry budget: fail fast with what the last attempt got.
            return match last {
                Some(e) => Tried::Fatal(e),
                None => Tried::Exhausted(no_deployment(route)),
            };
        }
        let Some(pick) = route.pick(tried, routing::now_ns()) else {
            return Tried::Exhausted(last.unwrap_or_else(|| no_deployment(route)));
        };
        if let Some(e) = &last {
            if let Some(reason) = e.retry_reason() {
                state.metrics.retry(m, reason);
            }
            if prev == Some(pick.index) {
                match same_deployment_wait(state, e, n) {
                    Some(d) => {
                        tokio::time::sleep(d).await;
                        g.waited += d;
                    }
                    None => {
                        return Tried::Fatal(last.take().unwrap_or_else(|| no_deployment(route)))
                    }
                }
            }
        }
        let dep = &route.deployments[pick.index];
        g.route(dep.slot);
        g.attempts += 1;
        g.deployment = Some(dep.header.clone());
        let flight = InFlight::new(dep);
        let t0 = Instant::now();
        let r = attempt(state, job, route, dep).await;
        let end = Instant::now();
        let took = end - t0;
        g.waited += took;
        record(
            state,
            route,
            dep,
            r.as_ref().map(|_| ()),
            took,
            routing::ns_at(end),
        );
        match r {
            Ok(a) => {
                if matches!(a, Answer::Stream(..)) {
                    std::mem::forget(flight);
                    g.in_flight = Some((m, pick.index));
                }
                return Tried::Answer(a);
            }
            Err(e) if e.retry_reason().is_none() => return Tried::Fatal(e),
            Err(e) => last = Some(e),
        }
        tried |= 1 << pick.index;
        prev = Some(pick.index);
    }
    Tried::Exhausted(last.unwrap_or_else(|| no_deployment(route)))
}

fn no_deployment(route: &ModelRoute) -> GatewayError {
    let (wait, rate_limited) = route.all_open();
    GatewayError::NoDeployment {
        model: route.name.clone(),
        retry_after_ms: wait.max(1),
        rate_limited,
    }
}

/// Tries the client's model, then its fallbacks in order.
async fn dispatch(
    state: &Arc<State>,
    job: &Job<'_>,
    first: usize,
    g: &mut Guard,
) -> Result<Answer, GatewayError> {
    let route = &state.routes[first];
    route.count_request(routing::ns_at(g.start) / 1_000_000);
    g.route(route.deployments[0].slot);
    let mut last: Option<GatewayError> = None;
    let chain = std::iter::once(first).chain(route.fallbacks.iter().copied());
    for (k, m) in chain.enumerate() {
        if k > 0 {
            state.metrics.fallback(first, k - 1);
        }
        match try_model(state, job, first, m, g).await {
            Tried::Answer(a) => return Ok(a),
            Tried::Fatal(e) => return Err(e),
            Tried::Exhausted(e) => last = Some(merge_exhausted(last, e)),
        }
    }
    Err(last.unwrap_or_else(|| no_deployment(route)))
}

/// Which of two "nothing answered" errors the client sees: an upstream's own error
/// wins over "all breakers open"; two of the latter combine their waits.
fn merge_exhausted(prev: Option<GatewayError>, next: GatewayError) -> GatewayError {
    match (prev, next) {
        (
            Some(GatewayError::NoDeployment {
                model,
                retry_after_ms: a,
                rate_limited: la,
            }),
            GatewayError::NoDeployment {
                retry_after_ms: b,
                rate_limited: lb,
                ..
            },
        ) => GatewayError::NoDeployment {
            model,
            retry_after_ms: a.min(b),
            rate_limited: la && lb,
        },
        (Some(p), GatewayError::NoDeployment { .. }) => p,
        (_, n) => n,
    }
}

/// Reads and checks the body, and finds the model.
async fn read_checked(
    state: &State,
    req: Request<Incoming>,
    g: &mut Guard,
) -> Result<(http::request::Parts, Bytes), GatewayError> {
    let (parts, body) = read_body(req, state.max_body, state.body_timeout, &mut g.waited).await?;
    check_body(&body, state.max_depth)?;
    Ok((parts, body))
}

async fn chat(
    state: &Arc<State>,
    req: Request<Incoming>,
    g: &mut Guard,
) -> Result<Response<Body>, GatewayError> {
    let key = state.authorize(req.headers(), false)?;
    let (parts, body) = read_checked(state, req, g).await?;
    let probe: ChatProbe = parse_json(&body)?;
    probe.check()?;
    let first = state.route(&probe.model, key)?;
    let job = Job {
        api: Api::Chat,
        body: &body,
        model: &probe.model,
        stream: probe.stream.unwrap_or(false),
        include_usage: probe
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        headers: &parts.headers,
        key,
        reserve: probe
            .max_completion_tokens
            .or(probe.max_tokens)
            .map_or(0, |n| n.unsigned_abs()),
    };
    serve_job(state, &job, first, g).await
}

async fn messages(
    state: &Arc<State>,
    req: Request<Incoming>,
    g: &mut Guard,
) -> Result<Response<Body>, GatewayError> {
    let key = state.authorize(req.headers(), true)?;
    let (parts, body) = read_checked(state, req, g).await?;
    let probe: MessagesProbe = parse_json(&body)?;
    probe.check()?;
    let first = state.route(&probe.model, key)?;
    let job = Job {
        api: Api::Messages,
        body: &body,
        model: &probe.model,
        stream: probe.stream.unwrap_or(false),
        include_usage: true,
        headers: &parts.headers,
        key,
        reserve: probe.max_tokens,
    };
    serve_job(state, &job, first, g).await
}

/// Limits, then the answer (shared or not), then the limits' headers.
async fn serve_job(
    state: &Arc<State>,
    job: &Job<'_>,
    first: usize,
    g: &mut Guard,
) -> Result<Response<Body>, GatewayError> {
    // Branches, not lookups: with no limits and no sharing configured, nothing here
    // costs more than a test of two flags.
    let quotas = if state.limits.any {
        admit(state, job, first, g)?
    } else {
        Quotas::default()
    };
    let answer = if state.sharing && !job.stream {
        shared(state, job, first, g).await?
    } else {
        dispatch(state, job, first, g).await?
    };
    Ok(respond(answer, g, quotas.header_map()))
}

/// Checks the key's and the model's limits, reserving the request's `max_tokens`.
fn admit(state: &State, job: &Job<'_>, m: usize, g: &mut Guard) -> Result<Quotas, GatewayError> {
    // With nothing waited for yet (the body came with the head), the request's start is
    // a few µs ago and stands for now, as it does for the retry budget: one clock read
    // less. After a wait, the clock is read.
    let now = if g.waited.is_zero() {
        routing::ns_at(g.start)
    } else {
        routing::now_ns()
    };
    match state
        .limits
        .admit(&state.keys, job.key, m, job.reserve, now)
    {
        Ok(q) => {
            g.charge = Some(Charge {
                key: job.key,
                model: m,
                reserved: job.reserve,
            });
            Ok(q)
        }
        Err(e) => {
            g.route(state.routes[m].deployments[0].slot);
            state.metrics.rate_limit_hit(job.key, m);
            let key = job.key.map_or("-", |k| state.keys.get(k).name.as_str());
            tracing::debug!(key, model = %state.routes[m].name, error = %e, "rate limited");
            Err(e)
        }
    }
}

/// `cache-control: no-cache` on the request: do not answer from the cache.
fn no_cache(h: &HeaderMap) -> bool {
    h.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("no-cache"))
    })
}

/// A non-streaming request of a model that caches or coalesces: from the cache, or
/// from a call shared with identical requests in flight; stored when it succeeds.
async fn shared(
    state: &Arc<State>,
    job: &Job<'_>,
    first: usize,
    g: &mut Guard,
) -> Result<Answer, GatewayError> {
    let (cache, co) = (&state.caches[first], &state.coalescers[first]);
    if cache.is_none() && co.is_none() {
        return dispatch(state, job, first, g).await;
    }
    let key = AnswerKey::new(
        job.api as u8,
        job.key.unwrap_or(usize::MAX),
        first,
        job.body.clone(),
    );
    if let Some(c) = cache.as_ref().filter(|_| !no_cache(job.headers)) {
        let hit = c.get(&key, routing::now_ns());
        state.metrics.cache(first, usize::from(hit.is_none()));
        if let Some(b) = hit {
            g.route(state.routes[first].deployments[0].slot);
            g.cache = Some("hit");
            return Ok(Answer::Full(b));
        }
        g.cache = Some("miss");
    }
    let (r, called) = match co {
        Some(co) => coalesced(state, co, key.clone(), job, first, g).await,
        None => (dispatch(state, job, first, g).await, true),
    };
    if let (Some(c), Ok(Answer::Full(b)), true) = (cache, &r, called) {
        if c.put(key, b.clone(), routing::now_ns()) {
            state.metrics.cache(first, 2);
        }
    }
    r
}

/// Joins identical requests in flight: the first calls, the others get its answer
/// (or its error). Also says whether this request made the call.
async fn coalesced(
    state: &Arc<State>,
    co: &Coalescer<SharedAnswer>,
    key: AnswerKey,
    job: &Job<'_>,
    first: usize,
    g: &mut Guard,
) -> (Result<Answer, GatewayError>, bool) {
    match co.join(key) {
        Joined::Leader(leader) => {
            let r = dispatch(state, job, first, g).await;
            match &r {
                Ok(Answer::Full(b)) => leader.finish(Ok(b.clone())),
                Err(e) => leader.finish(Err(e.clone())),
                // Not reached (streams are not shared); dropping releases the waiters.
                Ok(Answer::Stream(..)) => drop(leader),
            }
            (r, true)
        }
        Joined::Waiter(rx) => {
            g.route(state.routes[first].deployments[0].slot);
            let t0 = Instant::now();
            let got = coalesce::wait(rx).await;
            g.waited += t0.elapsed();
            match got {
                Some(r) => (r.map(Answer::Full), false),
                // The caller went away without an answer: call alone.
                None => (dispatch(state, job, first, g).await, true),
            }
        }
    }
}

/// The answer as a response, its headers starting as `headers` (the limits').
fn respond(answer: Answer, g: &mut Guard, headers: HeaderMap) -> Response<Body> {
    match answer {
        Answer::Full(b) => {
            g.usage(&b);
            full_in(headers, StatusCode::OK, "application/json", b)
        }
        Answer::Stream(s, kind) => sse(s, kind, g.take(), headers),
    }
}

/// Small attempt counts as static header values (no allocation per response).
const ATTEMPTS: [&str; 9] = ["0", "1", "2", "3", "4", "5", "6", "7", "8"];

fn who_answered(resp: &mut Response<Body>, deployment: Option<HeaderValue>, attempts: u32) {
    let h = resp.headers_mut();
    if let Some(d) = deployment {
        h.insert(X_DEPLOYMENT, d);
    }
    if attempts > 0 {
        let v = ATTEMPTS.get(attempts as usize).map_or_else(
            || HeaderValue::from(attempts),
            |s| HeaderValue::from_static(s),
        );
        h.insert(X_ATTEMPTS, v);
    }
}

const X_DEPLOYMENT: HeaderName = HeaderName::from_static("x-gateway-deployment");
const X_ATTEMPTS: HeaderName = HeaderName::from_static("x-gateway-attempts");
const X_OVERHEAD: HeaderName = HeaderName::from_static("x-gateway-overhead-us");

/// An `x-gateway-overhead-us` value; those under 1000 µs are made once (no allocation
/// per answer).
fn overhead_value(us: u64) -> HeaderValue {
    static SMALL: std::sync::OnceLock<Box<[HeaderValue]>> = std::sync::OnceLock::new();
    let table = SMALL.get_or_init(|| (0..1000u64).map(HeaderValue::from).collect());
    usize::try_from(us)
        .ok()
        .and_then(|i| table.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(us))
}
const X_CACHE: HeaderName = HeaderName::from_static("x-gateway-cache");

async fn api(state: Arc<State>, req: Request<Incoming>, which: Api) -> Response<Body> {
    let mut g = Guard::new(&state);
    let result = match which {
        Api::Chat => chat(&state, req, &mut g).await,
        Api::Messages => messages(&state, req, &mut g).await,
    };
    let (deployment, attempts) = (g.deployment.clone(), g.attempts);
    let mut resp = result.unwrap_or_else(|e| {
        g.fail(&e);
        error_response(&e, which)
    });
    who_answered(&mut resp, deployment, attempts);
    if let Some(c) = g.cache {
        resp.headers_mut()
            .insert(X_CACHE, HeaderValue::from_static(c));
    }
    // Overhead: from the handler's start to the response head, minus the waits.
    let elapsed = g.start.elapsed();
    g.elapsed = Some(elapsed);
    let overhead = elapsed.saturating_sub(g.waited);
    state.metrics.overhead(overhead);
    let us = u64::try_from(overhead.as_micros()).unwrap_or(u64::MAX);
    resp.headers_mut().insert(X_OVERHEAD, overhead_value(us));
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
            Bytes::from(state.metrics.render_with(&state.routes)),
        ),
        "/v1/models" if get => match state.authorize(req.headers(), true) {
            Ok(key) => json(
                key.and_then(|k| state.key_models_body[k].clone())
                    .unwrap_or_else(|| state.models_body.clone()),
            ),
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

/// Keeps a timer due within the next second, forever. Tokio wakes its own driver (an
/// eventfd write, then one more `epoll_wait`) whenever a timer is registered earlier
/// than the wake-up it planned; the header-read timeout (30 s) registered after every
/// answer is earlier than the upstream deadline (120 s) the driver last planned for,
/// so that cost two syscalls per request. With this timer always earliest, neither is.
async fn timer_floor() {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How long in-flight requests may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Accepts connections, one task per connection, until `shutdown` completes; then
/// stops accepting, lets in-flight requests (streams included) finish for up to
/// [`SHUTDOWN_GRACE`], and returns.
pub async fn serve(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let floor = tokio::spawn(timer_floor());
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
    floor.abort();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the shutdown grace period");
    }
}
