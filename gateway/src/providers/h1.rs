//! A lean HTTP/1.1 client for plain `http://` upstreams (TLS upstreams go through
//! hyper). Why: hyper's pooled client runs every connection in a task of its own and
//! hands each answer (and each stream chunk) to the caller through a channel, so every
//! upstream read costs two task wake-ups and a hand-off. Here the request's own task
//! writes the request and reads the answer on a pooled connection: one task, no
//! channel, the request head pre-serialized per endpoint, the answer parsed in place.
//! Measured in `bench/gateway.sh` (see the README's performance section).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::Stream;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::config::ConfigError;
use crate::error::GatewayError;

/// Headers parsed from an answer's head, at most.
const MAX_HEADERS: usize = 64;
/// Largest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Read size: room reserved in the buffer before each read.
const READ_CHUNK: usize = 8 * 1024;
/// Body pieces up to this size are copied out of the read buffer rather than split off.
const COPY_MAX: usize = 1024;
/// Idle connections kept per endpoint.
const MAX_IDLE: usize = 1024;
/// An idle connection older than this is closed rather than reused (servers close
/// idle keep-alive connections after a while; hyper's default pool timeout).
const IDLE_FOR: Duration = Duration::from_secs(90);

/// One `http://host:port/path` the gateway POSTs to, with its idle connections.
pub struct Endpoint {
    /// `host:port`, as connected to.
    authority: String,
    /// `POST /path HTTP/1.1`, `host` and `content-type` lines.
    head: Vec<u8>,
    idle: Mutex<Vec<Conn>>,
    connect_timeout: Duration,
    /// Each exchange (write, head, body) must end within this of its start; a stream's
    /// chunks must each come within it of the last.
    timeout: Duration,
}

/// A kept-alive connection and the bytes read past the last answer (none, normally).
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// When the connection was last taken for a request (idle since, once pooled).
    used_at: Instant,
    deadline: Deadline,
}

/// The connection's timeout, re-armed lazily: a request moves `at` (a store, no
/// timer-wheel update), and the timer, registered once per connection at some earlier
/// instant, is moved up to `at` only when it fires early. So a timer is touched about
/// once per timeout period per connection, not twice per request (as
/// `tokio::time::timeout` would: insert and remove, plus a clock read). A stream's
/// waits poll the timer only when it may have fired (see [`Deadline::poll_wait`]): with
/// thousands of streams, the boxed timer is a cache miss per token otherwise.
struct Deadline {
    sleep: Pin<Box<Sleep>>,
    /// The timer's deadline, kept here so that checking it does not touch the box.
    armed: Instant,
    at: Instant,
    timeout: Duration,
    /// The task the timer was last polled from, while the timer cannot have fired
    /// unseen; cleared when a read finds the clock past `armed`.
    waker: Option<Waker>,
    /// Data was read since the last wait.
    fed: bool,
}

