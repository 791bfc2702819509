//! The HTTP/1.1 server: accept loop, routing, fault injection (the `/__mock/` admin
//! endpoints are in `admin`).

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::admin;
use crate::body::{MockBody, Pace, SseBody};
use crate::config::{Fault, Knobs, Opts, KNOB_PREFIX};
use crate::faults::{FaultSettings, LiveFaults, Outage};
use crate::listener::MainListener;
use crate::metrics::{Endpoint, InFlight, Metrics, Outcome};
use crate::render::{self, Answer, Finish, Flavor};
use crate::request::ChatRequest;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const PROMETHEUS_TEXT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

/// What `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Default knobs (request headers override them).
    pub knobs: Knobs,
    /// Models listed by `GET /v1/models`.
    pub models: Vec<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

impl From<&Opts> for Config {
    fn from(opts: &Opts) -> Self {
        Config {
            knobs: opts.knobs,
            models: opts.models.clone(),
            max_body_bytes: opts.max_body_bytes,
        }
    }
}

/// Failure to start or run the server.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The tokio runtime could not be built.
    #[error("cannot build the tokio runtime")]
    Runtime(#[source] io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The bound address could not be read back.
    #[error("cannot read the bound address")]
    LocalAddr(#[source] io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signal(#[source] io::Error),
}

/// Server-wide state.
#[derive(Debug)]
pub(crate) struct State {
    knobs: Knobs,
    pub(crate) metrics: Arc<Metrics>,
    /// Run-time fault settings (`/__mock/faults`).
    pub(crate) faults: LiveFaults,
    /// Whether the main port is listening (false during an `outage: refuse`).
    pub(crate) listening: watch::Sender<bool>,
    /// Whether `--admin-listen` serves the admin endpoints besides the main port.
    pub(crate) admin_listener: bool,
    models: Bytes,
    max_body_bytes: usize,
    seq: AtomicU64,
}

impl State {
    fn new(config: &Config, admin_listener: bool) -> State {
        State {
            knobs: config.knobs,
            metrics: Arc::new(Metrics::default()),
            faults: LiveFaults::new(FaultSettings::from_knobs(&config.knobs)),
            listening: watch::Sender::new(false),
            admin_listener,
            models: render::models_body(&config.models),
            max_body_bytes: config.max_body_bytes,
            seq: AtomicU64::new(1),
        }
    }
}

/// Per-connection state, shared by the service and the socket wrapper.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) state: Arc<State>,
    /// Set when an injected reset must close this connection with an RST.
    pub(crate) reset: AtomicBool,
}

/// Runs the server described by `opts` until SIGINT/SIGTERM: builds the runtime
/// (current-thread when `threads` is 1), binds, prints `listening on ADDR` (then
/// `admin listening on ADDR` with `--admin-listen`), serves.
pub fn run(opts: Opts) -> Result<(), RunError> {
    let threads = opts
        .threads
        .map(NonZeroUsize::get)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .map_err(RunError::Runtime)?;
    runtime.block_on(async {
        let listener = bind(opts.listen).await?;
        let admin = match opts.admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let addr = listener.local_addr().map_err(RunError::LocalAddr)?;
        println!("listening on {addr}");
        if let Some(admin) = &admin {
            let addr = admin.local_addr().map_err(RunError::LocalAddr)?;
            println!("admin listening on {addr}");
        }
        let shutdown = shutdown_signal()?;
        tokio::select! {
            result = serve(listener, admin, Config::from(&opts)) => result,
            () = shutdown => Ok(()),
        }
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// Resolves on SIGINT or SIGTERM (a container's PID 1 must handle SIGTERM itself).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Serves HTTP/1.1 with keep-alive on `listener` forever, and only the admin endpoints on
/// `admin` if given. During an `outage: refuse` the main socket is closed, then bound
/// again to the same address when the outage ends. Accept errors (such as running out of
/// file descriptors) are logged to stderr and retried after a short pause.
pub async fn serve(
    listener: TcpListener,
    admin: Option<TcpListener>,
    config: Config,
) -> Result<(), RunError> {
    let state = Arc::new(State::new(&config, admin.is_some()));
    let mut main = MainListener::new(listener, Arc::clone(&state)).map_err(RunError::LocalAddr)?;
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).pipeline_flush(true);
    if let Some(admin) = admin {
        tokio::spawn(admin::serve(admin, Arc::clone(&state), builder.clone()));
    }
    loop {
        let stream = main.accept().await;
        state.metrics.count_connection();
        // Nagle would delay small SSE chunks and answers.
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            state: Arc::clone(&state),
            reset: AtomicBool::new(false),
        });
        let io = TokioIo::new(ConnIo {
            stream,
            conn: Arc::clone(&conn),
        });
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&conn), req));
            // Connection errors (client gone, injected resets) end the connection; nothing to report.
            let _ = builder.serve_connection(io, service).await;
        });
    }
}

