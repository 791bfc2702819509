//! Answer bodies, spliced from static byte templates (no JSON serializer on the hot path).
//!
//! Per request only the id, timestamp, model, token counts and the repeated `"tok "`
//! content are written between fixed pieces; streamed chunks are built once per request
//! and the identical content chunk is shared (`Bytes::clone`) for every token.

use bytes::Bytes;

/// One output token.
pub const TOKEN: &[u8] = b"tok ";

/// Which finish the answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// All requested tokens were produced.
    Stop,
    /// The request's max_tokens cut the answer short.
    Length,
}

/// What every answer of one request shares.
#[derive(Debug)]
pub struct Answer<'a> {
    /// Per-process request sequence number, used in the id.
    pub seq: u64,
    /// Unix time in seconds.
    pub created: u64,
    /// Model name as the request gave it.
    pub model: &'a str,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub output_tokens: u32,
    /// Finish reason.
    pub finish: Finish,
}

/// Appends a JSON string literal (with quotes), escaping only when needed.
fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, s);
    } else {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    }
}

fn push_int(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn push_tokens(buf: &mut Vec<u8>, n: u32) {
    for _ in 0..n {
        buf.extend_from_slice(TOKEN);
    }
}

impl Answer<'_> {
    fn push_openai_id(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"\"chatcmpl-mock");
        push_int(buf, self.seq);
        buf.push(b'"');
    }

    fn push_anthropic_id(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"\"msg_mock");
        push_int(buf, self.seq);
        buf.push(b'"');
    }

    fn push_openai_usage(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"{\"prompt_tokens\":");
        push_int(buf, self.prompt_tokens);
        buf.extend_from_slice(b",\"completion_tokens\":");
        push_int(buf, u64::from(self.output_tokens));
        buf.extend_from_slice(b",\"total_tokens\":");
        push_int(buf, self.prompt_tokens + u64::from(self.output_tokens));
        buf.push(b'}');
    }

    fn openai_finish(&self) -> &'static [u8] {
        match self.finish {
            Finish::Stop => b"\"stop\"",
            Finish::Length => b"\"length\"",
        }
    }

    fn anthropic_stop(&self) -> &'static [u8] {
        match self.finish {
            Finish::Stop => b"\"end_turn\"",
            Finish::Length => b"\"max_tokens\"",
        }
    }

    /// OpenAI `chat.completion` body.
    pub fn openai_completion(&self) -> Bytes {
        let mut b =
            Vec::with_capacity(400 + self.model.len() + TOKEN.len() * self.output_tokens as usize);
        b.extend_from_slice(b"{\"id\":");
        self.push_openai_id(&mut b);
        b.extend_from_slice(b",\"object\":\"chat.completion\",\"created\":");
        push_int(&mut b, self.created);
        b.extend_from_slice(b",\"model\":");
        push_json_str(&mut b, self.model);
        b.extend_from_slice(
            b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"",
        );
        push_tokens(&mut b, self.output_tokens);
        b.extend_from_slice(
            b"\",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":",
        );
        b.extend_from_slice(self.openai_finish());
        b.extend_from_slice(b"}],\"usage\":");
        self.push_openai_usage(&mut b);
        b.extend_from_slice(b",\"service_tier\":\"default\",\"system_fingerprint\":null}");
        Bytes::from(b)
    }

    /// Anthropic `message` body.
    pub fn anthropic_message(&self) -> Bytes {
        let mut b =
            Vec::with_capacity(300 + self.model.len() + TOKEN.len() * self.output_tokens as usize);
        b.extend_from_slice(b"{\"id\":");
        self.push_anthropic_id(&mut b);
        b.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        push_json_str(&mut b, self.model);
        b.extend_from_slice(b",\"content\":[{\"type\":\"text\",\"text\":\"");
        push_tokens(&mut b, self.output_tokens);
        b.extend_from_slice(b"\"}],\"stop_reason\":");
        b.extend_from_slice(self.anthropic_stop());
        b.extend_from_slice(b",\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
        push_int(&mut b, self.prompt_tokens);
        b.extend_from_slice(b",\"output_tokens\":");
        push_int(&mut b, u64::from(self.output_tokens));
        b.extend_from_slice(b"}}");
        Bytes::from(b)
    }

    /// OpenAI stream pieces: role chunk, one content chunk, and the tail (finish chunk,
    /// usage chunk when asked, `[DONE]`).
    pub fn openai_stream(&self, include_usage: bool) -> StreamParts {
        let mut prefix = Vec::with_capacity(200 + self.model.len());
        prefix.extend_from_slice(b"data: {\"id\":");
        self.push_openai_id(&mut prefix);
        prefix.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        push_int(&mut prefix, self.created);
        prefix.extend_from_slice(b",\"model\":");
        push_json_str(&mut prefix, self.model);
        prefix.extend_from_slice(b",\"service_tier\":\"default\",\"system_fingerprint\":null,");
        let usage_null: &[u8] = if include_usage {
            b",\"usage\":null"
        } else {
            b""
        };
        let chunk = |choice: &[u8]| {
            let mut c = Vec::with_capacity(prefix.len() + choice.len() + 40);
            c.extend_from_slice(&prefix);
            c.extend_from_slice(b"\"choices\":[{\"index\":0,");
            c.extend_from_slice(choice);
            c.extend_from_slice(b"}]");
            c.extend_from_slice(usage_null);
            c.extend_from_slice(b"}\n\n");
            c
        };
        let head = chunk(b"\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null");
        let token =
            chunk(b"\"delta\":{\"content\":\"tok \"},\"logprobs\":null,\"finish_reason\":null");
        let mut finish = b"\"delta\":{},\"logprobs\":null,\"finish_reason\":".to_vec();
        finish.extend_from_slice(self.openai_finish());
        let mut tail = chunk(&finish);
        if include_usage {
            tail.extend_from_slice(&prefix);
            tail.extend_from_slice(b"\"choices\":[],\"usage\":");
            self.push_openai_usage(&mut tail);
            tail.extend_from_slice(b"}\n\n");
        }
        tail.extend_from_slice(b"data: [DONE]\n\n");
        StreamParts {
            head: Bytes::from(head),
            token: Bytes::from(token),
            tail: Bytes::from(tail),
        }
    }

    /// Anthropic stream pieces: message_start + content_block_start + ping, one
    /// content_block_delta, and content_block_stop + message_delta + message_stop.
    pub fn anthropic_stream(&self) -> StreamParts {
        let mut head = Vec::with_capacity(400 + self.model.len());
        head.extend_from_slice(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":",
        );
        self.push_anthropic_id(&mut head);
        head.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        push_json_str(&mut head, self.model);
        head.extend_from_slice(
            b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":",
        );
        push_int(&mut head, self.prompt_tokens);
        head.extend_from_slice(b",\"output_tokens\":1}}}\n\n");
        head.extend_from_slice(
            b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        );
        head.extend_from_slice(b"event: ping\ndata: {\"type\":\"ping\"}\n\n");
        let mut tail = Vec::with_capacity(300);
        tail.extend_from_slice(
            b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        );
        tail.extend_from_slice(
            b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":",
        );
        tail.extend_from_slice(self.anthropic_stop());
        tail.extend_from_slice(b",\"stop_sequence\":null},\"usage\":{\"output_tokens\":");
        push_int(&mut tail, u64::from(self.output_tokens));
        tail.extend_from_slice(b"}}\n\n");
        tail.extend_from_slice(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        StreamParts {
            head: Bytes::from(head),
            token: Bytes::from_static(
                b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok \"}}\n\n",
            ),
            tail: Bytes::from(tail),
        }
    }
}

/// The three distinct pieces of a streamed answer.
#[derive(Debug, Clone)]
pub struct StreamParts {
    /// Sent first, right after the response head.
    pub head: Bytes,
    /// Sent once per output token.
    pub token: Bytes,
    /// Sent last.
    pub tail: Bytes,
}

/// Which API family an error body should imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

/// An error body in the given flavor (fields in the providers' order). `kind` is
/// OpenAI's `type`; Anthropic's type is derived from the status.
pub fn error_body(
    flavor: Flavor,
    status: u16,
    kind: &str,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Bytes {
    #[derive(serde::Serialize)]
    struct OpenAiError<'a> {
        error: OpenAiDetail<'a>,
    }
    #[derive(serde::Serialize)]
    struct OpenAiDetail<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        param: Option<&'a str>,
        code: Option<&'a str>,
    }
    #[derive(serde::Serialize)]
    struct AnthropicError<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        error: AnthropicDetail<'a>,
    }
    #[derive(serde::Serialize)]
    struct AnthropicDetail<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        message: &'a str,
    }
    let body = match flavor {
        Flavor::OpenAi => serde_json::to_vec(&OpenAiError {
            error: OpenAiDetail {
                message,
                kind,
                param,
                code,
            },
        }),
        Flavor::Anthropic => serde_json::to_vec(&AnthropicError {
            kind: "error",
            error: AnthropicDetail {
                kind: anthropic_error_type(status),
                message,
            },
        }),
    };
    // Serializing plain strings cannot fail.
    Bytes::from(body.unwrap_or_default())
}

fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// Static 429 bodies (fault injection can be frequent, so these are not rebuilt).
pub fn rate_limited_body(flavor: Flavor) -> Bytes {
    match flavor {
        Flavor::OpenAi => Bytes::from_static(
            b"{\"error\":{\"message\":\"Rate limit reached (injected by mock-upstream x-mock-429-rate)\",\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}",
        ),
        Flavor::Anthropic => Bytes::from_static(
            b"{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Rate limit reached (injected by mock-upstream x-mock-429-rate)\"}}",
        ),
    }
}

/// Static 500 bodies.
pub fn server_error_body(flavor: Flavor) -> Bytes {
    match flavor {
        Flavor::OpenAi => Bytes::from_static(
            b"{\"error\":{\"message\":\"The server had an error while processing your request (injected by mock-upstream x-mock-error-rate)\",\"type\":\"server_error\",\"param\":null,\"code\":null}}",
        ),
        Flavor::Anthropic => Bytes::from_static(
            b"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error (injected by mock-upstream x-mock-error-rate)\"}}",
        ),
    }
}

/// `GET /v1/models` body.
pub fn models_body(models: &[String]) -> Bytes {
    let data: Vec<_> = models
        .iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "mock-upstream"}))
        .collect();
    Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn answer(model: &str) -> Answer<'_> {
        Answer {
            seq: 7,
            created: 1_700_000_000,
            model,
            prompt_tokens: 4,
            output_tokens: 3,
            finish: Finish::Stop,
        }
    }

    #[test]
    fn completion_is_valid_json() {
        let v: Value = serde_json::from_slice(&answer("a\"b").openai_completion()).unwrap();
        assert_eq!(v["model"], "a\"b");
        assert_eq!(v["id"], "chatcmpl-mock7");
        assert_eq!(v["choices"][0]["message"]["content"], "tok tok tok ");
        assert_eq!(v["usage"]["total_tokens"], 7);
        let v: Value = serde_json::from_slice(&answer("m").anthropic_message()).unwrap();
        assert_eq!(v["content"][0]["text"], "tok tok tok ");
        assert_eq!(v["usage"]["input_tokens"], 4);
    }

    #[test]
    fn stream_chunks_are_valid_json() {
        let parts = answer("m").openai_stream(true);
        let all = [parts.head, parts.token, parts.tail].concat();
        let text = std::str::from_utf8(&all).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 5);
        for e in &events[..4] {
            let _: Value = serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap();
        }
        assert_eq!(events[4], "data: [DONE]");
        let parts = answer("m").anthropic_stream();
        let all = [parts.head, parts.token, parts.tail].concat();
        for e in std::str::from_utf8(&all)
            .unwrap()
            .split("\n\n")
            .filter(|e| !e.is_empty())
        {
            let (event, data) = e.split_once('\n').unwrap();
            let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(event.strip_prefix("event: ").unwrap(), v["type"]);
        }
    }

    #[test]
    fn static_error_bodies_are_valid_json() {
        for f in [Flavor::OpenAi, Flavor::Anthropic] {
            let _: Value = serde_json::from_slice(&rate_limited_body(f)).unwrap();
            let _: Value = serde_json::from_slice(&server_error_body(f)).unwrap();
        }
    }
}