impl Deadline {
    fn new(now: Instant, timeout: Duration) -> Self {
        let at = now + timeout;
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(at)),
            armed: at,
            at,
            timeout,
            waker: None,
            fed: false,
        }
    }

    /// Starts a new period: the deadline becomes `now` + the timeout. Only a move
    /// earlier than the armed timer touches the timer.
    fn restart(&mut self, now: Instant) {
        let at = now + self.timeout;
        self.at = at;
        if at < self.armed {
            self.rearm(at);
        }
        if now >= self.armed {
            self.waker = None; // it may have fired: the next wait polls it
        }
    }

    fn rearm(&mut self, at: Instant) {
        self.armed = at;
        self.sleep.as_mut().reset(at);
    }

    /// Ready once `at` has passed.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if self.armed >= self.at {
                return Poll::Ready(());
            }
            let at = self.at;
            self.rearm(at);
        }
    }

    /// Data came at `now` (a stream's read): the deadline moves.
    fn fed(&mut self, now: Instant) {
        self.restart(now);
        self.fed = true;
    }

    /// A stream's wait for data: ready once `at` has passed. The timer is polled only
    /// when it may have fired unseen or may not wake this task. It is skipped when it
    /// was last polled from this task and the clock, read by the last data or else now,
    /// is short of `armed`: tokio never fires a timer early, so it has not fired and
    /// will wake this task when it does. (A wait right after data costs nothing; one
    /// after a wake-up without data, a clock read.)
    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let fed = std::mem::take(&mut self.fed);
        let ours = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if ours && (fed || Instant::now() < self.armed) {
            return Poll::Pending;
        }
        let r = self.poll_expired(cx);
        if r.is_pending() && !ours {
            self.waker = Some(cx.waker().clone());
        }
        r
    }

    /// Forgets the task the timer was polled from: the next wait polls it again (a new
    /// stream's task may differ; an idle connection holds no task).
    fn release_task(&mut self) {
        self.waker = None;
    }

    fn error(&self) -> GatewayError {
        GatewayError::UpstreamTimeout(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX))
    }

    /// `f`'s output, or [`GatewayError::UpstreamTimeout`] when the deadline passes first.
    async fn run<F: Future>(&mut self, f: F) -> Result<F::Output, GatewayError> {
        let mut f = std::pin::pin!(f);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = f.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            self.poll_expired(cx).map(|()| Err(self.error()))
        })
        .await
    }
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `content-length`: bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Until the upstream closes the connection.
    Close,
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

/// An answer's status line and the headers the gateway uses.
pub struct Head {
    pub status: u16,
    pub retry_after_ms: Option<u64>,
    framing: Framing,
    keep_alive: bool,
}

fn proto(msg: impl Into<String>) -> GatewayError {
    GatewayError::UpstreamProtocol(msg.into())
}

fn io_err(e: &io::Error) -> GatewayError {
    GatewayError::UpstreamIo(e.to_string())
}

impl Endpoint {
    /// The endpoint of a plain `http://` URI (`None` for any other scheme).
    pub fn new(
        uri: &Uri,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Option<Self>, ConfigError> {
        if uri.scheme_str() != Some("http") {
            return Ok(None);
        }
        let bad = |m: &str| ConfigError::Invalid {
            path: "base_url".into(),
            message: format!("bad upstream URL {uri}: {m}"),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let host_header = uri.authority().map_or(authority.as_str(), |a| a.as_str());
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {host_header}\r\ncontent-type: application/json\r\n"
        )
        .into_bytes();
        Ok(Some(Endpoint {
            authority,
            head,
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            timeout,
        }))
    }

    /// The request's bytes: the endpoint's head, `headers`, the client's headers that
    /// start with one of `forward`, then the body.
    pub fn serialize(
        &self,
        headers: &[(HeaderName, HeaderValue)],
        client: &HeaderMap,
        forward: &[String],
        body: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + 64 + body.len());
        out.extend_from_slice(&self.head);
        let mut line = |k: &HeaderName, v: &HeaderValue| {
            out.extend_from_slice(k.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        for (k, v) in headers {
            line(k, v);
        }
        if !forward.is_empty() {
            for (k, v) in client {
                if super::forwarded(forward, k) {
                    line(k, v);
                }
            }
        }
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        out
    }

    /// A pooled connection not idle for too long (as of `now`), not closed.
    fn take_idle(&self, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if now.saturating_duration_since(c.used_at) < IDLE_FOR && !c.closed() {
                return Some(c);
            }
        }
        None
    }

    /// Puts a connection whose last answer was read to its end back in the pool. It
    /// counts as idle since its request started (no clock read here).
    fn give_back(&self, conn: Conn) {
        if !conn.buf.is_empty() {
            return; // bytes past the answer: the connection is out of step
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self, now: Instant) -> Result<Conn, GatewayError> {
        let ms = u64::try_from(self.connect_timeout.as_millis()).unwrap_or(u64::MAX);
        let io = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.authority))
            .await
            .map_err(|_| {
                GatewayError::UpstreamConnect(format!(
                    "{}: no connection within {ms} ms",
                    self.authority
                ))
            })?
            .map_err(|e| GatewayError::UpstreamConnect(format!("{}: {e}", self.authority)))?;
        let _ = io.set_nodelay(true);
        Ok(Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            used_at: now,
            deadline: Deadline::new(now, self.timeout),
        })
    }

    /// Sends `request` and reads the answer's head. A pooled connection whose write
    /// fails is replaced by a new one once: nothing of the request was delivered. (One
    /// that ends after the write is an error: the upstream may have acted on it.)
    /// The whole exchange, this and the body after it, must end within the timeout.
    pub async fn exchange(&self, request: &[u8]) -> Result<(Conn, Head), GatewayError> {
        let now = Instant::now();
        if let Some(mut conn) = self.take_idle(now) {
            conn.used_at = now;
            conn.deadline.restart(now);
            match conn.send(request).await {
                Ok(head) => return Ok((conn, head)),
                Err(Unsent::No(e)) => return Err(e),
                Err(Unsent::Yes) => {}
            }
        }
        let mut conn = self.connect(now).await?;
        match conn.send(request).await {
            Ok(head) => Ok((conn, head)),
            Err(Unsent::No(e)) => Err(e),
            Err(Unsent::Yes) => Err(GatewayError::UpstreamIo(format!(
                "{} closed the connection before the request was sent",
                self.authority
            ))),
        }
    }
}

