//! Command-line options and the behaviour knobs.
//!
//! Every knob has a flag (with an environment variable) that sets its default, and a
//! request header `x-mock-<flag name>` that overrides it for one request.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use clap::{Args, Parser};

/// Largest accepted delay knob (one hour), so durations stay finite and sane.
const MAX_MS: f64 = 3_600_000.0;
/// Largest accepted output token count; bounds the size of one answer.
const MAX_TOKENS: u32 = 1_000_000;
/// Largest accepted `retry-after` (one day): longer would stall a lab run for nothing.
pub const MAX_RETRY_AFTER_S: u32 = 86_400;
/// What a share knob accepts, for error messages.
pub const RATE_EXPECTED: &str = "a share, a number between 0 and 1";
/// What the retry-after knob accepts, for error messages.
pub const RETRY_AFTER_EXPECTED: &str = "whole seconds between 0 and 86400";

/// Options of the `mock-upstream` binary.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mock-upstream",
    version,
    about = "Loopback OpenAI/Anthropic-compatible upstream for gateway benchmarks"
)]
pub struct Opts {
    /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, env = "MOCK_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Extra address serving only the `/__mock/` admin endpoints (printed as
    /// `admin listening on ADDR`); needed for `outage: refuse`, which closes the main port.
    #[arg(long, env = "MOCK_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Runtime worker threads (1 = a current-thread runtime); default: available parallelism.
    #[arg(long, env = "MOCK_THREADS")]
    pub threads: Option<NonZeroUsize>,
    /// Model ids listed by `GET /v1/models` (any model name is accepted on requests).
    #[arg(
        long,
        env = "MOCK_MODELS",
        value_delimiter = ',',
        default_value = "gpt-4o-mini,claude-3-5-haiku-20241022"
    )]
    pub models: Vec<String>,
    /// Largest accepted request body, in bytes (larger ones get 413).
    #[arg(long, env = "MOCK_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Default knob values.
    #[command(flatten)]
    pub knobs: Knobs,
    /// Healthcheck mode: GET this `http://` URL, exit 0 on a 2xx answer, else 1 (no server).
    #[arg(long, value_name = "URL")]
    pub probe: Option<String>,
}

/// Behaviour knobs; the flags give defaults, `x-mock-*` request headers override them.
///
/// Fault shares are bands of one uniform draw, tested in the order 429, 500, hang, reset:
/// a request is answered 429 with probability `rate_429`, 500 with probability
/// `error_rate`, and so on (if the shares add up to more than 1 the later ones shrink).
#[derive(Debug, Clone, Copy, PartialEq, Args)]
pub struct Knobs {
    /// Fixed delay before the answer (before the first byte), ms.
    #[arg(long = "latency-ms", env = "MOCK_LATENCY_MS", default_value_t = 0.0, value_parser = parse_ms)]
    pub latency_ms: f64,
    /// Uniform random extra delay 0..J added to the latency, ms.
    #[arg(long = "jitter-ms", env = "MOCK_JITTER_MS", default_value_t = 0.0, value_parser = parse_ms)]
    pub jitter_ms: f64,
    /// Streaming: delay between the response head and the first content token, ms.
    #[arg(long = "ttft-ms", env = "MOCK_TTFT_MS", default_value_t = 0.0, value_parser = parse_ms)]
    pub ttft_ms: f64,
    /// Number of output tokens ("tok " each), capped by the request's max_tokens.
    #[arg(long = "output-tokens", env = "MOCK_OUTPUT_TOKENS", default_value_t = 16, value_parser = parse_tokens)]
    pub output_tokens: u32,
    /// Streaming: delay before each content token after the first, and before the final chunk, ms.
    #[arg(long = "token-delay-ms", env = "MOCK_TOKEN_DELAY_MS", default_value_t = 0.0, value_parser = parse_ms)]
    pub token_delay_ms: f64,
    /// Share (0..1) of requests answered 500.
    #[arg(long = "error-rate", env = "MOCK_ERROR_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub error_rate: f64,
    /// Share (0..1) of requests answered 429 (with `retry-after`).
    #[arg(long = "429-rate", env = "MOCK_429_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub rate_429: f64,
    /// `retry-after` of injected 429 answers, whole seconds.
    #[arg(long = "retry-after-s", env = "MOCK_RETRY_AFTER_S", default_value_t = 1, value_parser = parse_retry_after)]
    pub retry_after_s: u32,
    /// Share (0..1) of requests never answered (held until the client goes away).
    #[arg(long = "hang-rate", env = "MOCK_HANG_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub hang_rate: f64,
    /// Share (0..1) of requests whose connection is reset (mid-stream for streams).
    #[arg(long = "reset-rate", env = "MOCK_RESET_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub reset_rate: f64,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            latency_ms: 0.0,
            jitter_ms: 0.0,
            ttft_ms: 0.0,
            output_tokens: 16,
            token_delay_ms: 0.0,
            error_rate: 0.0,
            rate_429: 0.0,
            retry_after_s: 1,
            hang_rate: 0.0,
            reset_rate: 0.0,
        }
    }
}

