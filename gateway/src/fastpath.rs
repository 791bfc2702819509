//! Cheap request and response inspection for the pass-through path: parse only the
//! fields routing needs from the original bytes, splice the model name in place,
//! and read token counts out of answers and SSE streams without full parsing.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use bytes::Bytes;
use memchr::memmem;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::GatewayError;

/// The fields of an OpenAI chat request the gateway needs; the rest is skipped.
#[derive(Deserialize)]
pub struct ChatProbe<'a> {
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    pub messages: MessagesCheck,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
}

impl ChatProbe<'_> {
    /// Values no upstream accepts, refused before any upstream call.
    pub fn check(&self) -> Result<(), GatewayError> {
        for (name, v) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if v.is_some_and(|n| n <= 0) {
                return Err(GatewayError::invalid_field(
                    name,
                    "must be a positive integer",
                ));
            }
        }
        Ok(())
    }
}

/// `stream_options` of an OpenAI request.
#[derive(Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The fields of an Anthropic Messages request the pass-through path needs.
#[derive(Deserialize)]
pub struct MessagesProbe<'a> {
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    pub messages: MessagesCheck,
    pub max_tokens: u64,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub system: Option<IgnoredAny>,
}

/// Checks that `messages` is a non-empty array of objects that each have a string
/// `role`, without keeping anything.
pub struct MessagesCheck;

struct RoleCheck;

impl<'de> Deserialize<'de> for RoleCheck {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RoleCheck;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a role string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RoleCheck, E> {
                Ok(RoleCheck)
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
#[serde(rename = "message object")]
struct MessageCheck {
    #[allow(dead_code)]
    role: RoleCheck,
}

impl<'de> Deserialize<'de> for MessagesCheck {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MessagesCheck;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of message objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MessagesCheck, A::Error> {
                let mut n = 0usize;
                while seq.next_element::<MessageCheck>()?.is_some() {
                    n += 1;
                }
                if n == 0 {
                    return Err(de::Error::invalid_length(0, &"at least one message"));
                }
                Ok(MessagesCheck)
            }
        }
        d.deserialize_seq(V)
    }
}

impl MessagesProbe<'_> {
    /// Values no upstream accepts, refused before any upstream call.
    pub fn check(&self) -> Result<(), GatewayError> {
        if self.max_tokens == 0 {
            return Err(GatewayError::invalid_field(
                "max_tokens",
                "must be a positive integer",
            ));
        }
        Ok(())
    }
}

/// Checks what the typed parse cannot see in the fields it skips: the body is UTF-8,
/// and arrays/objects nest at most `max_depth` deep.
pub fn check_body(body: &[u8], max_depth: usize) -> Result<(), GatewayError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(GatewayError::InvalidRequest {
            message: format!(
                "invalid request body: not valid UTF-8 at byte {}",
                e.valid_up_to()
            ),
            param: None,
        });
    }
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    for &b in body {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(GatewayError::InvalidRequest {
                        message: format!(
                            "invalid request body: nested deeper than {max_depth} levels"
                        ),
                        param: None,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Puts the client's model name back into an answer: the first `"model"` value equal
/// to `from` becomes `to` (answers carry the top-level `model` before any other).
pub fn restore_model(body: Bytes, from: &str, to: &str) -> Bytes {
    let Some(i) = after_first_key(&body, b"\"model\"") else {
        return body;
    };
    let quoted = serde_json::to_string(from).unwrap_or_default();
    if !body[i..].starts_with(quoted.as_bytes()) {
        return body;
    }
    let to_q = serde_json::to_string(to).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + to_q.len());
    out.extend_from_slice(&body[..i]);
    out.extend_from_slice(to_q.as_bytes());
    out.extend_from_slice(&body[i + quoted.len()..]);
    Bytes::from(out)
}

/// Replaces every `"model":"from"` with `"model":"to"` in an SSE chunk (compact JSON,
/// as OpenAI and Anthropic send it); the chunk is returned as is when it has none.
pub fn restore_model_in_chunk(chunk: Bytes, from: &[u8], to: &[u8]) -> Bytes {
    let Some(first) = memmem::find(&chunk, from) else {
        return chunk;
    };
    let mut out = Vec::with_capacity(chunk.len() + to.len());
    out.extend_from_slice(&chunk[..first]);
    let mut rest = &chunk[first..];
    while let Some(at) = memmem::find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    Bytes::from(out)
}

/// Deserializes `T` from a JSON body; errors name the field's path. The common
/// (valid) case parses once without path tracking; only a failure is parsed again
/// with serde_path_to_error to find the path.
pub fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, GatewayError> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let v: T = serde_path_to_error::deserialize(&mut de).map_err(GatewayError::from_json)?;
    de.end().map_err(|e| GatewayError::InvalidRequest {
        message: format!("invalid request body: {e}"),
        param: None,
    })?;
    Ok(v)
}

/// Returns `body` with its top-level `model` replaced by `new_model`. When `model`
/// (as parsed) lies inside `body` (no escapes), the bytes are spliced in place;
/// otherwise the body is re-serialized.
pub fn replace_model(body: &Bytes, model: &str, new_model: &str) -> Result<Bytes, GatewayError> {
    let start = (model.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
    let end = start.wrapping_add(model.len());
    if start <= end && end <= body.len() && &body[start..end] == model.as_bytes() {
        let quoted = serde_json::to_string(new_model).unwrap_or_default();
        let inner = &quoted[1..quoted.len().saturating_sub(1)];
        let mut out = Vec::with_capacity(body.len() + inner.len());
        out.extend_from_slice(&body[..start]);
        out.extend_from_slice(inner.as_bytes());
        out.extend_from_slice(&body[end..]);
        return Ok(Bytes::from(out));
    }
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidRequest {
            message: format!("invalid request body: {e}"),
            param: None,
        })?;
    v.insert("model".into(), serde_json::Value::String(new_model.into()));
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| GatewayError::InvalidRequest {
            message: format!("invalid request body: {e}"),
            param: None,
        })
}