/// Why a send failed: the request could not be written at all, or anything else.
enum Unsent {
    Yes,
    No(GatewayError),
}

impl Conn {
    /// Writes the request and reads the answer's head, by the connection's deadline.
    async fn send(&mut self, request: &[u8]) -> Result<Head, Unsent> {
        let Conn { io, deadline, .. } = self;
        match deadline.run(io.write(request)).await.map_err(Unsent::No)? {
            Ok(n) if n == request.len() => {}
            Ok(n) => {
                let rest = &request[n..];
                let Conn { io, deadline, .. } = self;
                deadline
                    .run(io.write_all(rest))
                    .await
                    .map_err(Unsent::No)?
                    .map_err(|e| Unsent::No(io_err(&e)))?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Err(Unsent::Yes)
            }
            Err(e) => return Err(Unsent::No(io_err(&e))),
        }
        loop {
            if let Some(head) = parse_head(&mut self.buf).map_err(Unsent::No)? {
                return Ok(head);
            }
            match self.read().await {
                Ok(0) if self.buf.is_empty() => {
                    let e = GatewayError::UpstreamIo(
                        "the upstream closed the connection without answering".into(),
                    );
                    return Err(Unsent::No(e));
                }
                Ok(0) => return Err(Unsent::No(proto("the answer's head was cut short"))),
                Ok(_) => {}
                Err(e) => return Err(Unsent::No(e)),
            }
        }
    }

    /// The upstream closed this idle connection (its FIN or reset already reached the
    /// reactor): tokio's cached readiness says so, no syscall.
    fn closed(&self) -> bool {
        use futures_util::FutureExt;
        match self.io.ready(Interest::READABLE).now_or_never() {
            Some(Ok(r)) => r.is_read_closed() || r.is_error(),
            Some(Err(_)) => true,
            None => false,
        }
    }

    /// One read into the buffer, by the connection's deadline.
    async fn read(&mut self) -> Result<usize, GatewayError> {
        let Conn {
            io, buf, deadline, ..
        } = self;
        buf.reserve(READ_CHUNK);
        deadline
            .run(io.read_buf(buf))
            .await?
            .map_err(|e| io_err(&e))
    }