/// The injected outcome drawn for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Answer 429 with `retry-after`.
    RateLimited,
    /// Answer 500.
    ServerError,
    /// Never answer; hold the connection until the client closes it.
    Hang,
    /// Reset the connection (mid-stream for streams, before the answer otherwise).
    Reset,
}

/// A knob value that does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}")]
pub struct KnobValueError {
    /// The rejected text.
    pub value: String,
    /// What was expected instead.
    pub expected: &'static str,
}

/// A request header that names an unknown knob or carries an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KnobHeaderError {
    /// The value is not valid for this knob.
    #[error("invalid value {:?} for header {header}: {source}", .source.value)]
    Invalid {
        /// Header name.
        header: String,
        /// Why the value is wrong.
        source: KnobValueError,
    },
    /// An `x-mock-` header that is not a knob (probably a typo).
    #[error("unknown header {header}: known knob headers are {}", KNOB_HEADERS.join(", "))]
    Unknown {
        /// Header name.
        header: String,
    },
}

impl KnobHeaderError {
    /// The offending header's name.
    pub fn header(&self) -> &str {
        match self {
            KnobHeaderError::Invalid { header, .. } | KnobHeaderError::Unknown { header } => header,
        }
    }
}

/// Prefix of the per-request knob headers.
pub const KNOB_PREFIX: &str = "x-mock-";

/// All knob header names.
pub const KNOB_HEADERS: [&str; 10] = [
    "x-mock-latency-ms",
    "x-mock-jitter-ms",
    "x-mock-ttft-ms",
    "x-mock-output-tokens",
    "x-mock-token-delay-ms",
    "x-mock-error-rate",
    "x-mock-429-rate",
    "x-mock-retry-after-s",
    "x-mock-hang-rate",
    "x-mock-reset-rate",
];

impl Knobs {
    /// Overrides one knob from a request header; `name` must be lowercase (as `HeaderName` is).
    pub fn apply_header(&mut self, name: &str, value: &[u8]) -> Result<(), KnobHeaderError> {
        let invalid = |source| KnobHeaderError::Invalid {
            header: name.to_owned(),
            source,
        };
        let text = std::str::from_utf8(value).map_err(|_| {
            invalid(KnobValueError {
                value: String::from_utf8_lossy(value).into_owned(),
                expected: "ASCII text",
            })
        });
        let text = text?;
        match name {
            "x-mock-latency-ms" => self.latency_ms = parse_ms(text).map_err(invalid)?,
            "x-mock-jitter-ms" => self.jitter_ms = parse_ms(text).map_err(invalid)?,
            "x-mock-ttft-ms" => self.ttft_ms = parse_ms(text).map_err(invalid)?,
            "x-mock-output-tokens" => self.output_tokens = parse_tokens(text).map_err(invalid)?,
            "x-mock-token-delay-ms" => self.token_delay_ms = parse_ms(text).map_err(invalid)?,
            "x-mock-error-rate" => self.error_rate = parse_rate(text).map_err(invalid)?,
            "x-mock-429-rate" => self.rate_429 = parse_rate(text).map_err(invalid)?,
            "x-mock-retry-after-s" => {
                self.retry_after_s = parse_retry_after(text).map_err(invalid)?;
            }
            "x-mock-hang-rate" => self.hang_rate = parse_rate(text).map_err(invalid)?,
            "x-mock-reset-rate" => self.reset_rate = parse_rate(text).map_err(invalid)?,
            _ => {
                return Err(KnobHeaderError::Unknown {
                    header: name.to_owned(),
                })
            }
        }
        Ok(())
    }

    /// Draws this request's fault from the configured shares.
    pub fn draw_fault(&self) -> Fault {
        if self.rate_429 == 0.0
            && self.error_rate == 0.0
            && self.hang_rate == 0.0
            && self.reset_rate == 0.0
        {
            return Fault::None;
        }
        let u = fastrand::f64();
        let mut band = self.rate_429;
        if u < band {
            return Fault::RateLimited;
        }
        band += self.error_rate;
        if u < band {
            return Fault::ServerError;
        }
        band += self.hang_rate;
        if u < band {
            return Fault::Hang;
        }
        band += self.reset_rate;
        if u < band {
            return Fault::Reset;
        }
        Fault::None
    }

