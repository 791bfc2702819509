//! Providers behind one trait: a non-streaming and a streaming chat call, both in
//! OpenAI's shape. [`Upstream`] is the shared pooled HTTP client they use.

pub mod anthropic;
pub mod h1;
pub mod loopback;
pub mod openai;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Sleep;

use crate::config::{ConfigError, ProviderKind, Settings};
use crate::error::{upstream_error_body, GatewayError};

/// A stream of body chunks going to the client: the plain-HTTP client's body held inline
/// (the common case: the stream's state sits in the allocation of whatever holds it, and
/// a poll is a direct call), or any other stream boxed.
pub enum ByteStream {
    Plain(h1::BodyStream),
    Boxed(Pin<Box<dyn Stream<Item = Result<Bytes, GatewayError>> + Send>>),
}

impl ByteStream {
    /// Any stream of chunks, boxed.
    pub fn boxed(s: impl Stream<Item = Result<Bytes, GatewayError>> + Send + 'static) -> Self {
        ByteStream::Boxed(Box::pin(s))
    }

    /// Whether the next poll would surely wait (known for the plain-HTTP body only).
    pub fn would_wait(&self) -> bool {
        matches!(self, ByteStream::Plain(s) if s.would_wait())
    }
}

impl Stream for ByteStream {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            ByteStream::Plain(s) => Pin::new(s).poll_next(cx),
            ByteStream::Boxed(s) => s.as_mut().poll_next(cx),
        }
    }
}

/// Largest upstream answer the gateway buffers (non-streaming).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;
/// Largest upstream error body read for the 502 message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// One chat call, in OpenAI's request shape.
pub struct ChatRequest<'a> {
    /// The OpenAI chat request JSON, `model` already the upstream's.
    pub body: Bytes,
    /// The upstream model name.
    pub model: &'a str,
    /// The client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The client's request headers (configured prefixes are forwarded).
    pub headers: &'a HeaderMap,
}

/// What every provider does.
pub trait Provider {
    /// Answers with an OpenAI `chat.completion` JSON body.
    fn chat(
        &self,
        req: ChatRequest<'_>,
    ) -> impl Future<Output = Result<Bytes, GatewayError>> + Send;
    /// Answers with OpenAI `chat.completion.chunk` SSE bytes, passed on as they come.
    fn chat_stream(
        &self,
        req: ChatRequest<'_>,
    ) -> impl Future<Output = Result<ByteStream, GatewayError>> + Send;
}

/// The configured providers, dispatched statically.
pub enum AnyProvider {
    OpenAi(openai::OpenAiProvider),
    Anthropic(anthropic::AnthropicProvider),
    Loopback(loopback::LoopbackProvider),
}

impl AnyProvider {
    /// Builds a provider from its resolved settings.
    pub fn new(kind: &ProviderKind, upstream: &Arc<Upstream>) -> Result<Self, ConfigError> {
        Ok(match kind {
            ProviderKind::Openai { base_url, api_key } => AnyProvider::OpenAi(
                openai::OpenAiProvider::new(upstream.clone(), base_url, api_key.as_deref())?,
            ),
            ProviderKind::Anthropic {
                base_url,
                api_key,
                default_max_tokens,
            } => AnyProvider::Anthropic(anthropic::AnthropicProvider::new(
                upstream.clone(),
                base_url,
                api_key.as_deref(),
                *default_max_tokens,
            )?),
            ProviderKind::Loopback { output_tokens } => {
                AnyProvider::Loopback(loopback::LoopbackProvider::new(*output_tokens))
            }
        })
    }

    /// Whether calls go over the network (and so count for provider health).
    pub fn is_remote(&self) -> bool {
        !matches!(self, AnyProvider::Loopback(_))
    }
}

impl Provider for AnyProvider {
    async fn chat(&self, req: ChatRequest<'_>) -> Result<Bytes, GatewayError> {
        match self {
            AnyProvider::OpenAi(p) => p.chat(req).await,
            AnyProvider::Anthropic(p) => p.chat(req).await,
            AnyProvider::Loopback(p) => p.chat(req).await,
        }
    }

