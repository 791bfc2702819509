//! Translation between OpenAI Chat Completions and Anthropic Messages, both ways,
//! for requests, answers, and SSE streams. Text content only: tool calls and images
//! are refused with a 400 that names the field.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::GatewayError;
use crate::fastpath::parse_json;
use crate::providers::ByteStream;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn protocol(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::UpstreamProtocol(e.to_string())
}

/// `stop` in an OpenAI request: one string or several.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// An OpenAI chat request, as far as translation needs it.
#[derive(Deserialize)]
pub struct OaiRequest {
    pub model: String,
    pub messages: Vec<OaiMessage>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub tools: Option<Value>,
}

/// One OpenAI message.
#[derive(Deserialize)]
pub struct OaiMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// Message content in either API: a string or typed blocks.
#[derive(Deserialize, Serialize, Clone)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// A content block / part (`{"type":"text","text":…}`).
#[derive(Deserialize, Serialize, Clone)]
pub struct Block {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// An Anthropic Messages request.
#[derive(Deserialize, Serialize)]
pub struct AnthRequest {
    pub model: String,
    pub messages: Vec<AnthMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    pub max_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
}

/// One Anthropic message.
#[derive(Deserialize, Serialize)]
pub struct AnthMessage {
    pub role: String,
    pub content: Content,
}

/// Joins the text of `content`; a non-text block is a 400 naming its path.
fn content_text(content: &Content, path: &str) -> Result<String, GatewayError> {
    match content {
        Content::Text(t) => Ok(t.clone()),
        Content::Blocks(blocks) => {
            let mut out = String::new();
            for (j, b) in blocks.iter().enumerate() {
                if b.kind != "text" {
                    return Err(GatewayError::invalid_field(
                        &format!("{path}[{j}].type"),
                        format!(
                            "unsupported content type `{}` (only `text` is translated)",
                            b.kind
                        ),
                    ));
                }
                out.push_str(b.text.as_deref().unwrap_or(""));
            }
            Ok(out)
        }
    }
}

/// OpenAI chat request → Anthropic Messages request (model already the upstream's).
pub fn openai_to_anthropic_request(
    body: &[u8],
    model: &str,
    default_max_tokens: u32,
    stream: bool,
) -> Result<Vec<u8>, GatewayError> {
    let req: OaiRequest = parse_json(body)?;
    if req.tools.is_some() {
        return Err(GatewayError::invalid_field(
            "tools",
            "tool calls are not translated for an Anthropic provider",
        ));
    }
    let mut system = Vec::new();
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let path = format!("messages[{i}].content");
        match m.role.as_str() {
            "system" | "developer" => {
                if let Some(c) = &m.content {
                    system.push(content_text(c, &path)?);
                }
            }
            "user" | "assistant" => {
                let content = match &m.content {
                    Some(Content::Text(t)) => Content::Text(t.clone()),
                    Some(c @ Content::Blocks(_)) => {
                        content_text(c, &path)?;
                        c.clone()
                    }
                    None => Content::Text(String::new()),
                };
                messages.push(AnthMessage {
                    role: m.role.clone(),
                    content,
                });
            }
            other => {
                return Err(GatewayError::invalid_field(
                    &format!("messages[{i}].role"),
                    format!("role `{other}` cannot be translated for an Anthropic provider"),
                ))
            }
        }
    }
    let out = AnthRequest {
        model: model.to_string(),
        messages,
        system: (!system.is_empty()).then(|| Content::Text(system.join("\n\n"))),
        max_tokens: req
            .max_completion_tokens
            .or(req.max_tokens)
            .unwrap_or(default_max_tokens),
        stop_sequences: req.stop.map(|s| match s {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }),
        // OpenAI allows 0..2, Anthropic 0..1.
        temperature: req.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p,
        top_k: None,
        stream: stream.then_some(true),
        metadata: req.user.map(|u| json!({ "user_id": u })),
        tools: None,
    };
    serde_json::to_vec(&out).map_err(|e| GatewayError::InvalidRequest {
        message: e.to_string(),
        param: None,
    })
}