    /// Reads the rest of the body (at most `limit` bytes), then pools the connection
    /// when it can be reused.
    pub async fn body(
        mut self,
        head: &Head,
        limit: usize,
        pool: &Endpoint,
    ) -> Result<Bytes, GatewayError> {
        let mut framing = head.framing;
        let mut out: Option<BytesMut> = None;
        loop {
            match decode(&mut framing, &mut self.buf)? {
                Decoded::Data(d) => {
                    let o = out.get_or_insert_with(BytesMut::new);
                    if o.len() + d.len() > limit {
                        return Err(proto(format!("answer larger than {limit} bytes")));
                    }
                    if o.is_empty() && framing == Framing::Length(0) {
                        // The whole body in one piece: no copy.
                        if head.keep_alive {
                            pool.give_back(self);
                        }
                        return Ok(d);
                    }
                    o.extend_from_slice(&d);
                }
                Decoded::Done => break,
                Decoded::NeedMore => match self.read().await? {
                    0 if framing == Framing::Close => break,
                    0 => return Err(proto("the upstream closed the connection mid-answer")),
                    _ => {}
                },
            }
        }
        if head.keep_alive && framing != Framing::Close {
            pool.give_back(self);
        }
        Ok(out.map(BytesMut::freeze).unwrap_or_default())
    }
}

/// Parses an answer's head off the front of `buf` once it is all there; interim 1xx
/// answers are skipped.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, GatewayError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut headers);
        let n = match r.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(proto("answer head too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(proto(format!("bad answer head: {e}"))),
        };
        let status = r.code.unwrap_or(0);
        if (100..200).contains(&status) {
            buf.advance(n);
            continue;
        }
        let head = head_of(status, r.version == Some(1), r.headers)?;
        buf.advance(n);
        return Ok(Some(head));
    }
}

fn head_of(status: u16, http11: bool, headers: &[httparse::Header]) -> Result<Head, GatewayError> {
    let mut length = None;
    let mut chunked = false;
    let mut keep_alive = http11;
    let mut retry_after = None;
    let mut retry_after_ms = None;
    for h in headers {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = v.parse().map_err(|_| proto("bad content-length"))?;
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().ends_with("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let v = v.to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("retry-after-ms") {
            retry_after_ms = seconds_or_ms(v, 1.0);
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = seconds_or_ms(v, 1000.0);
        }
    }
    let framing = if status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked(Chunk::Size)
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::Close
    };
    Ok(Head {
        status,
        retry_after_ms: retry_after_ms.or(retry_after),
        framing,
        keep_alive,
    })
}

/// A non-negative number of `unit`s, in whole ms rounded up (the HTTP-date form of
/// `retry-after` is not used by LLM APIs and is ignored).
pub fn seconds_or_ms(v: &str, unit: f64) -> Option<u64> {
    let v: f64 = v.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * unit).ceil() as u64)
}

/// One step of body decoding.
enum Decoded {
    Data(Bytes),
    NeedMore,
    Done,
}

/// Takes the next piece of body out of `buf`.
fn decode(framing: &mut Framing, buf: &mut BytesMut) -> Result<Decoded, GatewayError> {
    if let Framing::Chunked(c @ (Chunk::Size | Chunk::DataEnd | Chunk::Trailer)) = framing {
        if let Some(d) = decode_chunk_line(c, buf)? {
            return Ok(d);
        }
    }
    match framing {
        Framing::Length(0) => Ok(Decoded::Done),
        Framing::Length(n) | Framing::Chunked(Chunk::Data(n)) => {
            if buf.is_empty() {
                return Ok(Decoded::NeedMore);
            }
            let take = usize::try_from(*n).unwrap_or(usize::MAX).min(buf.len());
            let d = take_piece(buf, take);
            *n -= take as u64;
            if let Framing::Chunked(c) = framing {
                if *c == Chunk::Data(0) {
                    // The data's CRLF is taken now when it is in (it normally came
                    // with the data), so that an empty buffer means nothing to decode.
                    *c = if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        Chunk::Size
                    } else {
                        Chunk::DataEnd
                    };
                }
            }
            Ok(Decoded::Data(d))
        }
        Framing::Close => Ok(if buf.is_empty() {
            Decoded::NeedMore
        } else {
            Decoded::Data(take_piece(buf, buf.len()))
        }),
        Framing::Chunked(_) => Ok(Decoded::NeedMore),
    }
}

