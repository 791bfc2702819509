//! The one place where every request failure maps to an HTTP status, an
//! OpenAI- or Anthropic-shaped error body, and a low-cardinality metrics label.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

/// A request that could not be answered normally.
#[derive(Debug, thiserror::Error)]
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
    #[error("upstream returned status {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    UpstreamStatus { status: u16, detail: Option<String> },
    #[error("cannot connect to upstream: {0}")]
    UpstreamConnect(String),
    #[error("upstream did not answer within {0} ms")]
    UpstreamTimeout(u64),
    #[error("upstream request failed: {0}")]
    UpstreamIo(String),
    #[error("upstream sent an unreadable answer: {0}")]
    UpstreamProtocol(String),
}

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
        }
    }

    /// Every label, in the order of the metrics registry's error slots.
    pub const LABELS: [&'static str; 13] = [
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
        }
    }

    /// Whether this failure counts against the provider's health.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamConnect(_)
                | GatewayError::UpstreamTimeout(_)
                | GatewayError::UpstreamIo(_)
                | GatewayError::UpstreamProtocol(_)
        ) || matches!(self, GatewayError::UpstreamStatus { status, .. } if *status >= 500)
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
            _ => "upstream_error",
        }
    }

    fn code(&self) -> &'static str {
        match self {
            GatewayError::Unauthorized => "invalid_api_key",
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
            code: &'a str,
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
        let body = Outer {
            error: Inner {
                message: self.to_string(),
                kind: self.openai_type(),
                param,
                code: self.code(),
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
            _ => "api_error",
        };
        let body = serde_json::json!({
            "type": "error",
            "error": {"type": kind, "message": self.to_string()},
        });
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// Pulls `error.message` (OpenAI and Anthropic shapes) or a short text out of an
/// upstream error body, for the 502 message.
pub fn upstream_detail(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Inner {
        Obj { message: String },
        Text(String),
    }
    if let Ok(o) = serde_json::from_slice::<Outer>(body) {
        return Some(match o.error {
            Inner::Obj { message } | Inner::Text(message) => message,
        });
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    Some(text.chars().take(200).collect())
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
            },
            GatewayError::UpstreamConnect("x".into()),
            GatewayError::UpstreamTimeout(1),
            GatewayError::UpstreamIo("x".into()),
            GatewayError::UpstreamProtocol("x".into()),
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