/// Anthropic Messages request → OpenAI chat request (model already the upstream's).
pub fn anthropic_to_openai_request(
    body: &[u8],
    model: &str,
) -> Result<(Vec<u8>, bool), GatewayError> {
    let req: AnthRequest = parse_json(body)?;
    if req.tools.is_some() {
        return Err(GatewayError::invalid_field(
            "tools",
            "tool use is not translated for an OpenAI-shaped provider",
        ));
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(s) = &req.system {
        messages.push(json!({"role": "system", "content": content_text(s, "system")?}));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if m.role != "user" && m.role != "assistant" {
            return Err(GatewayError::invalid_field(
                &format!("messages[{i}].role"),
                format!("role `{}` must be `user` or `assistant`", m.role),
            ));
        }
        let text = content_text(&m.content, &format!("messages[{i}].content"))?;
        messages.push(json!({"role": m.role, "content": text}));
    }
    let stream = req.stream.unwrap_or(false);
    let mut out = json!({
        "model": model,
        "messages": messages,
        "max_tokens": req.max_tokens,
    });
    if let Some(s) = req.stop_sequences {
        out["stop"] = json!(s);
    }
    if let Some(t) = req.temperature {
        out["temperature"] = json!(t);
    }
    if let Some(p) = req.top_p {
        out["top_p"] = json!(p);
    }
    if stream {
        out["stream"] = json!(true);
        out["stream_options"] = json!({"include_usage": true});
    }
    let bytes = serde_json::to_vec(&out).map_err(|e| GatewayError::InvalidRequest {
        message: e.to_string(),
        param: None,
    })?;
    Ok((bytes, stream))
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
struct AnthUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct AnthResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: AnthUsage,
}

/// Anthropic Messages answer → OpenAI `chat.completion`.
pub fn anthropic_to_openai_response(body: &[u8]) -> Result<Bytes, GatewayError> {
    let r: AnthResponse = serde_json::from_slice(body).map_err(protocol)?;
    let text: String = r
        .content
        .iter()
        .filter(|b| b.kind == "text")
        .filter_map(|b| b.text.as_deref())
        .collect();
    let (i, o) = (
        r.usage.input_tokens.unwrap_or(0),
        r.usage.output_tokens.unwrap_or(0),
    );
    let out = json!({
        "id": r.id,
        "object": "chat.completion",
        "created": now_secs(),
        "model": r.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason(r.stop_reason.as_deref().unwrap_or("end_turn")),
        }],
        "usage": {"prompt_tokens": i, "completion_tokens": o, "total_tokens": i + o},
    });
    serde_json::to_vec(&out).map(Bytes::from).map_err(protocol)
}

#[derive(Deserialize, Default, Clone, Copy)]
struct OaiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Deserialize)]
struct OaiRespMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct OaiChoice {
    #[serde(default)]
    message: Option<OaiRespMessage>,
    #[serde(default)]
    delta: Option<OaiRespMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct OaiResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<OaiChoice>,
    #[serde(default)]
    usage: Option<OaiUsage>,
}

/// OpenAI `chat.completion` → Anthropic Messages answer.
pub fn openai_to_anthropic_response(body: &[u8]) -> Result<Bytes, GatewayError> {
    let r: OaiResponse = serde_json::from_slice(body).map_err(protocol)?;
    let choice = r.choices.first();
    let text = choice
        .and_then(|c| c.message.as_ref())
        .and_then(|m| m.content.clone())
        .unwrap_or_default();
    let finish = choice
        .and_then(|c| c.finish_reason.as_deref())
        .unwrap_or("stop");
    let u = r.usage.unwrap_or_default();
    let out = json!({
        "id": r.id,
        "type": "message",
        "role": "assistant",
        "model": r.model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens},
    });
    serde_json::to_vec(&out).map(Bytes::from).map_err(protocol)
}

/// Turns one SSE `data:` payload into output SSE bytes.
pub trait SseTranslator: Send + Unpin + 'static {
    /// Handles one `data:` payload.
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>);
    /// Called once when the input ends.
    fn on_end(&mut self, out: &mut Vec<u8>);
}

/// A stream whose SSE events are translated line by line as they arrive.
pub struct Translated<T> {
    inner: ByteStream,
    partial: Vec<u8>,
    t: T,
    ended: bool,
}

impl<T: SseTranslator> Translated<T> {
    /// Wraps `inner`.
    pub fn new(inner: ByteStream, t: T) -> Self {
        Translated {
            inner,
            partial: Vec::new(),
            t,
            ended: false,
        }
    }

    fn line(t: &mut T, line: &[u8], out: &mut Vec<u8>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(d) = line.strip_prefix(b"data:") {
            let d = d.strip_prefix(b" ").unwrap_or(d);
            t.on_data(d, out);
        }
    }
}

