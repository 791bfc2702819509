//! Any OpenAI-compatible API (OpenAI, vLLM, the mock): the request bytes go upstream
//! as they came, and the answer comes back as it is, chunk by chunk when streaming.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};

use super::{key_header, ByteStream, ChatRequest, Provider, Target, Upstream};
use crate::config::ConfigError;
use crate::error::GatewayError;

/// An OpenAI-compatible upstream.
pub struct OpenAiProvider {
    upstream: Arc<Upstream>,
    chat_uri: Target,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl OpenAiProvider {
    /// `base_url` includes the API version, e.g. `http://127.0.0.1:9000/v1`.
    pub fn new(
        upstream: Arc<Upstream>,
        base_url: &str,
        api_key: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let mut headers = Vec::new();
        if let Some(k) = api_key {
            headers.push((AUTHORIZATION, key_header(&format!("Bearer {k}"))?));
        }
        let chat_uri = upstream.target(base_url, "/chat/completions")?;
        Ok(OpenAiProvider {
            upstream,
            chat_uri,
            headers,
        })
    }
}

impl Provider for OpenAiProvider {
    async fn chat(&self, req: ChatRequest<'_>) -> Result<Bytes, GatewayError> {
        self.upstream
            .call(&self.chat_uri, &self.headers, req.headers, req.body)
            .await
    }

    async fn chat_stream(&self, req: ChatRequest<'_>) -> Result<ByteStream, GatewayError> {
        self.upstream
            .open_stream(&self.chat_uri, &self.headers, req.headers, req.body)
            .await
    }
}