/// Token counts in either API's naming.
#[derive(Deserialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageProbe {
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
}

impl UsageProbe {
    /// Input tokens, whichever API named them.
    pub fn input(&self) -> Option<u64> {
        self.prompt_tokens.or(self.input_tokens)
    }
    /// Output tokens, whichever API named them.
    pub fn output(&self) -> Option<u64> {
        self.completion_tokens.or(self.output_tokens)
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// Position of the value of the key that ends at `key_end`: past `:` and whitespace.
fn value_after(body: &[u8], key_end: usize) -> Option<usize> {
    let i = skip_ws(body, key_end);
    if body.get(i) != Some(&b':') {
        return None;
    }
    Some(skip_ws(body, i + 1))
}

/// Position of the value of the LAST `"usage"` key. A forward (vectorised) search with
/// the shared finder: a stream line holds the key once or not at all.
fn after_usage_key(body: &[u8]) -> Option<usize> {
    let at = USAGE.find_iter(body).last()?;
    value_after(body, at + USAGE.needle().len())
}

/// Position of the value of the FIRST `"key"`.
fn after_first_key(body: &[u8], key: &[u8]) -> Option<usize> {
    let at = memmem::find(body, key)?;
    value_after(body, at + key.len())
}

/// Reads the last `"usage":{…}` object in a JSON text, parsing only that slice.
pub fn find_usage(body: &[u8]) -> Option<UsageProbe> {
    let i = after_usage_key(body)?;
    if body.get(i) != Some(&b'{') {
        return None;
    }
    let mut it = serde_json::Deserializer::from_slice(&body[i..]).into_iter::<UsageProbe>();
    it.next()?.ok()
}

/// Which SSE dialect a stream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseKind {
    /// `chat.completion.chunk` data lines.
    OpenAi,
    /// Anthropic Messages events.
    Anthropic,
}

/// Watches an SSE stream as it goes to the client: notices the first content
/// chunk (for TTFT), counts content chunks, and keeps the latest usage.
pub struct SseMeter {
    kind: SseKind,
    partial: Vec<u8>,
    pub content_chunks: u64,
    pub input: Option<u64>,
    pub output: Option<u64>,
}

impl SseMeter {
    /// A meter for one stream.
    pub fn new(kind: SseKind) -> Self {
        SseMeter {
            kind,
            partial: Vec::new(),
            content_chunks: 0,
            input: None,
            output: None,
        }
    }

    /// Observes one chunk; returns true when it held the stream's first content.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        let before = self.content_chunks;
        let mut rest = chunk;
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', rest) {
                Some(nl) => {
                    let mut line = std::mem::take(&mut self.partial);
                    line.extend_from_slice(&rest[..nl]);
                    self.line(&line);
                    rest = &rest[nl + 1..];
                }
                None => {
                    self.partial.extend_from_slice(rest);
                    return false;
                }
            }
        }
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            self.line(&rest[..nl]);
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            self.partial.extend_from_slice(rest);
        }
        before == 0 && self.content_chunks > 0
    }

    fn line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let has_content = match self.kind {
            SseKind::OpenAi => openai_has_content(data),
            SseKind::Anthropic => DELTA.find(data).is_some(),
        };
        if has_content {
            self.content_chunks += 1;
        }
        if let Some(u) = find_usage(data) {
            if let Some(i) = u.input() {
                self.input = Some(self.input.map_or(i, |o| o.max(i)));
            }
            if let Some(o) = u.output() {
                self.output = Some(o);
            }
        }
    }

    /// Output tokens: the usage report when there was one, else content chunks.
    pub fn output_tokens(&self) -> u64 {
        self.output.unwrap_or(self.content_chunks)
    }
}

// The searchers of the per-line scans, set up once (memmem::find sets one up per call,
// which cost more than the search on a token's line).
static CONTENT: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"content\""));
static USAGE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"usage\""));
static DELTA: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"content_block_delta\""));