    /// Latency plus a uniform draw of jitter.
    pub fn answer_delay(&self) -> Duration {
        let jitter = if self.jitter_ms > 0.0 {
            fastrand::f64() * self.jitter_ms
        } else {
            0.0
        };
        ms(self.latency_ms + jitter)
    }

    /// Delay before the first streamed content token.
    pub fn ttft(&self) -> Duration {
        ms(self.ttft_ms)
    }

    /// Delay between streamed tokens.
    pub fn token_delay(&self) -> Duration {
        ms(self.token_delay_ms)
    }
}

/// Converts validated milliseconds (finite, 0..=2 h) to a `Duration`.
fn ms(value: f64) -> Duration {
    Duration::try_from_secs_f64(value / 1000.0).unwrap_or(Duration::ZERO)
}

/// Parses a delay in milliseconds: a finite number in 0..=3600000.
pub fn parse_ms(text: &str) -> Result<f64, KnobValueError> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=MAX_MS).contains(&v) => Ok(v),
        _ => Err(KnobValueError {
            value: text.to_owned(),
            expected: "milliseconds, a number between 0 and 3600000",
        }),
    }
}

/// Parses a share: a number in 0..=1.
pub fn parse_rate(text: &str) -> Result<f64, KnobValueError> {
    match text.trim().parse::<f64>() {
        Ok(v) if is_rate(v) => Ok(v),
        _ => Err(KnobValueError {
            value: text.to_owned(),
            expected: RATE_EXPECTED,
        }),
    }
}

/// Whether `v` is a valid share (0..=1; NaN is not).
pub fn is_rate(v: f64) -> bool {
    (0.0..=1.0).contains(&v)
}

/// Parses a `retry-after` in whole seconds: an integer in 0..=86400.
pub fn parse_retry_after(text: &str) -> Result<u32, KnobValueError> {
    match text.trim().parse::<u32>() {
        Ok(v) if v <= MAX_RETRY_AFTER_S => Ok(v),
        _ => Err(KnobValueError {
            value: text.to_owned(),
            expected: RETRY_AFTER_EXPECTED,
        }),
    }
}

/// Parses an output token count: an integer in 0..=1000000.
pub fn parse_tokens(text: &str) -> Result<u32, KnobValueError> {
    match text.trim().parse::<u32>() {
        Ok(v) if v <= MAX_TOKENS => Ok(v),
        _ => Err(KnobValueError {
            value: text.to_owned(),
            expected: "a whole number of tokens between 0 and 1000000",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_override_and_validate() {
        let mut k = Knobs::default();
        assert_eq!(k.apply_header("x-mock-latency-ms", b"12.5"), Ok(()));
        assert_eq!(k.latency_ms, 12.5);
        assert_eq!(k.apply_header("x-mock-output-tokens", b"3"), Ok(()));
        assert_eq!(k.output_tokens, 3);
        let err = k.apply_header("x-mock-error-rate", b"1.5").unwrap_err();
        assert_eq!(err.header(), "x-mock-error-rate");
        assert!(err.to_string().contains("between 0 and 1"), "{err}");
        assert!(k.apply_header("x-mock-latency-ms", b"-1").is_err());
        assert!(k.apply_header("x-mock-latency-ms", b"NaN").is_err());
        assert!(k.apply_header("x-mock-output-tokens", b"2.5").is_err());
        assert_eq!(k.apply_header("x-mock-retry-after-s", b"30"), Ok(()));
        assert_eq!(k.retry_after_s, 30);
        assert!(k.apply_header("x-mock-retry-after-s", b"86401").is_err());
        let err = k.apply_header("x-mock-latency", b"1").unwrap_err();
        assert!(matches!(err, KnobHeaderError::Unknown { .. }));
    }

    #[test]
    fn fault_bands() {
        let mut k = Knobs::default();
        assert_eq!(k.draw_fault(), Fault::None);
        k.rate_429 = 1.0;
        assert_eq!(k.draw_fault(), Fault::RateLimited);
        k.rate_429 = 0.0;
        k.error_rate = 1.0;
        assert_eq!(k.draw_fault(), Fault::ServerError);
        k.error_rate = 0.0;
        k.hang_rate = 1.0;
        assert_eq!(k.draw_fault(), Fault::Hang);
        k.hang_rate = 0.0;
        k.reset_rate = 1.0;
        assert_eq!(k.draw_fault(), Fault::Reset);
        k.reset_rate = 0.5;
        let resets = (0..10_000)
            .filter(|_| k.draw_fault() == Fault::Reset)
            .count();
        assert!((4_000..6_000).contains(&resets), "{resets}");
    }
}
