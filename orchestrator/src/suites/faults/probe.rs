//! Single requests sent beside the load, to see what a client gets back (status,
//! `retry-after`, how a stream ends), and the client-cancel check.

use std::time::Duration;

use futures_util::future::join_all;

use super::admin::MockAdmin;
use crate::load::request::{Api, Endpoint, RequestSpec};
use crate::load::result::{CancelResult, ProbeCounts};
use crate::load::LoadError;

/// A request as reqwest sends it.
#[derive(Clone)]
pub struct Probe {
    client: reqwest::Client,
    url: String,
    spec: RequestSpec,
}

impl Probe {
    pub fn new(spec: &RequestSpec, base_url: &str, timeout: Duration) -> Result<Self, LoadError> {
        let url = Endpoint::parse(base_url, spec.api)?.url;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .build()
            .map_err(|e| LoadError::Config {
                what: "probe client".into(),
                why: e.to_string(),
            })?;
        Ok(Self {
            client,
            url,
            spec: spec.clone(),
        })
    }

    fn request(&self) -> reqwest::RequestBuilder {
        let mut r = self.client.post(&self.url).json(&self.spec.body_json());
        if let Some(key) = &self.spec.api_key {
            r = match self.spec.api {
                Api::Openai => r.bearer_auth(key),
                Api::Anthropic => r.header("x-api-key", key),
            };
        }
        for (k, v) in &self.spec.headers {
            r = r.header(k, v);
        }
        r
    }

    /// One request; its outcome (see [`ProbeCounts`]) and whether a 429 had `retry-after`.
    async fn once(&self) -> (String, bool) {
        let resp = match self.request().send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return ("timeout".into(), false),
            Err(_) => return ("connection_error".into(), false),
        };
        let status = resp.status().as_u16();
        let retry_after = ["retry-after", "retry-after-ms"]
            .iter()
            .any(|h| resp.headers().contains_key(*h));
        if !(200..300).contains(&status) || !self.spec.stream {
            let _ = resp.bytes().await;
            return (status.to_string(), status == 429 && retry_after);
        }
        let mut body = Vec::new();
        let mut resp = resp;
        while let Ok(Some(chunk)) = resp.chunk().await {
            body.extend_from_slice(&chunk);
        }
        (stream_ending(&body).into(), false)
    }

    /// `n` requests at once.
    pub async fn many(&self, n: u32) -> ProbeCounts {
        let mut out = ProbeCounts::default();
        for (outcome, retry_after) in join_all((0..n).map(|_| self.once())).await {
            out.sent += 1;
            *out.by_outcome.entry(outcome).or_default() += 1;
            out.http_429_with_retry_after += u64::from(retry_after);
        }
        out
    }

    /// Opens a stream and returns it once its first content token arrived (None when the
    /// stream failed or ended first).
    async fn first_token(&self) -> Option<reqwest::Response> {
        let mut resp = self.request().send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            body.extend_from_slice(&chunk);
            if has_content(&body) {
                return Some(resp);
            }
        }
        None
    }

    /// Opens `n` streams, drops each after its first token, and reads the upstreams'
    /// open streams before, while connected and `settle` after.
    pub async fn cancel_check(
        &self,
        admin: &MockAdmin,
        n: u32,
        settle: Duration,
    ) -> Result<CancelResult, LoadError> {
        let open = |s: Vec<super::admin::MockStats>| s.iter().map(|m| m.open_streams).sum();
        let before: u64 = open(admin.stats().await?);
        let held: Vec<reqwest::Response> = join_all((0..n).map(|_| self.first_token()))
            .await
            .into_iter()
            .flatten()
            .collect();
        let first_token = held.len() as u64;
        let connected: u64 = open(admin.stats().await?);
        drop(held);
        tokio::time::sleep(settle).await;
        Ok(CancelResult {
            streams: u64::from(n),
            first_token,
            upstream_open_before: before,
            upstream_open_connected: connected,
            upstream_open_after: open(admin.stats().await?),
            settle_s: settle.as_secs_f64(),
        })
    }
}

/// How a 2xx stream ended: `error_event`, `complete` or `cut`.
pub fn stream_ending(body: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(body);
    let events = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("data:").map(str::trim));
    let mut done = false;
    for data in events {
        if data == "[DONE]" {
            done = true;
        } else if serde_json::from_str::<serde_json::Value>(data)
            .is_ok_and(|v| v.get("error").is_some() || v["type"] == "error")
        {
            return "error_event";
        }
    }
    if done {
        "complete"
    } else {
        "cut"
    }
}

/// Whether an SSE body so far holds a non-empty content delta (OpenAI or Anthropic).
pub fn has_content(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    ["\"content\":", "\"text\":"].iter().any(|key| {
        text.match_indices(key).any(|(i, _)| {
            let rest = text[i + key.len()..].trim_start();
            rest.starts_with('"') && !rest[1..].starts_with('"') && rest.len() > 1
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_endings() {
        assert_eq!(
            stream_ending(b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n"),
            "complete"
        );
        assert_eq!(stream_ending(b"data: {\"choices\":[]}\n\n"), "cut");
        assert_eq!(
            stream_ending(b"data: {\"error\": {\"message\": \"x\"}}\n\ndata: [DONE]\n\n"),
            "error_event"
        );
    }

    #[test]
    fn content_tokens_are_found() {
        assert!(!has_content(
            b"data: {\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}"
        ));
        assert!(has_content(b"data: {\"delta\": {\"content\": \"tok \"}}"));
        assert!(!has_content(b"data: {\"delta\":{\"content\":"));
    }
}