    async fn chat_stream(&self, req: ChatRequest<'_>) -> Result<ByteStream, GatewayError> {
        match self {
            AnyProvider::OpenAi(p) => p.chat_stream(req).await,
            AnyProvider::Anthropic(p) => p.chat_stream(req).await,
            AnyProvider::Loopback(p) => p.chat_stream(req).await,
        }
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Where a provider POSTs: plain `http://` endpoints go through the lean client in
/// [`h1`], others (TLS) through hyper's.
pub struct Target {
    uri: Uri,
    plain: Option<Arc<h1::Endpoint>>,
}

/// The upstream clients with the gateway's timeouts and forwarded headers.
pub struct Upstream {
    client: HttpClient,
    timeout: Duration,
    connect_timeout: Duration,
    forward_prefixes: Vec<String>,
}

impl Upstream {
    /// Builds the clients: TCP_NODELAY, a large idle pool per host, TLS (ring, webpki roots).
    pub fn new(settings: &Settings) -> Result<Self, ConfigError> {
        let connect_timeout = Duration::from_millis(settings.limits.connect_timeout_ms);
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| ConfigError::Invalid {
                path: "providers".into(),
                message: format!("TLS setup failed: {e}"),
            })?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Upstream {
            client,
            timeout: Duration::from_millis(settings.limits.upstream_timeout_ms),
            connect_timeout,
            forward_prefixes: settings.forward_headers.clone(),
        })
    }

    /// The target `base` + `path` (e.g. `http://127.0.0.1:9000/v1` + `/chat/completions`).
    pub fn target(&self, base: &str, path: &str) -> Result<Target, ConfigError> {
        let uri = join_uri(base, path)?;
        let plain = h1::Endpoint::new(&uri, self.connect_timeout, self.timeout)?.map(Arc::new);
        Ok(Target { uri, plain })
    }

    /// A hyper POST of `body` to `uri` with `headers`, plus the client's forwarded headers.
    fn request(
        &self,
        uri: &Uri,
        headers: &[(HeaderName, HeaderValue)],
        client_headers: &HeaderMap,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri.clone();
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in headers {
            h.insert(k.clone(), v.clone());
        }
        for (k, v) in client_headers {
            if forwarded(&self.forward_prefixes, k) {
                h.append(k.clone(), v.clone());
            }
        }
        req
    }

