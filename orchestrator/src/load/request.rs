//! What to send: an OpenAI chat completion or an Anthropic message, streaming or not,
//! rendered once into the exact HTTP/1.1 request bytes every send reuses.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::LoadError;

/// Which API shape the request and its answer follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /v1/chat/completions`
    Openai,
    /// `POST /v1/messages`
    Anthropic,
}

impl Api {
    fn default_path(self) -> &'static str {
        match self {
            Api::Openai => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }
}

/// The request a suite or the `load` command sends. Serializable so a plan can be shipped
/// to a generator elsewhere ([`crate::load::remote`]), which renders it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    pub api: Api,
    pub stream: bool,
    pub model: String,
    pub max_tokens: u32,
    pub prompt: String,
    /// Extra headers (e.g. `x-mock-*` knobs).
    pub headers: Vec<(String, String)>,
    /// Sent as `Authorization: Bearer` (OpenAI) or `x-api-key` (Anthropic).
    pub api_key: Option<String>,
    /// Replaces the generated JSON body entirely when set (`model`, `stream`, `prompt` and
    /// `max_tokens` are then ignored for the body).
    pub body: Option<serde_json::Value>,
}

impl Default for RequestSpec {
    fn default() -> Self {
        Self {
            api: Api::Openai,
            stream: false,
            model: "gpt-4o-mini".into(),
            max_tokens: 16,
            prompt: "Say hello.".into(),
            headers: Vec::new(),
            api_key: None,
            body: None,
        }
    }
}

impl RequestSpec {
    /// The JSON body this spec sends.
    pub fn body_json(&self) -> serde_json::Value {
        if let Some(b) = &self.body {
            return b.clone();
        }
        let mut v = serde_json::json!({
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": self.prompt}],
            "stream": self.stream,
        });
        if self.stream && self.api == Api::Openai {
            v["stream_options"] = serde_json::json!({"include_usage": true});
        }
        v
    }
}

/// Deterministic text of about `tokens` tokens (~4 characters each, the usual rule of
/// thumb for English with BPE tokenizers): plain words, no markup, the same every run.
pub fn generated_prompt(tokens: u32) -> String {
    const WORDS: [&str; 16] = [
        "load", "test", "the", "gateway", "with", "a", "long", "prompt", "and", "measure", "what",
        "each", "byte", "costs", "per", "request",
    ];
    let want = tokens as usize * 4;
    let mut out = String::with_capacity(want + 16);
    // A fixed linear congruential sequence: varied text, identical across runs.
    let mut x: u32 = 0x2545_f491;
    while out.len() < want {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        out.push_str(WORDS[(x >> 28) as usize]);
        out.push(' ');
    }
    out.truncate(want);
    out
}

/// Where requests go: parsed from an `http://host:port[/path]` URL. An empty path (or `/`)
/// gets the API's default path; a path ending in `/v1` gets the rest of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The full URL requests are sent to.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub addr: SocketAddr,
}

impl Endpoint {
    /// Parses with `http::Uri`, so IPv6 literals (`http://[::1]:8080/`) work.
    pub fn parse(url: &str, api: Api) -> Result<Self, LoadError> {
        let bad = |why: &str| LoadError::BadUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// URLs are supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("no credentials in the URL (use the API key option)"));
        }
        // `host()` keeps the brackets of an IPv6 literal, as the Host header wants them.
        let host = authority.host().to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = authority.port_u16().unwrap_or(80);
        let path = full_path(&uri, api);
        let lookup = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (lookup, port)
            .to_socket_addrs()
            .map_err(|e| bad(&format!("cannot resolve host: {e}")))?
            .next()
            .ok_or_else(|| bad("host resolves to no address"))?;
        Ok(Self {
            url: format!("http://{authority}{path}"),
            host,
            port,
            path,
            addr,
        })
    }
}

/// The request target: an empty path (or `/`) gets the API's default path, a path ending
/// in `/v1` gets the rest of it; the query is kept.
fn full_path(uri: &http::Uri, api: Api) -> String {
    let path = match uri.path().trim_end_matches('/') {
        "" => api.default_path().to_string(),
        p if p.ends_with("/v1") => format!("{}{}", &p[..p.len() - 3], api.default_path()),
        _ => uri.path().to_string(),
    };
    match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// A request rendered to bytes, ready to be written on any connection to its endpoint.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub endpoint: Endpoint,
    pub api: Api,
    pub stream: bool,
    pub bytes: Bytes,
    /// What it was rendered from, kept so a plan can be written out and rendered again by
    /// a generator on another host, which resolves `url` in its own network. Shared: plans
    /// are cloned per virtual user and prompts can be large.
    pub spec: Arc<RequestSpec>,
    /// The URL as given (before the API path was added).
    pub url: String,
}

