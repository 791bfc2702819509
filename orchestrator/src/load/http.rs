//! A minimal HTTP/1.1 client over a kept-alive `TcpStream` (TCP_NODELAY): writes the
//! precomputed request bytes, reads the answer into a reused buffer, decodes
//! `content-length` / `chunked` / until-close bodies and, for streams, parses SSE events as
//! they arrive (memchr), timestamping the first byte and every content chunk.
//!
//! Hand-written rather than hyper's client connection because it does no per-request
//! allocation and lets the stream parser see bytes the moment they are read.

use std::time::Instant;

use memchr::memmem;
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::request::{Api, PreparedRequest};
use super::stats::ErrorClass;

/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One kept-alive connection and its read buffer.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    last_used: Instant,
}

/// A connection idle longer than this is checked for a close by the server (idle
/// keep-alive timeouts, e.g. uvicorn's 5 s) before it is reused.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

impl Conn {
    /// False when the server has closed (or written unsolicited bytes on) the connection.
    fn still_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }
}

/// Per-VU (or per-slot) buffers reused across requests.
pub(crate) struct Scratch {
    body: Vec<u8>,
    /// Inter-token gaps of the last stream, in µs.
    pub gaps: Vec<u64>,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            body: Vec::with_capacity(8 * 1024),
            gaps: Vec::with_capacity(256),
        }
    }
}

/// What a successful exchange measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub first_byte: Instant,
    pub end: Instant,
    pub first_token: Option<Instant>,
    pub tokens: u64,
    /// The overhead the target says it added, µs (see [`CLAIM_HEADERS`]).
    pub claimed_us: Option<u64>,
}

/// Response headers in which a gateway reports its own overhead, and the factor from
/// their unit to µs: ours, and LiteLLM's (1.102.4 sends "None" when it has no figure).
pub const CLAIM_HEADERS: [(&str, f64); 2] = [
    ("x-gateway-overhead-us", 1.0),
    ("x-litellm-overhead-duration-ms", 1000.0),
];

enum Framing {
    Length(usize),
    Chunked(ChunkState),
    Eof,
}

#[derive(Clone, Copy)]
enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

/// Why a connect failed: the generator's own limits (no file descriptor left, no
/// buffer memory, no free local port) are [`ErrorClass::RigRefused`], which is never
/// charged to the target; anything else (refused, unreachable) is the target's `Connect`.
pub(crate) fn connect_class(e: &std::io::Error) -> ErrorClass {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::EADDRNOTAVAIL | libc::ENOBUFS) => {
            ErrorClass::RigRefused
        }
        _ => ErrorClass::Connect,
    }
}

/// Sends `req` on `conn` (connecting first if it is empty) and reads the whole answer.
/// On any I/O or framing failure the connection is dropped (set to `None`).
pub(crate) async fn exchange(
    conn: &mut Option<Conn>,
    req: &PreparedRequest,
    scratch: &mut Scratch,
) -> Result<Timing, ErrorClass> {
    if let Some(c) = conn {
        if c.last_used.elapsed() > IDLE_CHECK && !c.still_open() {
            *conn = None;
        }
    }
    if conn.is_none() {
        let stream = TcpStream::connect(req.endpoint.addr)
            .await
            .map_err(|e| connect_class(&e))?;
        stream.set_nodelay(true).map_err(|_| ErrorClass::Connect)?;
        *conn = Some(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            last_used: Instant::now(),
        });
    }
    let Some(c) = conn.as_mut() else {
        return Err(ErrorClass::Connect);
    };
    let result = exchange_on(c, req, scratch).await;
    c.last_used = Instant::now();
    match result {
        Ok((timing, keep)) => {
            if !keep {
                *conn = None;
            }
            Ok(timing)
        }
        Err((class, keep)) => {
            if !keep {
                *conn = None;
            }
            Err(class)
        }
    }
}

type Exchanged = Result<(Timing, bool), (ErrorClass, bool)>;

async fn read_more(c: &mut Conn) -> std::io::Result<usize> {
    if c.buf.capacity() - c.buf.len() < 4096 {
        c.buf.reserve(16 * 1024);
    }
    c.stream.read_buf(&mut c.buf).await
}