/// The first `n` bytes of `buf`, taken out. A small piece (a stream's token) is copied:
/// splitting it off would share the read buffer through a counted header, one more
/// cold cache line per token with thousands of streams open.
fn take_piece(buf: &mut BytesMut, n: usize) -> Bytes {
    if n <= COPY_MAX {
        let d = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        d
    } else {
        buf.split_to(n).freeze()
    }
}

/// A chunk-size line's size: hex digits, optionally between blanks, then optional
/// `;extensions`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
    let hex = hex.trim_ascii();
    if hex.is_empty() {
        return None;
    }
    hex.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(d))
    })
}

/// The lines of a chunked body around the data: sizes, data ends, trailers. `None`
/// once a size line put the decoder on the data.
fn decode_chunk_line(c: &mut Chunk, buf: &mut BytesMut) -> Result<Option<Decoded>, GatewayError> {
    loop {
        // memchr, not memmem: a searcher set up per line cost more than the search.
        let Some(eol) = memchr::memchr(b'\n', buf) else {
            if buf.len() > MAX_HEAD {
                return Err(proto("chunk line too long"));
            }
            return Ok(Some(Decoded::NeedMore));
        };
        // CRLF, or a bare LF (which RFC 9112 lets a recipient accept).
        let line = &buf[..eol];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let step = match *c {
            Chunk::Size => {
                let n = chunk_size(line).ok_or_else(|| proto("bad chunk size"))?;
                if n > 0 {
                    Some(Chunk::Data(n))
                } else {
                    Some(Chunk::Trailer)
                }
            }
            Chunk::DataEnd if line.is_empty() => Some(Chunk::Size),
            Chunk::DataEnd => return Err(proto("chunk data longer than its size")),
            Chunk::Trailer if line.is_empty() => None,
            Chunk::Trailer | Chunk::Data(_) => Some(*c),
        };
        // The line is only read: skipped over, not split off (no reference count).
        buf.advance(eol + 1);
        match step {
            None => return Ok(Some(Decoded::Done)),
            Some(next @ Chunk::Data(_)) => {
                *c = next;
                return Ok(None);
            }
            Some(next) => *c = next,
        }
    }
}

/// An answer's body as a stream of data chunks, failing when the upstream goes
/// silent longer than the endpoint's timeout (the connection's deadline, restarted
/// by each chunk); the connection goes back to the pool at the end.
pub struct BodyStream {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    pool: Arc<Endpoint>,
    /// The last read left room in the buffer: it drained the socket's queue.
    drained: bool,
}