/// The accepted socket; on drop after an injected reset it sets `SO_LINGER` 0 so the
/// close sends an RST instead of a FIN.
struct ConnIo {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.conn.reset.load(Ordering::Relaxed) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Why a request got no HTTP answer (hyper then closes the connection).
#[derive(Debug, thiserror::Error)]
enum ServiceError {
    #[error("connection reset injected by x-mock-reset-rate")]
    InjectedReset,
    #[error("connection reset by an outage set through /__mock/faults")]
    OutageReset,
    #[error("reading the request body failed")]
    ReadBody(#[source] hyper::Error),
}

/// Which endpoint a path is, and whether `method` is allowed on it.
fn route(method: &Method, path: &str) -> (Endpoint, bool) {
    match path {
        "/v1/chat/completions" => (Endpoint::ChatCompletions, method == Method::POST),
        "/v1/messages" => (Endpoint::Messages, method == Method::POST),
        "/v1/models" => (Endpoint::Models, method == Method::GET),
        "/health" => (
            Endpoint::Health,
            method == Method::GET || method == Method::HEAD,
        ),
        "/metrics" => (Endpoint::Metrics, method == Method::GET),
        _ => (Endpoint::Other, false),
    }
}

async fn handle(
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<MockBody>, ServiceError> {
    let method = req.method();
    let path = req.uri().path();
    if path.starts_with(admin::PREFIX) {
        return Ok(admin::handle(Arc::clone(&conn.state), req).await);
    }
    let (endpoint, allowed) = route(method, path);
    let metrics = &conn.state.metrics;
    let faults = conn.state.faults.load();
    if faults.outage != Outage::Off {
        // A request on a connection opened before a `refuse` outage, or any request in
        // a `reset` outage: the connection dies with an RST, as the upstream would.
        metrics.count(endpoint, Outcome::OutageReset);
        conn.reset.store(true, Ordering::Relaxed);
        return Err(ServiceError::OutageReset);
    }
    if endpoint == Endpoint::Other {
        metrics.count(endpoint, Outcome::NotFound);
        let message = format!("Unknown request URL: {method} {path}.");
        let status = StatusCode::NOT_FOUND;
        return Ok(error(Flavor::OpenAi, status, &message, None, "unknown_url"));
    }
    let flavor = if endpoint == Endpoint::Messages {
        Flavor::Anthropic
    } else {
        Flavor::OpenAi
    };
    if !allowed {
        metrics.count(endpoint, Outcome::MethodNotAllowed);
        let message = format!("Method {method} is not allowed on {path}.");
        let status = StatusCode::METHOD_NOT_ALLOWED;
        return Ok(error(flavor, status, &message, None, "method_not_allowed"));
    }
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Messages => {
            match completion(&conn, req, endpoint, flavor, &faults).await {
                Ok(response) => Ok(response),
                Err(Early::Answer(response)) => Ok(*response),
                Err(Early::Drop(err)) => Err(err),
            }
        }
        Endpoint::Models => {
            metrics.count(endpoint, Outcome::Ok);
            Ok(json(StatusCode::OK, conn.state.models.clone()))
        }
        Endpoint::Health => {
            metrics.count(endpoint, Outcome::Ok);
            Ok(json(
                StatusCode::OK,
                Bytes::from_static(b"{\"status\":\"ok\"}"),
            ))
        }
        Endpoint::Metrics | Endpoint::Other => {
            metrics.count(endpoint, Outcome::Ok);
            let text = metrics.render(faults.outage);
            let mut response = Response::new(MockBody::full(Bytes::from(text)));
            response.headers_mut().insert(CONTENT_TYPE, PROMETHEUS_TEXT);
            Ok(response)
        }
    }
}

/// A completion that ends before the normal answer: with an error answer, or with no
/// answer at all.
enum Early {
    /// Boxed: responses are large, and this is the less common path.
    Answer(Box<Response<MockBody>>),
    Drop(ServiceError),
}

/// `POST /v1/chat/completions` and `POST /v1/messages`.
async fn completion(
    conn: &Arc<Conn>,
    req: Request<Incoming>,
    endpoint: Endpoint,
    flavor: Flavor,
    faults: &FaultSettings,
) -> Result<Response<MockBody>, Early> {
    let state = &conn.state;
    let knobs = request_knobs(state, req.headers(), faults, endpoint, flavor)?;
    let in_flight = state.metrics.in_flight();
    let body = read_request_body(state, req.into_body(), endpoint, flavor).await?;
    let request = parse_request(state, &body, endpoint, flavor)?;
    let fault = knobs.draw_fault();
    if fault == Fault::Hang {
        state.metrics.count(endpoint, Outcome::Hang);
        // hyper drops this future (and the in-flight guard) when the client closes.
        std::future::pending::<()>().await;
    }
    let delay = knobs.answer_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    inject_fault(conn, endpoint, flavor, fault, &knobs, request.is_stream())?;
    Ok(answer(
        conn, &request, endpoint, flavor, fault, &knobs, in_flight,
    ))
}

/// The startup knobs with the run-time fault settings over them, then the request's
/// `x-mock-*` headers over those.
fn request_knobs(
    state: &State,
    headers: &HeaderMap,
    faults: &FaultSettings,
    endpoint: Endpoint,
    flavor: Flavor,
) -> Result<Knobs, Early> {
    let mut knobs = state.knobs;
    faults.apply_to(&mut knobs);
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with(KNOB_PREFIX) {
            continue;
        }
        if let Err(err) = knobs.apply_header(name, value.as_bytes()) {
            state.metrics.count(endpoint, Outcome::BadRequest);
            let status = StatusCode::BAD_REQUEST;
            let message = err.to_string();
            let param = Some(err.header());
            let response = error(flavor, status, &message, param, "invalid_mock_header");
            return Err(Early::Answer(Box::new(response)));
        }
    }
    Ok(knobs)
}

async fn read_request_body(
    state: &State,
    body: Incoming,
    endpoint: Endpoint,
    flavor: Flavor,
) -> Result<Bytes, Early> {
    match read_body(body, state.max_body_bytes).await {
        Ok(body) => Ok(body),
        Err(ReadError::TooLarge) => {
            state.metrics.count(endpoint, Outcome::TooLarge);
            let message = format!(
                "Request body is larger than {} bytes.",
                state.max_body_bytes
            );
            let status = StatusCode::PAYLOAD_TOO_LARGE;
            let response = error(flavor, status, &message, None, "request_too_large");
            Err(Early::Answer(Box::new(response)))
        }
        Err(ReadError::Body(err)) => {
            state.metrics.count(endpoint, Outcome::Aborted);
            Err(Early::Drop(ServiceError::ReadBody(err)))
        }
    }
}

fn parse_request<'a>(
    state: &State,
    body: &'a [u8],
    endpoint: Endpoint,
    flavor: Flavor,
) -> Result<ChatRequest<'a>, Early> {
    ChatRequest::parse(body).map_err(|err| {
        state.metrics.count(endpoint, Outcome::BadRequest);
        let message = format!("We could not parse the JSON body of your request: {err}");
        let status = StatusCode::BAD_REQUEST;
        Early::Answer(Box::new(error(
            flavor,
            status,
            &message,
            None,
            "invalid_json",
        )))
    })
}

