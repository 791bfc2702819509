//! The one place where every request failure maps to an HTTP status, an
//! OpenAI- or Anthropic-shaped error body, and a low-cardinality metrics label.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

/// Which limit a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Requests = 0,
    Tokens = 1,
}

impl LimitKind {
    /// OpenAI's error `type` for it.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }
}

/// A request that could not be answered normally. `Clone` so that coalesced requests
/// can all receive the one upstream call's failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid API key")]
    Unauthorized,
    #[error("the model `{0}` does not exist")]
    ModelNotFound(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed for {0}")]
    MethodNotAllowed(String),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// Bad JSON or a bad field; `param` is the field's path when known.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("cannot read request body: {0}")]
    ClientBody(String),
    #[error("request body not received within {0} ms")]
    ClientTimeout(u64),
    /// A non-2xx answer. A 4xx reaches the client with its status and the upstream's
    /// message (and `retry-after`); a 5xx becomes a 502.
    #[error("upstream returned status {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    UpstreamStatus {
        status: u16,
        detail: Option<String>,
        /// The upstream error's `type` and `code`, kept for a 4xx.
        kind: Option<String>,
        code: Option<String>,
        retry_after_ms: Option<u64>,
    },
    #[error("cannot connect to upstream: {0}")]
    UpstreamConnect(String),
    #[error("upstream did not answer within {0} ms")]
    UpstreamTimeout(u64),
    #[error("upstream request failed: {0}")]
    UpstreamIo(String),
    #[error("upstream sent an unreadable answer: {0}")]
    UpstreamProtocol(String),
    /// Every deployment of the model and of its fallbacks has an open breaker: 503, or
    /// 429 when they were all opened by upstream 429s; `retry-after` either way.
    #[error("{}", if *rate_limited {
        format!("every deployment of `{model}` is rate limited by its upstream; retry later")
    } else {
        format!("no healthy deployment for `{model}`: all circuit breakers are open")
    })]
    NoDeployment {
        model: String,
        retry_after_ms: u64,
        rate_limited: bool,
    },
    /// A key's or a model's own limit (rpm or tpm) is used up: 429.
    #[error("rate limit reached for {} on {scope}: {limit} per minute; retry in {retry_after_ms} ms", kind.as_str())]
    RateLimited {
        kind: LimitKind,
        /// "key `name`" or "this model".
        scope: String,
        retry_after_ms: u64,
        limit: u64,
        remaining: u64,
        reset_ms: u64,
    },
}

/// Why a request was retried, as `llm_gateway_retries_total{reason=…}`.
pub const RETRY_REASONS: [&str; 8] = [
    "connect", "reset", "timeout", "429", "500", "502", "503", "504",
];

impl GatewayError {
    /// Builds an [`GatewayError::InvalidRequest`] from a serde_path_to_error failure.
    pub fn from_json(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = if path == "." {
            // Missing fields are reported at the parent; name the field itself.
            let msg = inner.to_string();
            msg.strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
                .map(str::to_string)
        } else {
            Some(path.clone())
        };
        let message = if path == "." {
            format!("invalid request body: {inner}")
        } else {
            format!("invalid request body at `{path}`: {inner}")
        };
        GatewayError::InvalidRequest { message, param }
    }