    /// Sends a request on the lean client and reads the answer's head; a non-2xx
    /// answer is read (up to [`MAX_ERROR_BODY`]) into [`GatewayError::UpstreamStatus`].
    async fn plain(
        &self,
        ep: &h1::Endpoint,
        headers: &[(HeaderName, HeaderValue)],
        client: &HeaderMap,
        body: &[u8],
    ) -> Result<(h1::Conn, h1::Head), GatewayError> {
        let wire = ep.serialize(headers, client, &self.forward_prefixes, body);
        let (conn, head) = ep.exchange(&wire).await?;
        if (200..300).contains(&head.status) {
            return Ok((conn, head));
        }
        let answer = conn
            .body(&head, MAX_ERROR_BODY, ep)
            .await
            .unwrap_or_default();
        Err(status_error(head.status, head.retry_after_ms, &answer))
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, GatewayError> {
        self.client.request(req).await.map_err(|e| {
            let chain = error_chain(&e);
            if e.is_connect() {
                GatewayError::UpstreamConnect(chain)
            } else {
                GatewayError::UpstreamIo(chain)
            }
        })
    }

    async fn status_error(&self, resp: Response<Incoming>) -> GatewayError {
        let status = resp.status().as_u16();
        let retry_after_ms = retry_after_ms(resp.headers());
        let body = Limited::new(resp.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        status_error(status, retry_after_ms, &body)
    }

    /// POSTs `body` and collects the whole answer, all within the upstream timeout. A
    /// non-2xx status becomes [`GatewayError::UpstreamStatus`]. (The plain-HTTP client
    /// keeps the timeout on its connection: no timer per request.)
    pub async fn call(
        &self,
        t: &Target,
        headers: &[(HeaderName, HeaderValue)],
        client: &HeaderMap,
        body: Bytes,
    ) -> Result<Bytes, GatewayError> {
        if let Some(ep) = &t.plain {
            let (conn, head) = self.plain(ep, headers, client, &body).await?;
            return conn.body(&head, MAX_UPSTREAM_BODY, ep).await;
        }
        let work = async {
            let resp = self
                .send(self.request(&t.uri, headers, client, body))
                .await?;
            if !resp.status().is_success() {
                return Err(self.status_error(resp).await);
            }
            Limited::new(resp.into_body(), MAX_UPSTREAM_BODY)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| GatewayError::UpstreamIo(error_chain(e.as_ref())))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| GatewayError::UpstreamTimeout(self.timeout_ms()))?
    }

    /// POSTs `body` and returns the answer's body as a stream once the head is in; the
    /// head, and each later chunk, must come within the upstream timeout.
    pub async fn open_stream(
        &self,
        t: &Target,
        headers: &[(HeaderName, HeaderValue)],
        client: &HeaderMap,
        body: Bytes,
    ) -> Result<ByteStream, GatewayError> {
        if let Some(ep) = &t.plain {
            let (conn, head) = self.plain(ep, headers, client, &body).await?;
            return Ok(ByteStream::Plain(h1::BodyStream::new(
                conn,
                &head,
                ep.clone(),
            )));
        }
        let work = async {
            let resp = self
                .send(self.request(&t.uri, headers, client, body))
                .await?;
            if !resp.status().is_success() {
                return Err(self.status_error(resp).await);
            }
            Ok(ByteStream::boxed(UpstreamStream {
                body: resp.into_body(),
                idle: self.timeout,
                timer: Box::pin(tokio::time::sleep(self.timeout)),
                timeout_ms: self.timeout_ms(),
            }))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| GatewayError::UpstreamTimeout(self.timeout_ms()))?
    }
}

/// Whether a client header goes upstream: its name starts with one of `prefixes`
/// (`forward_headers` in the config).
fn forwarded(prefixes: &[String], name: &HeaderName) -> bool {
    prefixes
        .iter()
        .any(|p| name.as_str().starts_with(p.as_str()))
}

/// An upstream's non-2xx answer as the error the gateway handles.
fn status_error(status: u16, retry_after_ms: Option<u64>, body: &[u8]) -> GatewayError {
    let e = upstream_error_body(body);
    GatewayError::UpstreamStatus {
        status,
        detail: e.message,
        kind: e.kind,
        code: e.code,
        retry_after_ms,
    }
}

/// An upstream's `retry-after-ms` (OpenAI's) or `retry-after` in seconds, in ms.
pub fn retry_after_ms(h: &HeaderMap) -> Option<u64> {
    let num = |name: &str, unit: f64| {
        h.get(name)?
            .to_str()
            .ok()
            .and_then(|v| h1::seconds_or_ms(v, unit))
    };
    num("retry-after-ms", 1.0).or_else(|| num("retry-after", 1000.0))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// An upstream body as a stream of data chunks, failing when it goes silent longer
/// than the upstream timeout.
struct UpstreamStream {
    body: Incoming,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    timeout_ms: u64,
}

impl Stream for UpstreamStream {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            match hyper::body::Body::poll_frame(Pin::new(&mut this.body), cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        let next = tokio::time::Instant::now() + this.idle;
                        this.timer.as_mut().reset(next);
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(GatewayError::UpstreamIo(error_chain(&e)))))
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(GatewayError::UpstreamTimeout(
                            this.timeout_ms,
                        ))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Parses `base` + `path` into a URI.
pub fn join_uri(base: &str, path: &str) -> Result<Uri, ConfigError> {
    format!("{base}{path}")
        .parse()
        .map_err(|e| ConfigError::Invalid {
            path: "base_url".into(),
            message: format!("bad upstream URL {base}{path}: {e}"),
        })
}

/// A header value for an API key from the config.
pub fn key_header(v: &str) -> Result<HeaderValue, ConfigError> {
    HeaderValue::from_str(v).map_err(|_| ConfigError::Invalid {
        path: "api_key".into(),
        message: "the API key is not a valid HTTP header value".into(),
    })
}
