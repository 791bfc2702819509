//! Anthropic's Messages API: OpenAI chat calls are translated to Messages requests
//! and the answers (SSE included) back; `/v1/messages` calls pass through untouched.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::{key_header, ByteStream, ChatRequest, Provider, Target, Upstream};
use crate::config::ConfigError;
use crate::error::GatewayError;
use crate::translate::{
    anthropic_to_openai_response, openai_to_anthropic_request, AnthropicToOpenAiStream, Translated,
};

/// The API version header value the translation speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An Anthropic Messages upstream.
pub struct AnthropicProvider {
    upstream: Arc<Upstream>,
    messages_uri: Target,
    headers: Vec<(HeaderName, HeaderValue)>,
    default_max_tokens: u32,
}

impl AnthropicProvider {
    /// `base_url` without the version, e.g. `https://api.anthropic.com`.
    pub fn new(
        upstream: Arc<Upstream>,
        base_url: &str,
        api_key: Option<&str>,
        default_max_tokens: u32,
    ) -> Result<Self, ConfigError> {
        let mut headers = vec![(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        )];
        if let Some(k) = api_key {
            headers.push((HeaderName::from_static("x-api-key"), key_header(k)?));
        }
        let messages_uri = upstream.target(base_url, "/v1/messages")?;
        Ok(AnthropicProvider {
            upstream,
            messages_uri,
            headers,
            default_max_tokens,
        })
    }

    fn passthrough_headers(&self, client: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = self.headers.clone();
        for name in ["anthropic-version", "anthropic-beta"] {
            if let Some(v) = client.get(name) {
                h.retain(|(k, _)| k.as_str() != name);
                h.push((HeaderName::from_static(name), v.clone()));
            }
        }
        h
    }

    /// Forwards an Anthropic Messages request (model already rewritten) as it is.
    pub async fn messages(&self, body: Bytes, client: &HeaderMap) -> Result<Bytes, GatewayError> {
        let h = self.passthrough_headers(client);
        self.upstream
            .call(&self.messages_uri, &h, client, body)
            .await
    }

    /// Forwards a streaming Anthropic Messages request; events pass through as they come.
    pub async fn messages_stream(
        &self,
        body: Bytes,
        client: &HeaderMap,
    ) -> Result<ByteStream, GatewayError> {
        let h = self.passthrough_headers(client);
        self.upstream
            .open_stream(&self.messages_uri, &h, client, body)
            .await
    }
}

impl Provider for AnthropicProvider {
    async fn chat(&self, req: ChatRequest<'_>) -> Result<Bytes, GatewayError> {
        let body =
            openai_to_anthropic_request(&req.body, req.model, self.default_max_tokens, false)?;
        let answer = self
            .upstream
            .call(&self.messages_uri, &self.headers, req.headers, body.into())
            .await?;
        anthropic_to_openai_response(&answer)
    }

    async fn chat_stream(&self, req: ChatRequest<'_>) -> Result<ByteStream, GatewayError> {
        let body =
            openai_to_anthropic_request(&req.body, req.model, self.default_max_tokens, true)?;
        let s = self
            .upstream
            .open_stream(&self.messages_uri, &self.headers, req.headers, body.into())
            .await?;
        Ok(ByteStream::boxed(Translated::new(
            s,
            AnthropicToOpenAiStream::new(req.model, req.include_usage),
        )))
    }
}