    /// A 400 about one named field.
    pub fn invalid_field(param: &str, message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: format!("invalid request body at `{param}`: {}", message.into()),
            param: Some(param.to_string()),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthorized => StatusCode::UNAUTHORIZED,
            GatewayError::ModelNotFound(_) | GatewayError::RouteNotFound(_) => {
                StatusCode::NOT_FOUND
            }
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::InvalidRequest { .. } | GatewayError::ClientBody(_) => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::ClientTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UpstreamStatus { status, .. } if (400..500).contains(status) => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::NoDeployment { rate_limited, .. } => {
                if *rate_limited {
                    StatusCode::TOO_MANY_REQUESTS
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
            GatewayError::UpstreamStatus { .. }
            | GatewayError::UpstreamConnect(_)
            | GatewayError::UpstreamIo(_)
            | GatewayError::UpstreamProtocol(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Short, fixed label for `llm_gateway_errors_total{error_type=…}`.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::Unauthorized => "unauthorized",
            GatewayError::ModelNotFound(_) => "model_not_found",
            GatewayError::RouteNotFound(_) => "route_not_found",
            GatewayError::MethodNotAllowed(_) => "method_not_allowed",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::ClientBody(_) => "client_body",
            GatewayError::ClientTimeout(_) => "client_timeout",
            GatewayError::UpstreamStatus { .. } => "upstream_status",
            GatewayError::UpstreamConnect(_) => "upstream_connect",
            GatewayError::UpstreamTimeout(_) => "upstream_timeout",
            GatewayError::UpstreamIo(_) => "upstream_io",
            GatewayError::UpstreamProtocol(_) => "upstream_protocol",
            GatewayError::NoDeployment { .. } => "no_healthy_deployment",
            GatewayError::RateLimited { .. } => "rate_limited",
        }
    }

    /// Every label, in the order of the metrics registry's error slots.
    pub const LABELS: [&'static str; 15] = [
        "unauthorized",
        "model_not_found",
        "route_not_found",
        "method_not_allowed",
        "payload_too_large",
        "invalid_request",
        "client_body",
        "client_timeout",
        "upstream_status",
        "upstream_connect",
        "upstream_timeout",
        "upstream_io",
        "upstream_protocol",
        "no_healthy_deployment",
        "rate_limited",
    ];

    /// Index of [`Self::label`] in [`Self::LABELS`].
    pub fn label_index(&self) -> usize {
        match self {
            GatewayError::Unauthorized => 0,
            GatewayError::ModelNotFound(_) => 1,
            GatewayError::RouteNotFound(_) => 2,
            GatewayError::MethodNotAllowed(_) => 3,
            GatewayError::PayloadTooLarge { .. } => 4,
            GatewayError::InvalidRequest { .. } => 5,
            GatewayError::ClientBody(_) => 6,
            GatewayError::ClientTimeout(_) => 7,
            GatewayError::UpstreamStatus { .. } => 8,
            GatewayError::UpstreamConnect(_) => 9,
            GatewayError::UpstreamTimeout(_) => 10,
            GatewayError::UpstreamIo(_) => 11,
            GatewayError::UpstreamProtocol(_) => 12,
            GatewayError::NoDeployment { .. } => 13,
            GatewayError::RateLimited { .. } => 14,
        }
    }

    /// Index into [`RETRY_REASONS`] when this failure may be retried (on another
    /// deployment where one is healthy): connect failure, reset or broken answer
    /// before anything reached the client, timeout, 429, 500, 502, 503, 504.
    pub fn retry_reason(&self) -> Option<usize> {
        match self {
            GatewayError::UpstreamConnect(_) => Some(0),
            GatewayError::UpstreamIo(_) => Some(1),
            GatewayError::UpstreamTimeout(_) => Some(2),
            GatewayError::UpstreamStatus { status, .. } => match status {
                429 => Some(3),
                500 => Some(4),
                502 => Some(5),
                503 => Some(6),
                504 => Some(7),
                _ => None,
            },
            _ => None,
        }
    }

    /// The wait the client is told with `retry-after`, ms.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            GatewayError::UpstreamStatus {
                status: 429,
                retry_after_ms,
                ..
            } => *retry_after_ms,
            GatewayError::NoDeployment { retry_after_ms, .. }
            | GatewayError::RateLimited { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        }
    }