async fn exchange_on(c: &mut Conn, req: &PreparedRequest, scratch: &mut Scratch) -> Exchanged {
    const DROP: bool = false;
    c.stream
        .write_all(&req.bytes)
        .await
        .map_err(|_| (ErrorClass::Connection, DROP))?;
    c.buf.clear();
    scratch.body.clear();
    scratch.gaps.clear();

    // Head.
    let mut first_byte = None;
    let mut searched = 0usize;
    let head_end = loop {
        let n = read_more(c)
            .await
            .map_err(|_| (ErrorClass::Connection, DROP))?;
        if n == 0 {
            return Err((ErrorClass::Connection, DROP));
        }
        if first_byte.is_none() {
            first_byte = Some(Instant::now());
        }
        let from = searched.saturating_sub(3);
        if let Some(i) = memmem::find(&c.buf[from..], b"\r\n\r\n") {
            break from + i + 4;
        }
        searched = c.buf.len();
        if searched > MAX_HEAD {
            return Err((ErrorClass::Connection, DROP));
        }
    };
    let first_byte = first_byte.unwrap_or_else(Instant::now);
    let head = parse_head(&c.buf[..head_end]).ok_or((ErrorClass::Connection, DROP))?;
    let ok_status = (200..300).contains(&head.status);
    let mut framing = if head.chunked {
        Framing::Chunked(ChunkState::Size)
    } else if let Some(n) = head.content_length {
        Framing::Length(n)
    } else if head.status == 204 || head.status == 304 {
        Framing::Length(0)
    } else {
        Framing::Eof
    };
    let keep = !head.close && !matches!(framing, Framing::Eof);
    let parse_stream = req.stream && ok_status;
    let mut sse = Sse::new(req.api);
    let mut pos = head_end;

    loop {
        let done = decode(&c.buf, &mut pos, &mut framing, &mut scratch.body)
            .map_err(|_| (ErrorClass::Connection, DROP))?;
        if c.buf.len() == pos {
            c.buf.clear();
            pos = 0;
        } else if pos > 32 * 1024 {
            c.buf.drain(..pos);
            pos = 0;
        }
        if parse_stream {
            let now = Instant::now();
            sse.feed(&mut scratch.body, now, &mut scratch.gaps)
                .map_err(|class| (class, DROP))?;
        }
        if done {
            break;
        }
        let n: usize = read_more(c).await.unwrap_or_default();
        if n == 0 {
            if matches!(framing, Framing::Eof) {
                if parse_stream {
                    sse.finish(&mut scratch.body, Instant::now(), &mut scratch.gaps)
                        .map_err(|class| (class, DROP))?;
                }
                break;
            }
            // Closed before the body was complete.
            if parse_stream && sse.done {
                break;
            }
            let class = if parse_stream {
                ErrorClass::StreamCut
            } else {
                ErrorClass::Connection
            };
            return Err((class, DROP));
        }
    }
    let end = Instant::now();
    let keep = keep && c.buf.is_empty();

    match head.status {
        200..=299 => {}
        429 => return Err((ErrorClass::Http429, keep)),
        400..=499 => return Err((ErrorClass::Http4xx, keep)),
        500..=599 => return Err((ErrorClass::Http5xx, keep)),
        _ => return Err((ErrorClass::Malformed, keep)),
    }
    if req.stream {
        if !sse.done {
            return Err((ErrorClass::StreamCut, keep));
        }
        let tokens = sse.usage_tokens.unwrap_or(sse.chunks);
        return Ok((
            Timing {
                first_byte,
                end,
                first_token: sse.first_token,
                tokens,
                claimed_us: head.claimed_us,
            },
            keep,
        ));
    }
    let tokens = parse_body(req.api, &scratch.body).ok_or((ErrorClass::Malformed, keep))?;
    Ok((
        Timing {
            first_byte,
            end,
            first_token: None,
            tokens,
            claimed_us: head.claimed_us,
        },
        keep,
    ))
}

struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
    claimed_us: Option<u64>,
}