impl<T: SseTranslator> Stream for Translated<T> {
    type Item = Result<Bytes, GatewayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let mut out = Vec::new();
                    this.partial.extend_from_slice(&chunk);
                    let mut start = 0;
                    while let Some(nl) = memchr::memchr(b'\n', &this.partial[start..]) {
                        Self::line(&mut this.t, &this.partial[start..start + nl], &mut out);
                        start += nl + 1;
                    }
                    this.partial.drain(..start);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Bytes::from(out))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    let mut out = Vec::new();
                    if !this.partial.is_empty() {
                        let rest = std::mem::take(&mut this.partial);
                        Self::line(&mut this.t, &rest, &mut out);
                    }
                    this.t.on_end(&mut out);
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Bytes::from(out))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn sse_data(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

fn sse_event(out: &mut Vec<u8>, name: &str, v: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    sse_data(out, v);
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: AnthUsage,
}

#[derive(Deserialize)]
struct TextDelta {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum AnthEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockDelta {
        delta: TextDelta,
    },
    MessageDelta {
        delta: MessageDelta,
        #[serde(default)]
        usage: AnthUsage,
    },
    MessageStop,
    Error {
        error: Value,
    },
    #[serde(other)]
    Other,
}

/// Anthropic SSE events → OpenAI `chat.completion.chunk` SSE.
pub struct AnthropicToOpenAiStream {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    input: u64,
    output: u64,
    done: bool,
}

impl AnthropicToOpenAiStream {
    /// `include_usage` mirrors the client's `stream_options.include_usage`.
    pub fn new(model: &str, include_usage: bool) -> Self {
        AnthropicToOpenAiStream {
            id: String::new(),
            model: model.to_string(),
            created: now_secs(),
            include_usage,
            input: 0,
            output: 0,
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        if self.include_usage {
            let u = json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [],
                "usage": {"prompt_tokens": self.input, "completion_tokens": self.output,
                          "total_tokens": self.input + self.output},
            });
            sse_data(out, &u);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

impl SseTranslator for AnthropicToOpenAiStream {
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Ok(ev) = serde_json::from_slice::<AnthEvent>(data) else {
            return;
        };
        match ev {
            AnthEvent::MessageStart { message } => {
                self.id = message.id;
                if !message.model.is_empty() {
                    self.model = message.model;
                }
                self.input = message.usage.input_tokens.unwrap_or(0);
                self.output = message.usage.output_tokens.unwrap_or(0);
                let c = self.chunk(json!({"role": "assistant", "content": ""}), None);
                sse_data(out, &c);
            }
            AnthEvent::ContentBlockDelta { delta } => {
                if let Some(t) = delta.text {
                    let c = self.chunk(json!({ "content": t }), None);
                    sse_data(out, &c);
                }
            }
            AnthEvent::MessageDelta { delta, usage } => {
                if let Some(o) = usage.output_tokens {
                    self.output = o;
                }
                if let Some(i) = usage.input_tokens {
                    self.input = self.input.max(i);
                }
                let reason = finish_reason(delta.stop_reason.as_deref().unwrap_or("end_turn"));
                let c = self.chunk(json!({}), Some(reason));
                sse_data(out, &c);
            }
            AnthEvent::MessageStop => self.finish(out),
            AnthEvent::Error { error } => {
                sse_data(out, &json!({ "error": error }));
                self.done = true;
            }
            AnthEvent::Other => {}
        }
    }

    fn on_end(&mut self, out: &mut Vec<u8>) {
        self.finish(out);
    }
}

#[derive(Deserialize)]
struct OaiChunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<OaiChoice>,
    #[serde(default)]
    usage: Option<OaiUsage>,
    #[serde(default)]
    error: Option<Value>,
}

/// OpenAI `chat.completion.chunk` SSE → Anthropic Messages SSE events.
pub struct OpenAiToAnthropicStream {
    model: String,
    started: bool,
    finish: Option<String>,
    input: u64,
    output: u64,
    done: bool,
}

impl OpenAiToAnthropicStream {
    /// `model` is what the answer reports until the upstream names one.
    pub fn new(model: &str) -> Self {
        OpenAiToAnthropicStream {
            model: model.to_string(),
            started: false,
            finish: None,
            input: 0,
            output: 0,
            done: false,
        }
    }

    fn start(&mut self, id: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = if id.is_empty() { "msg_gateway" } else { id };
        sse_event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
        sse_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        self.start("", out);
        sse_event(
            out,
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": 0}),
        );
        let reason = stop_reason(self.finish.as_deref().unwrap_or("stop"));
        sse_event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": null},
                    "usage": {"input_tokens": self.input, "output_tokens": self.output}}),
        );
        sse_event(out, "message_stop", &json!({"type": "message_stop"}));
    }
}