    /// Whether this failure counts against the provider's health and its breaker
    /// (network failures, 5xx and 429; not the client's own 4xx).
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamConnect(_)
                | GatewayError::UpstreamTimeout(_)
                | GatewayError::UpstreamIo(_)
                | GatewayError::UpstreamProtocol(_)
        ) || matches!(self, GatewayError::UpstreamStatus { status, .. } if *status >= 500 || *status == 429)
    }

    /// Whether the upstream (or the way to it) produced this error.
    pub fn is_from_upstream(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamStatus { .. }
                | GatewayError::UpstreamConnect(_)
                | GatewayError::UpstreamTimeout(_)
                | GatewayError::UpstreamIo(_)
                | GatewayError::UpstreamProtocol(_)
        )
    }

    /// An upstream 4xx passed on to the client as it was.
    fn passed_4xx(&self) -> Option<(&Option<String>, &Option<String>, &Option<String>)> {
        match self {
            GatewayError::UpstreamStatus {
                status,
                detail,
                kind,
                code,
                ..
            } if (400..500).contains(status) => Some((detail, kind, code)),
            _ => None,
        }
    }

    /// The message the client sees: a passed-on 4xx keeps the upstream's own.
    fn client_message(&self) -> String {
        match self.passed_4xx() {
            Some((Some(d), _, _)) => d.clone(),
            _ => self.to_string(),
        }
    }

    fn openai_type(&self) -> &'static str {
        match self {
            GatewayError::Unauthorized => "authentication_error",
            GatewayError::ModelNotFound(_)
            | GatewayError::RouteNotFound(_)
            | GatewayError::MethodNotAllowed(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::InvalidRequest { .. }
            | GatewayError::ClientBody(_)
            | GatewayError::ClientTimeout(_) => "invalid_request_error",
            GatewayError::UpstreamTimeout(_) => "timeout_error",
            GatewayError::NoDeployment {
                rate_limited: true, ..
            } => "requests",
            GatewayError::NoDeployment { .. } => "service_unavailable",
            GatewayError::RateLimited { kind, .. } => kind.as_str(),
            _ => "upstream_error",
        }
    }

    fn code(&self) -> &'static str {
        match self {
            GatewayError::Unauthorized => "invalid_api_key",
            GatewayError::NoDeployment {
                rate_limited: true, ..
            } => "rate_limit_exceeded",
            GatewayError::RateLimited { .. } => "rate_limit_exceeded",
            _ => self.label(),
        }
    }

    /// `{"error":{"message","type","param","code"}}`, as OpenAI answers.
    pub fn openai_body(&self) -> Bytes {
        #[derive(Serialize)]
        struct Inner<'a> {
            message: String,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Outer<'a> {
            error: Inner<'a>,
        }
        let param = match self {
            GatewayError::InvalidRequest { param, .. } => param.as_deref(),
            GatewayError::ModelNotFound(_) => Some("model"),
            _ => None,
        };
        let (kind, code) = match self.passed_4xx() {
            Some((_, k, c)) => (
                k.as_deref().unwrap_or("invalid_request_error"),
                c.as_deref(),
            ),
            None => (self.openai_type(), Some(self.code())),
        };
        let body = Outer {
            error: Inner {
                message: self.client_message(),
                kind,
                param,
                code,
            },
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// `{"type":"error","error":{"type","message"}}`, as Anthropic answers.
    pub fn anthropic_body(&self) -> Bytes {
        let kind = match self {
            GatewayError::Unauthorized => "authentication_error",
            GatewayError::ModelNotFound(_) | GatewayError::RouteNotFound(_) => "not_found_error",
            GatewayError::PayloadTooLarge { .. } => "request_too_large",
            GatewayError::MethodNotAllowed(_)
            | GatewayError::InvalidRequest { .. }
            | GatewayError::ClientBody(_)
            | GatewayError::ClientTimeout(_) => "invalid_request_error",
            GatewayError::UpstreamTimeout(_) => "timeout_error",
            GatewayError::UpstreamStatus { status, .. } => anthropic_kind(*status),
            GatewayError::NoDeployment {
                rate_limited: true, ..
            }
            | GatewayError::RateLimited { .. } => "rate_limit_error",
            GatewayError::NoDeployment { .. } => "overloaded_error",
            _ => "api_error",
        };
        let body = serde_json::json!({
            "type": "error",
            "error": {"type": kind, "message": self.client_message()},
        });
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// Anthropic's error type for an upstream status passed on.
fn anthropic_kind(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// What an upstream error body says, in either API's shape.
#[derive(Debug, Default, PartialEq)]
pub struct UpstreamBody {
    pub message: Option<String>,
    pub kind: Option<String>,
    pub code: Option<String>,
}

/// Pulls `error.message`, `error.type` and `error.code` (OpenAI and Anthropic shapes),
/// or a short text, out of an upstream error body.
pub fn upstream_error_body(body: &[u8]) -> UpstreamBody {
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Inner {
        Obj {
            message: String,
            #[serde(default, rename = "type")]
            kind: Option<String>,
            #[serde(default)]
            code: Option<serde_json::Value>,
        },
        Text(String),
    }
    match serde_json::from_slice::<Outer>(body) {
        Ok(Outer {
            error:
                Inner::Obj {
                    message,
                    kind,
                    code,
                },
        }) => UpstreamBody {
            message: Some(message),
            kind,
            code: code.and_then(|c| match c {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
        },
        Ok(Outer {
            error: Inner::Text(t),
        }) => UpstreamBody {
            message: Some(t),
            ..UpstreamBody::default()
        },
        Err(_) => UpstreamBody {
            message: std::str::from_utf8(body)
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| t.chars().take(200).collect()),
            ..UpstreamBody::default()
        },
    }
}

/// The upstream's error message alone.
pub fn upstream_detail(body: &[u8]) -> Option<String> {
    upstream_error_body(body).message
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_indexes() {
        let all = [
            GatewayError::Unauthorized,
            GatewayError::ModelNotFound("m".into()),
            GatewayError::RouteNotFound("/x".into()),
            GatewayError::MethodNotAllowed("/x".into()),
            GatewayError::PayloadTooLarge { limit: 1 },
            GatewayError::InvalidRequest {
                message: "m".into(),
                param: None,
            },
            GatewayError::ClientBody("x".into()),
            GatewayError::ClientTimeout(1),
            GatewayError::UpstreamStatus {
                status: 500,
                detail: None,
                kind: None,
                code: None,
                retry_after_ms: None,
            },
            GatewayError::UpstreamConnect("x".into()),
            GatewayError::UpstreamTimeout(1),
            GatewayError::UpstreamIo("x".into()),
            GatewayError::UpstreamProtocol("x".into()),
            GatewayError::NoDeployment {
                model: "m".into(),
                retry_after_ms: 1,
                rate_limited: false,
            },
            GatewayError::RateLimited {
                kind: LimitKind::Tokens,
                scope: "key `k`".into(),
                retry_after_ms: 1,
                limit: 1,
                remaining: 0,
                reset_ms: 1,
            },
        ];
        for e in &all {
            assert_eq!(GatewayError::LABELS[e.label_index()], e.label());
        }
    }

    #[test]
    fn openai_body_shape() {
        let b = GatewayError::ModelNotFound("x".into()).openai_body();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("`x`"));
    }

    #[test]
    fn upstream_detail_reads_both_shapes() {
        assert_eq!(
            upstream_detail(br#"{"error":{"message":"boom","type":"x"}}"#).as_deref(),
            Some("boom")
        );
        assert_eq!(
            upstream_detail(br#"{"type":"error","error":{"type":"x","message":"over"}}"#)
                .as_deref(),
            Some("over")
        );
        assert_eq!(upstream_detail(b"  ").as_deref(), None);
    }
}