/// Answers the 429 and 500 faults, and resets plain requests; streams are reset later,
/// midway (see `answer`).
fn inject_fault(
    conn: &Conn,
    endpoint: Endpoint,
    flavor: Flavor,
    fault: Fault,
    knobs: &Knobs,
    stream: bool,
) -> Result<(), Early> {
    let metrics = &conn.state.metrics;
    match fault {
        Fault::RateLimited => {
            metrics.count(endpoint, Outcome::RateLimited);
            let mut response = json(
                StatusCode::TOO_MANY_REQUESTS,
                render::rate_limited_body(flavor),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(knobs.retry_after_s));
            Err(Early::Answer(Box::new(response)))
        }
        Fault::ServerError => {
            metrics.count(endpoint, Outcome::ServerError);
            Err(Early::Answer(Box::new(json(
                StatusCode::INTERNAL_SERVER_ERROR,
                render::server_error_body(flavor),
            ))))
        }
        Fault::Reset if !stream => {
            metrics.count(endpoint, Outcome::Reset);
            conn.reset.store(true, Ordering::Relaxed);
            Err(Early::Drop(ServiceError::InjectedReset))
        }
        Fault::None | Fault::Hang | Fault::Reset => Ok(()),
    }
}

/// The normal answer: a whole completion, or a paced stream (cut midway for a reset).
fn answer(
    conn: &Arc<Conn>,
    request: &ChatRequest<'_>,
    endpoint: Endpoint,
    flavor: Flavor,
    fault: Fault,
    knobs: &Knobs,
    in_flight: InFlight,
) -> Response<MockBody> {
    let state = &conn.state;
    let metrics = &state.metrics;
    let tokens = request
        .max_output()
        .map_or(knobs.output_tokens, |cap| cap.min(knobs.output_tokens));
    let answer = Answer {
        seq: state.seq.fetch_add(1, Ordering::Relaxed),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: &request.model,
        prompt_tokens: request.prompt_tokens(),
        output_tokens: tokens,
        finish: if tokens < knobs.output_tokens {
            Finish::Length
        } else {
            Finish::Stop
        },
    };
    if !request.is_stream() {
        metrics.count(endpoint, Outcome::Ok);
        metrics.add_tokens(endpoint, u64::from(tokens));
        let body = match flavor {
            Flavor::OpenAi => answer.openai_completion(),
            Flavor::Anthropic => answer.anthropic_message(),
        };
        return json(StatusCode::OK, body);
    }
    let parts = match flavor {
        Flavor::OpenAi => answer.openai_stream(request.include_usage()),
        Flavor::Anthropic => answer.anthropic_stream(),
    };
    let reset_at = (fault == Fault::Reset).then_some(tokens / 2);
    let outcome = if reset_at.is_some() {
        Outcome::Reset
    } else {
        Outcome::Ok
    };
    metrics.count(endpoint, outcome);
    let pace = Pace {
        tokens,
        ttft: knobs.ttft(),
        token_delay: knobs.token_delay(),
        reset_at,
    };
    let body = SseBody::new(parts, pace, Arc::clone(conn), endpoint, in_flight);
    let mut response = Response::new(MockBody::Stream(Box::new(body)));
    response.headers_mut().insert(CONTENT_TYPE, EVENT_STREAM);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// An error answer in the endpoint's flavor.
fn error(
    flavor: Flavor,
    status: StatusCode,
    message: &str,
    param: Option<&str>,
    code: &str,
) -> Response<MockBody> {
    let kind = "invalid_request_error";
    let body = render::error_body(flavor, status.as_u16(), kind, message, param, Some(code));
    json(status, body)
}

/// A JSON answer.
pub(crate) fn json(status: StatusCode, body: Bytes) -> Response<MockBody> {
    let mut response = Response::new(MockBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// Why a body could not be read.
pub(crate) enum ReadError {
    /// Larger than the limit.
    TooLarge,
    /// The connection failed (usually: the client went away).
    Body(hyper::Error),
}

/// Reads a whole request body; a body of one frame (the usual case) is not copied.
pub(crate) async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(ReadError::TooLarge);
    }
    let mut total = 0usize;
    let mut single: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Body)?.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        if let Some(joined) = &mut joined {
            joined.extend_from_slice(&data);
        } else if let Some(first) = single.take() {
            let mut buf =
                BytesMut::with_capacity(total.max(body.size_hint().lower() as usize + total));
            buf.extend_from_slice(&first);
            buf.extend_from_slice(&data);
            joined = Some(buf);
        } else {
            single = Some(data);
        }
    }
    Ok(joined.map(BytesMut::freeze).or(single).unwrap_or_default())
}
