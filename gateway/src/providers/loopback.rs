//! Answers in process with a fixed-size OpenAI-shaped reply (no upstream), so a
//! benchmark through it measures the gateway's own cost.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{ByteStream, ChatRequest, Provider};
use crate::error::GatewayError;

/// The word each output token is.
const TOKEN: &str = "tok ";

/// The in-process provider.
pub struct LoopbackProvider {
    output_tokens: u32,
    content: String,
    next_id: AtomicU64,
}

impl LoopbackProvider {
    /// Every answer has `output_tokens` tokens.
    pub fn new(output_tokens: u32) -> Self {
        LoopbackProvider {
            output_tokens,
            content: TOKEN.repeat(output_tokens as usize),
            next_id: AtomicU64::new(0),
        }
    }

    fn head(out: &mut Vec<u8>, id: u64, object: &str, model: &str) {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = write!(
            out,
            r#"{{"id":"chatcmpl-loopback-{id}","object":"{object}","created":{created},"model":"#
        );
        let _ = serde_json::to_writer(&mut *out, model);
    }
}

/// A rough prompt token count: request bytes / 4.
fn prompt_tokens(body: &[u8]) -> usize {
    (body.len() / 4).max(1)
}

impl Provider for LoopbackProvider {
    async fn chat(&self, req: ChatRequest<'_>) -> Result<Bytes, GatewayError> {
        let mut out = Vec::with_capacity(320 + self.content.len());
        let id = self.next_id.fetch_add(1, Relaxed);
        Self::head(&mut out, id, "chat.completion", req.model);
        let p = prompt_tokens(&req.body);
        let n = self.output_tokens as usize;
        let _ = write!(
            out,
            r#","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":{p},"completion_tokens":{n},"total_tokens":{}}}}}"#,
            self.content,
            p + n
        );
        Ok(Bytes::from(out))
    }

    async fn chat_stream(&self, req: ChatRequest<'_>) -> Result<ByteStream, GatewayError> {
        let mut chunks = Vec::with_capacity(self.output_tokens as usize + 4);
        let id = self.next_id.fetch_add(1, Relaxed);
        let chunk = |choices: &str| {
            let mut out = Vec::with_capacity(200);
            out.extend_from_slice(b"data: ");
            Self::head(&mut out, id, "chat.completion.chunk", req.model);
            out.extend_from_slice(choices.as_bytes());
            out.extend_from_slice(b"}\n\n");
            Bytes::from(out)
        };
        chunks.push(chunk(
            r#","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#,
        ));
        let content = format!(
            r#","choices":[{{"index":0,"delta":{{"content":"{TOKEN}"}},"finish_reason":null}}]"#
        );
        for _ in 0..self.output_tokens {
            chunks.push(chunk(&content));
        }
        chunks.push(chunk(
            r#","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]"#,
        ));
        if req.include_usage {
            let p = prompt_tokens(&req.body);
            let n = self.output_tokens as usize;
            chunks.push(chunk(&format!(
                r#","choices":[],"usage":{{"prompt_tokens":{p},"completion_tokens":{n},"total_tokens":{}}}"#,
                p + n
            )));
        }
        chunks.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Ok(ByteStream::boxed(futures_util::stream::iter(
            chunks.into_iter().map(Ok),
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answer_is_valid_openai_json() {
        let p = LoopbackProvider::new(3);
        let h = http::HeaderMap::new();
        let req = ChatRequest {
            body: Bytes::from_static(b"{}"),
            model: "m\"x",
            include_usage: false,
            headers: &h,
        };
        let b = p.chat(req).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["model"], "m\"x");
        assert_eq!(v["choices"][0]["message"]["content"], "tok tok tok ");
        assert_eq!(v["usage"]["completion_tokens"], 3);
    }
}