/// Reads what the socket has into the buffer (`Ok(0)`: the upstream closed it), or
/// registers for more. A short read shows the socket's queue was drained, so tokio's
/// readiness is cleared with the tick taken before the read (as tokio's own `poll_read`
/// does; `try_read_buf` does not): the next poll waits for the next event instead of
/// paying a `read` that only says EAGAIN, and data that arrived after the read keeps
/// its newer tick, so no wake-up is lost.
fn poll_fill(conn: &mut Conn, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    let Conn { io, buf, .. } = conn;
    loop {
        buf.reserve(READ_CHUNK);
        let spare = buf.capacity() - buf.len();
        let mut got = None;
        let r = io.try_io(Interest::READABLE, || {
            let n = io.try_read_buf(buf)?;
            got = Some(n);
            if 0 < n && n < spare {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (got, r) {
            (Some(n), _) => return Poll::Ready(Ok(n)),
            (None, Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            (None, Err(e)) => return Poll::Ready(Err(e)),
            (None, Ok(n)) => return Poll::Ready(Ok(n)),
        }
        match io.poll_read_ready(cx) {
            Poll::Ready(Ok(())) => continue,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
}

impl BodyStream {
    pub fn new(mut conn: Conn, head: &Head, pool: Arc<Endpoint>) -> Self {
        conn.deadline.restart(Instant::now());
        conn.deadline.release_task();
        BodyStream {
            conn: Some(conn),
            framing: head.framing,
            keep_alive: head.keep_alive,
            pool,
            drained: false,
        }
    }

    /// Whether the next poll would wait: the last read drained the socket and left
    /// nothing undecoded, and the body is not at its end. A caller that has data in
    /// hand may send it rather than poll once more for nothing.
    pub fn would_wait(&self) -> bool {
        self.drained
            && self.framing != Framing::Length(0)
            && self.conn.as_ref().is_some_and(|c| c.buf.is_empty())
    }

    fn finish(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.deadline.release_task();
            if self.keep_alive && self.framing != Framing::Close {
                self.pool.give_back(conn);
            }
        }
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match decode(&mut this.framing, &mut conn.buf) {
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Decoded::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::Data(d)) => return Poll::Ready(Some(Ok(d))),
                Ok(Decoded::NeedMore) => {}
            }
            match poll_fill(conn, cx) {
                Poll::Ready(Ok(0)) if this.framing == Framing::Close => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    this.conn = None;
                    let e = proto("the upstream closed the connection mid-stream");
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok(_)) => {
                    this.drained = conn.buf.len() < conn.buf.capacity();
                    // Data came: the deadline moves (once per read, not per chunk); the
                    // timer follows lazily, when it fires: no timer-wheel update here.
                    conn.deadline.fed(Instant::now());
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(io_err(&e))));
                }
                Poll::Pending => {}
            }
            if conn.deadline.poll_wait(cx).is_ready() {
                let e = conn.deadline.error();
                this.conn = None;
                return Poll::Ready(Some(Err(e)));
            }
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, wire: &[u8], step: usize) -> (Vec<u8>, bool) {
        let mut f = framing;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        loop {
            match decode(&mut f, &mut buf).expect("decodes") {
                Decoded::Data(d) => out.extend_from_slice(&d),
                Decoded::Done => return (out, true),
                Decoded::NeedMore if fed >= wire.len() => return (out, false),
                Decoded::NeedMore => {
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in [1, 2, 3, 7, 64] {
            let (out, done) = decode_all(Framing::Chunked(Chunk::Size), wire, step);
            assert_eq!(
                (out.as_slice(), done),
                (&b"hello, world"[..], true),
                "step {step}"
            );
        }
    }

    #[test]
    fn pieces_over_the_copy_size_are_split_off_whole() {
        // Copied or split off (over COPY_MAX), a piece is the same bytes.
        let big: Vec<u8> = (0..3 * COPY_MAX).map(|i| b'a' + (i % 26) as u8).collect();
        let mut wire = format!("{:x}\r\n", big.len()).into_bytes();
        wire.extend_from_slice(&big);
        wire.extend_from_slice(b"\r\n3\r\nend\r\n0\r\n\r\n");
        let mut want = big.clone();
        want.extend_from_slice(b"end");
        for step in [7, COPY_MAX + 1, wire.len()] {
            let (out, done) = decode_all(Framing::Chunked(Chunk::Size), &wire, step);
            assert_eq!((out.len(), done), (want.len(), true), "step {step}");
            assert!(out == want, "step {step}: the bytes differ");
        }
        let (out, done) = decode_all(Framing::Length(big.len() as u64), &big, big.len());
        assert!(done && out == big, "a whole length-framed body");
        for step in [7, big.len()] {
            let (out, _) = decode_all(Framing::Close, &big, step);
            assert!(out == big, "a close-delimited body, step {step}");
        }
    }

    #[test]
    fn chunk_sizes_are_hex_with_blanks_and_extensions() {
        let cases: [(&[u8], Option<u64>); 7] = [
            (b"1a", Some(26)),
            (b" 5 ;ext=1", Some(5)),
            (b"0", Some(0)),
            (b"", None),
            (b" ", None),
            (b"zz", None),
            (b"1ffffffffffffffff", None), // over 64 bits
        ];
        for (line, want) in cases {
            assert_eq!(
                chunk_size(line),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_chunk_takes_its_crlf_when_it_came_with_the_data() {
        let mut f = Framing::Chunked(Chunk::Size);
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n"[..]);
        assert!(matches!(decode(&mut f, &mut buf), Ok(Decoded::Data(_))));
        assert!(buf.is_empty() && f == Framing::Chunked(Chunk::Size));
        let mut buf = BytesMut::from(&b"5\r\nhello"[..]);
        assert!(matches!(decode(&mut f, &mut buf), Ok(Decoded::Data(_))));
        assert!(f == Framing::Chunked(Chunk::DataEnd));
    }

    #[test]
    fn chunk_lines_may_end_in_a_bare_lf() {
        let wire = b"5\nhello\n3\r\n, w\r\n0\n\n";
        for step in [1, 4, 64] {
            let (out, done) = decode_all(Framing::Chunked(Chunk::Size), wire, step);
            assert_eq!((out.as_slice(), done), (&b"hello, w"[..], true));
        }
        let mut f = Framing::Chunked(Chunk::Size);
        let mut buf = BytesMut::from(&b"2\r\nabc\r\n"[..]);
        assert!(matches!(decode(&mut f, &mut buf), Ok(Decoded::Data(_))));
        assert!(
            decode(&mut f, &mut buf).is_err(),
            "data longer than its size"
        );
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (out, done) = decode_all(Framing::Length(5), b"hello", 2);
        assert_eq!((out.as_slice(), done), (&b"hello"[..], true));
        let (out, done) = decode_all(Framing::Length(9), b"hello", 2);
        assert_eq!((out.as_slice(), done), (&b"hello"[..], false));
    }

    #[test]
    fn bad_chunks_are_protocol_errors() {
        for wire in [&b"zz\r\nhello\r\n"[..], b"2\r\nhello\r\n0\r\n\r\n"] {
            let mut f = Framing::Chunked(Chunk::Size);
            let mut buf = BytesMut::from(wire);
            let err = loop {
                match decode(&mut f, &mut buf) {
                    Ok(Decoded::Data(_)) => continue,
                    Ok(other) => panic!("no error: {}", matches!(other, Decoded::Done)),
                    Err(e) => break e,
                }
            };
            assert!(matches!(err, GatewayError::UpstreamProtocol(_)), "{err}");
        }
    }

    #[test]
    fn heads_give_status_framing_and_retry_after() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many\r\nRetry-After: 1.5\r\n\
               Transfer-Encoding: chunked\r\n\r\n0\r\n"[..],
        );
        let head = parse_head(&mut buf).expect("parses").expect("complete");
        assert_eq!(head.status, 429);
        assert_eq!(head.retry_after_ms, Some(1500));
        assert_eq!(head.framing, Framing::Chunked(Chunk::Size));
        assert!(head.keep_alive);
        assert_eq!(&buf[..], b"0\r\n");

        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-le"[..]);
        assert!(parse_head(&mut buf).expect("partial").is_none());
        buf.extend_from_slice(b"ngth: 2\r\nretry-after-ms: 20\r\n\r\nok");
        let head = parse_head(&mut buf).expect("parses").expect("complete");
        assert_eq!(head.framing, Framing::Length(2));
        assert_eq!(head.retry_after_ms, Some(20));
        assert!(!head.keep_alive);
    }

    #[test]
    fn requests_carry_the_head_the_headers_and_the_length() {
        let uri: Uri = "http://127.0.0.1:9000/v1/chat/completions"
            .parse()
            .expect("uri");
        let ep = Endpoint::new(&uri, Duration::from_secs(1), Duration::from_secs(5))
            .expect("valid")
            .expect("plain http");
        assert_eq!(ep.authority, "127.0.0.1:9000");
        let mut client = HeaderMap::new();
        client.insert("x-mock-delay", HeaderValue::from_static("5"));
        client.insert("cookie", HeaderValue::from_static("no"));
        let auth = (
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer k"),
        );
        let req = ep.serialize(&[auth], &client, &["x-mock-".into()], b"{}");
        let want = "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:9000\r\n\
                    content-type: application/json\r\nauthorization: Bearer k\r\n\
                    x-mock-delay: 5\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(String::from_utf8_lossy(&req), want);
        let tls: Uri = "https://api.openai.com/v1".parse().expect("uri");
        assert!(
            Endpoint::new(&tls, Duration::from_secs(1), Duration::from_secs(5))
                .expect("valid")
                .is_none()
        );
    }

    /// A raw upstream: answers each request read on a connection with `ok` (keep-alive),
    /// then closes the connection after `answers` answers; counts connections.
    async fn raw_upstream(answers: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let conns = Arc::new(AtomicUsize::new(0));
        let seen = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..answers {
                        if s.read(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        let _ = s.write_all(ok).await;
                    }
                });
            }
        });
        (format!("http://{addr}/v1/chat/completions"), conns)
    }

    /// One request on `ep` to the end of its answer.
    async fn round_trip(ep: &Endpoint) -> Bytes {
        let wire = ep.serialize(&[], &HeaderMap::new(), &[], b"{}");
        let (conn, head) = ep.exchange(&wire).await.expect("answered");
        conn.body(&head, 1024, ep).await.expect("body")
    }

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::new(
            &url.parse().expect("uri"),
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .expect("valid")
        .expect("plain")
    }

    #[tokio::test]
    async fn a_pooled_connection_the_upstream_closed_is_not_reused() {
        use std::sync::atomic::Ordering;
        let (url, conns) = raw_upstream(1).await;
        let ep = endpoint(&url);
        for round in 0..3 {
            assert_eq!(&round_trip(&ep).await[..], b"ok", "round {round}");
            // Time for the upstream's FIN to reach the reactor.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);

        let (url, conns) = raw_upstream(usize::MAX).await;
        let ep = endpoint(&url);
        for _ in 0..3 {
            round_trip(&ep).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1, "one kept-alive connection");
    }

    /// An upstream on one connection that answers request `i` after `delays_ms[i]`
    /// (`u64::MAX`: never).
    async fn slow_upstream(delays_ms: Vec<u64>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            for ms in delays_ms {
                if s.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                if ms == u64::MAX {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        });
        format!("http://{addr}/v1/chat/completions")
    }

    #[tokio::test]
    async fn each_exchange_gets_the_whole_timeout_and_no_more() {
        let url = slow_upstream(vec![0, 0, 150, u64::MAX]).await;
        let ep = Endpoint::new(
            &url.parse().expect("uri"),
            Duration::from_secs(1),
            Duration::from_millis(300),
        )
        .expect("valid")
        .expect("plain");
        assert_eq!(&round_trip(&ep).await[..], b"ok");
        // Idle past the first exchange's deadline: the next one starts afresh.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(&round_trip(&ep).await[..], b"ok");
        assert_eq!(&round_trip(&ep).await[..], b"ok", "150 ms is within 300");
        let t0 = std::time::Instant::now();
        let wire = ep.serialize(&[], &HeaderMap::new(), &[], b"{}");
        let e = ep.exchange(&wire).await.map(|_| ()).expect_err("no answer");
        let took = t0.elapsed();
        assert!(matches!(e, GatewayError::UpstreamTimeout(300)), "{e}");
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(900), "{took:?}");
    }
}