fn openai_has_content(data: &[u8]) -> bool {
    let Some(at) = CONTENT.find(data) else {
        return false;
    };
    let i = skip_ws(data, at + 9);
    if data.get(i) != Some(&b':') {
        return false;
    }
    let i = skip_ws(data, i + 1);
    data.get(i) == Some(&b'"') && data.get(i + 1).is_some_and(|&c| c != b'"')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn probe_and_splice() {
        let body = Bytes::from_static(
            br#"{"messages":[{"role":"user","content":"hi"}],"model":"short","stream":true}"#,
        );
        let p: ChatProbe = parse_json(&body).unwrap();
        assert_eq!(p.stream, Some(true));
        let out = replace_model(&body, &p.model, "a-much-longer\"model").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "a-much-longer\"model");
        assert_eq!(v["messages"][0]["content"], "hi");
    }

    #[test]
    fn body_checks() {
        assert!(check_body(br#"{"a":[[1]],"b":"[[[[\"]]"}"#, 3).is_ok());
        let e = check_body(br#"{"a":[[[1]]]}"#, 3).unwrap_err().to_string();
        assert!(e.contains("deeper than 3"), "{e}");
        let e = check_body(b"{\"a\":\"\xff\"}", 64).unwrap_err().to_string();
        assert!(e.contains("UTF-8"), "{e}");
        let p: ChatProbe =
            parse_json(br#"{"model":"m","messages":[{"role":"u"}],"max_tokens":-5}"#).unwrap();
        assert!(p.check().unwrap_err().to_string().contains("max_tokens"));
    }

    #[test]
    fn model_is_restored() {
        let b = Bytes::from_static(br#"{"id":"x","model": "up-1","choices":[{"model":"up-1"}]}"#);
        let out = restore_model(b, "up-1", "mine");
        assert_eq!(
            &out[..],
            br#"{"id":"x","model": "mine","choices":[{"model":"up-1"}]}"#
        );
        let b = Bytes::from_static(br#"{"model":"other"}"#);
        assert_eq!(&restore_model(b.clone(), "up-1", "mine")[..], &b[..]);
        let c =
            Bytes::from_static(b"data: {\"model\":\"u\",\"x\":1}\n\ndata: {\"model\":\"u\"}\n\n");
        let out = restore_model_in_chunk(c, br#""model":"u""#, br#""model":"me""#);
        assert_eq!(
            &out[..],
            b"data: {\"model\":\"me\",\"x\":1}\n\ndata: {\"model\":\"me\"}\n\n"
        );
    }

    #[test]
    fn escaped_model_reserializes() {
        let body = Bytes::from_static(br#"{"model":"a\u0062","messages":[{"role":"user"}]}"#);
        let p: ChatProbe = parse_json(&body).unwrap();
        assert_eq!(p.model, "ab");
        let out = replace_model(&body, &p.model, "z").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "z");
    }

    #[test]
    fn errors_name_fields() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"model":"m"}"#, "messages"),
            (br#"{"messages":[{"role":"user"}]}"#, "model"),
            (br#"{"model":5,"messages":[]}"#, "model"),
            (
                br#"{"model":"m","messages":[{"content":"x"}]}"#,
                "messages[0]",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
                "stream",
            ),
            (br#"{"model":"m","messages":[]}"#, "messages"),
        ];
        for (body, field) in cases {
            let e = parse_json::<ChatProbe>(body).map(|_| ()).unwrap_err();
            let GatewayError::InvalidRequest { param, message } = e else {
                panic!("wrong error")
            };
            assert_eq!(param.as_deref(), Some(field), "{message}");
            assert!(message.contains(field), "{message}");
        }
        assert!(parse_json::<ChatProbe>(b"{not json").is_err());
    }

    #[test]
    fn usage_is_found() {
        let u = find_usage(
            br#"{"choices":[],"usage": {"prompt_tokens":3,"completion_tokens":7,"x":{"y":1}}}"#,
        )
        .unwrap();
        assert_eq!((u.input(), u.output()), (Some(3), Some(7)));
        assert!(find_usage(br#"{"usage":null}"#).is_none());
    }

    #[test]
    fn meter_handles_split_lines() {
        let mut m = SseMeter::new(SseKind::OpenAi);
        assert!(!m.feed(
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
        ));
        assert!(!m.feed(b"data: {\"choices\":[{\"delta\":{\"cont"));
        assert!(m.feed(
            b"ent\":\"tok \"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"tok \"}}]}\n\n"
        ));
        assert_eq!(m.output_tokens(), 2);
        m.feed(b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":9}}\n\ndata: [DONE]\n\n");
        assert_eq!((m.input, m.output_tokens()), (Some(4), 9));
        let mut a = SseMeter::new(SseKind::Anthropic);
        a.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n");
        assert!(a.feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n"));
        a.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":12}}\n\n");
        assert_eq!((a.input, a.output_tokens()), (Some(5), 12));
    }
}