impl PreparedRequest {
    pub fn new(spec: &RequestSpec, url: &str) -> Result<Self, LoadError> {
        let endpoint = Endpoint::parse(url, spec.api)?;
        let body = serde_json::to_vec(&spec.body_json()).map_err(|e| LoadError::Config {
            what: "request body".into(),
            why: e.to_string(),
        })?;
        let mut head = format!(
            "POST {} HTTP/1.1\r\nhost: {}:{}\r\ncontent-type: application/json\r\naccept: {}\r\ncontent-length: {}\r\n",
            endpoint.path,
            endpoint.host,
            endpoint.port,
            if spec.stream { "text/event-stream" } else { "application/json" },
            body.len()
        );
        if let Some(key) = &spec.api_key {
            match spec.api {
                Api::Openai => head.push_str(&format!("authorization: Bearer {key}\r\n")),
                Api::Anthropic => head.push_str(&format!("x-api-key: {key}\r\n")),
            }
        }
        if spec.api == Api::Anthropic
            && !spec
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("anthropic-version"))
        {
            head.push_str("anthropic-version: 2023-06-01\r\n");
        }
        for (k, v) in &spec.headers {
            let bad = |c: char| c == '\r' || c == '\n';
            if k.is_empty() || k.contains(bad) || k.contains(':') || v.contains(bad) {
                return Err(LoadError::Config {
                    what: format!("header `{k}`"),
                    why: "header names must be non-empty without ':' and neither may hold a line break".into(),
                });
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        Ok(Self {
            endpoint,
            api: spec.api,
            stream: spec.stream,
            bytes: Bytes::from(bytes),
            spec: Arc::new(spec.clone()),
            url: url.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn generated_prompts_have_the_asked_size_and_never_change() {
        for tokens in [1u32, 1_000, 10_000] {
            let p = generated_prompt(tokens);
            assert_eq!(p.len(), tokens as usize * 4, "{tokens}");
            assert_eq!(p, generated_prompt(tokens));
            // Words, not one repeated character: a tokenizer sees ordinary text.
            assert!(
                p.split_whitespace().count() as u32 >= tokens / 8,
                "{tokens}"
            );
        }
        assert!(generated_prompt(1_000).starts_with(&generated_prompt(10)[..39]));
        let body = RequestSpec {
            prompt: generated_prompt(10_000),
            ..RequestSpec::default()
        }
        .body_json()
        .to_string();
        assert!((40_000..41_000).contains(&body.len()), "{}", body.len());
    }

    #[test]
    fn paths_default_per_api() {
        let e = Endpoint::parse("http://127.0.0.1:8080", Api::Openai).unwrap();
        assert_eq!(e.path, "/v1/chat/completions");
        assert_eq!(e.port, 8080);
        let e = Endpoint::parse("http://127.0.0.1:8080/v1", Api::Anthropic).unwrap();
        assert_eq!(e.path, "/v1/messages");
        let e = Endpoint::parse("http://127.0.0.1:9/x/y", Api::Openai).unwrap();
        assert_eq!(e.path, "/x/y");
        assert!(Endpoint::parse("https://a:1", Api::Openai).is_err());
        assert!(Endpoint::parse("http://a:xx", Api::Openai).is_err());
        assert!(Endpoint::parse("http://u:p@127.0.0.1:1", Api::Openai).is_err());
        assert!(Endpoint::parse("127.0.0.1:1", Api::Openai).is_err());
        let e = Endpoint::parse("http://127.0.0.1:9/v1?x=1", Api::Openai).unwrap();
        assert_eq!(e.path, "/v1/chat/completions?x=1");
    }

    #[test]
    fn ipv6_literals_parse() {
        let e = Endpoint::parse("http://[::1]:8080/v1/chat/completions", Api::Openai).unwrap();
        assert_eq!(e.host, "[::1]");
        assert_eq!(e.port, 8080);
        assert_eq!(e.path, "/v1/chat/completions");
        assert_eq!(e.addr, "[::1]:8080".parse().unwrap());
        assert_eq!(e.url, "http://[::1]:8080/v1/chat/completions");
        let e = Endpoint::parse("http://[::1]/", Api::Anthropic).unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/v1/messages"));
        let p = PreparedRequest::new(&RequestSpec::default(), "http://[::1]:8080/v1").unwrap();
        let s = std::str::from_utf8(&p.bytes).unwrap();
        assert!(s.starts_with("POST /v1/chat/completions HTTP/1.1\r\nhost: [::1]:8080\r\n"));
    }

    #[test]
    fn renders_headers_and_body() {
        let spec = RequestSpec {
            api: Api::Anthropic,
            stream: true,
            api_key: Some("k".into()),
            headers: vec![("x-mock-output-tokens".into(), "5".into())],
            ..Default::default()
        };
        let p = PreparedRequest::new(&spec, "http://127.0.0.1:1").unwrap();
        let s = std::str::from_utf8(&p.bytes).unwrap();
        assert!(s.starts_with("POST /v1/messages HTTP/1.1\r\n"));
        assert!(s.contains("x-api-key: k\r\n"));
        assert!(s.contains("x-mock-output-tokens: 5\r\n"));
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["stream"], true);
        let bad = RequestSpec {
            headers: vec![("a\r\nb".into(), "x".into())],
            ..Default::default()
        };
        assert!(PreparedRequest::new(&bad, "http://127.0.0.1:1").is_err());
    }
}