impl SseTranslator for OpenAiToAnthropicStream {
    fn on_data(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if data.trim_ascii() == b"[DONE]" {
            self.close(out);
            return;
        }
        let Ok(c) = serde_json::from_slice::<OaiChunk>(data) else {
            return;
        };
        if let Some(e) = c.error {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("upstream error")
                .to_string();
            sse_event(
                out,
                "error",
                &json!({"type": "error", "error": {"type": "api_error", "message": message}}),
            );
            self.done = true;
            return;
        }
        if let Some(m) = c.model.filter(|m| !m.is_empty()) {
            if !self.started {
                self.model = m;
            }
        }
        self.start(c.id.as_deref().unwrap_or(""), out);
        for ch in &c.choices {
            if let Some(t) = ch.delta.as_ref().and_then(|d| d.content.as_deref()) {
                if !t.is_empty() {
                    self.output += u64::from(c.usage.is_none());
                    sse_event(
                        out,
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": t}}),
                    );
                }
            }
            if let Some(f) = &ch.finish_reason {
                self.finish = Some(f.clone());
            }
        }
        if let Some(u) = c.usage {
            self.input = u.prompt_tokens;
            self.output = u.completion_tokens;
        }
    }

    fn on_end(&mut self, out: &mut Vec<u8>) {
        self.close(out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn openai_request_to_anthropic() {
        let body = br#"{"model":"x","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi"}]}],
            "stop":"END","temperature":1.5}"#;
        let out = openai_to_anthropic_request(body, "claude-x", 77, true).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "claude-x");
        assert_eq!(v["system"], "be brief");
        assert_eq!(v["max_tokens"], 77);
        assert_eq!(v["stop_sequences"], json!(["END"]));
        assert_eq!(v["temperature"], 1.0);
        assert_eq!(v["stream"], true);
        assert_eq!(v["messages"][0]["content"][0]["text"], "hi");
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn tools_are_refused_both_ways() {
        let body = br#"{"model":"x","messages":[{"role":"user","content":"hi"}],"tools":[]}"#;
        let e = openai_to_anthropic_request(body, "m", 1, false).unwrap_err();
        assert!(
            matches!(e, GatewayError::InvalidRequest { param: Some(ref p), .. } if p == "tools")
        );
        let body = br#"{"model":"x","max_tokens":1,"messages":[{"role":"user","content":"hi"}],"tools":[]}"#;
        let e = anthropic_to_openai_request(body, "m").unwrap_err();
        assert!(e.to_string().contains("tools"), "{e}");
    }

    #[test]
    fn non_text_part_is_named() {
        let body =
            br#"{"model":"x","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#;
        let e = openai_to_anthropic_request(body, "m", 1, false).unwrap_err();
        assert!(e.to_string().contains("messages[0].content[0].type"), "{e}");
    }

    #[test]
    fn anthropic_response_to_openai() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"c",
            "content":[{"type":"text","text":"hello"}],"stop_reason":"max_tokens",
            "usage":{"input_tokens":3,"output_tokens":4}}"#;
        let v: Value =
            serde_json::from_slice(&anthropic_to_openai_response(body).unwrap()).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hello");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["total_tokens"], 7);
    }

    #[test]
    fn anthropic_request_roundtrip_to_openai() {
        let body = br#"{"model":"m","max_tokens":9,"system":"sys","stream":true,
            "stop_sequences":["S"],"messages":[{"role":"user","content":"hey"}]}"#;
        let (out, stream) = anthropic_to_openai_request(body, "up").unwrap();
        assert!(stream);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["messages"][0], json!({"role":"system","content":"sys"}));
        assert_eq!(v["messages"][1]["content"], "hey");
        assert_eq!(v["stop"], json!(["S"]));
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "up");
    }

    #[test]
    fn anthropic_sse_to_openai() {
        let mut t = AnthropicToOpenAiStream::new("m", true);
        let mut out = Vec::new();
        for d in [
            r#"{"type":"message_start","message":{"id":"msg_1","model":"c","usage":{"input_tokens":5,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#,
            r#"{"type":"message_stop"}"#,
        ] {
            t.on_data(d.as_bytes(), &mut out);
        }
        t.on_end(&mut out);
        let text = String::from_utf8(out).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|s| !s.is_empty()).collect();
        assert_eq!(events.len(), 5, "{text}");
        assert!(events[0].contains(r#""role":"assistant""#));
        assert!(events[1].contains(r#""content":"Hi""#));
        assert!(events[2].contains(r#""finish_reason":"stop""#));
        assert!(
            events[3].contains(r#""completion_tokens":2"#)
                && events[3].contains(r#""prompt_tokens":5"#)
        );
        assert_eq!(events[4], "data: [DONE]");
    }

    #[test]
    fn openai_sse_to_anthropic() {
        let mut t = OpenAiToAnthropicStream::new("m");
        let mut out = Vec::new();
        for d in [
            r#"{"id":"c1","model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{"content":"tok "}}]}"#,
            r#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
            "[DONE]",
        ] {
            t.on_data(d.as_bytes(), &mut out);
        }
        t.on_end(&mut out);
        let text = String::from_utf8(out).unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(text.contains(r#""stop_reason":"max_tokens""#));
        assert!(text.contains(r#""output_tokens":1"#));
        assert!(text.contains(r#""model":"up""#));
    }
}