fn parse_head(head: &[u8]) -> Option<Head> {
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
        return None;
    }
    let status = std::str::from_utf8(&head[9..12]).ok()?.parse().ok()?;
    let mut h = Head {
        status,
        content_length: None,
        chunked: false,
        close: head.starts_with(b"HTTP/1.0"),
        claimed_us: None,
    };
    let mut rest = head;
    while let Some(nl) = memchr::memchr(b'\n', rest) {
        let line = &rest[..nl];
        rest = &rest[nl + 1..];
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = &line[..colon];
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            h.content_length = Some(std::str::from_utf8(value).ok()?.parse().ok()?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            h.chunked = contains_ci(value, b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            if contains_ci(value, b"close") {
                h.close = true;
            } else if contains_ci(value, b"keep-alive") {
                h.close = false;
            }
        } else if let Some((_, to_us)) = CLAIM_HEADERS
            .iter()
            .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
        {
            let v: Option<f64> = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            h.claimed_us = v
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| (v * to_us).round() as u64);
        }
    }
    Some(h)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

struct BadFraming;

/// Moves decoded body bytes from `buf[*pos..]` into `body`. Returns true when the body is
/// complete (never for `Eof` framing).
fn decode(
    buf: &[u8],
    pos: &mut usize,
    framing: &mut Framing,
    body: &mut Vec<u8>,
) -> Result<bool, BadFraming> {
    match framing {
        Framing::Length(rem) => {
            let take = (*rem).min(buf.len() - *pos);
            body.extend_from_slice(&buf[*pos..*pos + take]);
            *pos += take;
            *rem -= take;
            Ok(*rem == 0)
        }
        Framing::Eof => {
            body.extend_from_slice(&buf[*pos..]);
            *pos = buf.len();
            Ok(false)
        }
        Framing::Chunked(state) => loop {
            match *state {
                ChunkState::Size => {
                    let Some(nl) = memmem::find(&buf[*pos..], b"\r\n") else {
                        return Ok(false);
                    };
                    let line = &buf[*pos..*pos + nl];
                    let hex = match memchr::memchr(b';', line) {
                        Some(i) => &line[..i],
                        None => line,
                    };
                    let hex = std::str::from_utf8(trim(hex)).map_err(|_| BadFraming)?;
                    let size = usize::from_str_radix(hex, 16).map_err(|_| BadFraming)?;
                    *pos += nl + 2;
                    *state = if size == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(rem) => {
                    let take = rem.min(buf.len() - *pos);
                    body.extend_from_slice(&buf[*pos..*pos + take]);
                    *pos += take;
                    if take < rem {
                        *state = ChunkState::Data(rem - take);
                        return Ok(false);
                    }
                    *state = ChunkState::DataEnd;
                }
                ChunkState::DataEnd => {
                    if buf.len() - *pos < 2 {
                        return Ok(false);
                    }
                    if &buf[*pos..*pos + 2] != b"\r\n" {
                        return Err(BadFraming);
                    }
                    *pos += 2;
                    *state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(nl) = memmem::find(&buf[*pos..], b"\r\n") else {
                        return Ok(false);
                    };
                    *pos += nl + 2;
                    if nl == 0 {
                        *state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(true),
            }
        },
    }
}

#[derive(Deserialize)]
struct OpenaiBody {
    #[allow(dead_code)]
    choices: IgnoredAny,
    #[serde(default)]
    usage: Option<OpenaiUsage>,
}

#[derive(Deserialize)]
struct OpenaiUsage {
    #[serde(default)]
    completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct AnthropicBody {
    #[allow(dead_code)]
    content: IgnoredAny,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// Validates a non-streaming answer; returns its output tokens (0 when it reports none).
fn parse_body(api: Api, body: &[u8]) -> Option<u64> {
    match api {
        Api::Openai => {
            let b: OpenaiBody = serde_json::from_slice(body).ok()?;
            Some(b.usage.and_then(|u| u.completion_tokens).unwrap_or(0))
        }
        Api::Anthropic => {
            let b: AnthropicBody = serde_json::from_slice(body).ok()?;
            Some(b.usage.and_then(|u| u.output_tokens).unwrap_or(0))
        }
    }
}

#[derive(Deserialize)]
struct OpenaiChunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<OpenaiChoice<'a>>,
    #[serde(default)]
    usage: Option<OpenaiUsage>,
}

#[derive(Deserialize)]
struct OpenaiChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<OpenaiDelta<'a>>,
}

#[derive(Deserialize)]
struct OpenaiDelta<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AnthropicEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    delta: Option<AnthropicDelta<'a>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicDelta<'a> {
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
}

/// Incremental SSE parser: consumes complete lines from the front of the decoded body.
struct Sse {
    api: Api,
    done: bool,
    chunks: u64,
    usage_tokens: Option<u64>,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
}

impl Sse {
    fn new(api: Api) -> Self {
        Self {
            api,
            done: false,
            chunks: 0,
            usage_tokens: None,
            first_token: None,
            last_token: None,
        }
    }

    fn feed(
        &mut self,
        body: &mut Vec<u8>,
        now: Instant,
        gaps: &mut Vec<u64>,
    ) -> Result<(), ErrorClass> {
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &body[start..]) {
            let line = &body[start..start + nl];
            start += nl + 1;
            self.line(line, now, gaps)?;
        }
        body.drain(..start);
        Ok(())
    }

    /// At end of stream: a last line without its newline still counts.
    fn finish(
        &mut self,
        body: &mut Vec<u8>,
        now: Instant,
        gaps: &mut Vec<u64>,
    ) -> Result<(), ErrorClass> {
        self.feed(body, now, gaps)?;
        if !body.is_empty() {
            let line = std::mem::take(body);
            self.line(&line, now, gaps)?;
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], now: Instant, gaps: &mut Vec<u64>) -> Result<(), ErrorClass> {
        let line = trim(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return Ok(());
        };
        let data = trim(data);
        if data.is_empty() {
            return Ok(());
        }
        let content = match self.api {
            Api::Openai => {
                if data == b"[DONE]" {
                    self.done = true;
                    return Ok(());
                }
                let chunk: OpenaiChunk<'_> =
                    serde_json::from_slice(data).map_err(|_| ErrorClass::Malformed)?;
                if let Some(t) = chunk.usage.and_then(|u| u.completion_tokens) {
                    self.usage_tokens = Some(t);
                }
                chunk
                    .choices
                    .first()
                    .and_then(|c| c.delta.as_ref())
                    .and_then(|d| d.content.as_ref())
                    .is_some_and(|c| !c.is_empty())
            }
            Api::Anthropic => {
                let ev: AnthropicEvent<'_> =
                    serde_json::from_slice(data).map_err(|_| ErrorClass::Malformed)?;
                match ev.kind.as_ref() {
                    "content_block_delta" => ev
                        .delta
                        .as_ref()
                        .and_then(|d| d.text.as_ref())
                        .is_some_and(|t| !t.is_empty()),
                    "message_delta" => {
                        if let Some(t) = ev.usage.and_then(|u| u.output_tokens) {
                            self.usage_tokens = Some(t);
                        }
                        false
                    }
                    "message_stop" => {
                        self.done = true;
                        false
                    }
                    "error" => return Err(ErrorClass::StreamCut),
                    _ => false,
                }
            }
        };
        if content {
            self.chunks += 1;
            if self.first_token.is_none() {
                self.first_token = Some(now);
            }
            if let Some(last) = self.last_token {
                gaps.push(now.duration_since(last).as_micros() as u64);
            }
            self.last_token = Some(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::load::stats::Recorder;

    #[test]
    fn the_generators_own_limits_are_rig_refusals() {
        let os = std::io::Error::from_raw_os_error;
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
        ] {
            assert_eq!(connect_class(&os(code)), ErrorClass::RigRefused, "{code}");
        }
        for code in [libc::ECONNREFUSED, libc::ETIMEDOUT, libc::EHOSTUNREACH] {
            assert_eq!(connect_class(&os(code)), ErrorClass::Connect, "{code}");
        }
        let no_os = std::io::Error::other("no errno");
        assert_eq!(connect_class(&no_os), ErrorClass::Connect);
    }

    #[test]
    fn rig_refusals_are_not_target_errors() {
        let mut r = Recorder::new();
        r.error(ErrorClass::RigRefused);
        r.error(ErrorClass::Connect);
        assert_eq!(r.total.rig_refused, 1);
        assert_eq!(r.interval.rig_refused, 1);
        assert_eq!(r.total.errors.total(), 1);
        assert_eq!(r.total.errors.connect, 1);
        assert_eq!(r.total.requests(), 1);
    }

    #[test]
    fn head_parsing() {
        let h =
            parse_head(b"HTTP/1.1 429 Too Many\r\nContent-Length: 12\r\nConnection: close\r\n\r\n")
                .unwrap();
        assert_eq!(h.status, 429);
        assert_eq!(h.content_length, Some(12));
        assert!(h.close);
        let h = parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n").unwrap();
        assert!(h.chunked && !h.close);
        assert!(parse_head(b"SMTP nope\r\n\r\n").is_none());
        // A target's own overhead figure, in its unit; "None" (LiteLLM without one) is none.
        let h = parse_head(b"HTTP/1.1 200 OK\r\nX-Gateway-Overhead-Us: 17\r\n\r\n").unwrap();
        assert_eq!(h.claimed_us, Some(17));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nx-litellm-overhead-duration-ms: 2.5004\r\n\r\n")
            .unwrap();
        assert_eq!(h.claimed_us, Some(2500));
        let h =
            parse_head(b"HTTP/1.1 200 OK\r\nx-litellm-overhead-duration-ms: None\r\n\r\n").unwrap();
        assert_eq!(h.claimed_us, None);
    }

    #[test]
    fn chunked_decoding_across_reads() {
        let whole = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for split in 1..whole.len() {
            let mut framing = Framing::Chunked(ChunkState::Size);
            let mut body = Vec::new();
            let mut pos = 0;
            let mut buf = whole[..split].to_vec();
            let first = decode(&buf, &mut pos, &mut framing, &mut body)
                .ok()
                .unwrap();
            assert!(!first || split == whole.len());
            buf.extend_from_slice(&whole[split..]);
            let done = decode(&buf, &mut pos, &mut framing, &mut body)
                .ok()
                .unwrap();
            assert!(done, "split {split}");
            assert_eq!(body, b"hello world");
        }
    }

    #[test]
    fn sse_counts_openai_tokens() {
        let mut sse = Sse::new(Api::Openai);
        let mut gaps = Vec::new();
        let t = Instant::now();
        let mut body = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"tok \"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"con".to_vec();
        sse.feed(&mut body, t, &mut gaps).unwrap();
        assert_eq!(sse.chunks, 1);
        body.extend_from_slice(b"tent\":\"tok \"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":7}}\n\ndata: [DONE]\n\n");
        sse.feed(
            &mut body,
            t + std::time::Duration::from_millis(3),
            &mut gaps,
        )
        .unwrap();
        assert_eq!(sse.chunks, 2);
        assert_eq!(sse.usage_tokens, Some(7));
        assert!(sse.done);
        assert_eq!(gaps, vec![3000]);
        let mut bad = b"data: {nope\n".to_vec();
        assert!(sse.feed(&mut bad, t, &mut gaps).is_err());
    }

    #[test]
    fn sse_counts_anthropic_tokens() {
        let mut sse = Sse::new(Api::Anthropic);
        let mut gaps = Vec::new();
        let mut body = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok \"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":1}}\n\ndata: {\"type\":\"message_stop\"}\n\n".to_vec();
        sse.feed(&mut body, Instant::now(), &mut gaps).unwrap();
        assert_eq!(sse.chunks, 1);
        assert_eq!(sse.usage_tokens, Some(1));
        assert!(sse.done);
    }

    #[test]
    fn bodies_are_validated() {
        assert_eq!(
            parse_body(
                Api::Openai,
                br#"{"choices":[],"usage":{"completion_tokens":3}}"#
            ),
            Some(3)
        );
        assert_eq!(parse_body(Api::Openai, br#"{"id":"x"}"#), None);
        assert_eq!(parse_body(Api::Openai, br#"{"choices":"#), None);
        assert_eq!(
            parse_body(
                Api::Anthropic,
                br#"{"content":[],"usage":{"output_tokens":4}}"#
            ),
            Some(4)
        );
    }
}
