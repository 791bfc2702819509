//! Request counters, exposed in Prometheus text format on `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// Which route a request hit (the `endpoint` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/messages`.
    Messages,
    /// `GET /v1/models`.
    Models,
    /// `GET /health`.
    Health,
    /// `GET /metrics`.
    Metrics,
    /// Anything else.
    Other,
}

impl Endpoint {
    const ALL: [Endpoint; 6] = [
        Endpoint::ChatCompletions,
        Endpoint::Messages,
        Endpoint::Models,
        Endpoint::Health,
        Endpoint::Metrics,
        Endpoint::Other,
    ];

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Messages => "messages",
            Endpoint::Models => "models",
            Endpoint::Health => "health",
            Endpoint::Metrics => "metrics",
            Endpoint::Other => "other",
        }
    }
}

/// How a request ended (the `status` label): an HTTP status, or `hang` / `reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200.
    Ok,
    /// 400.
    BadRequest,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 413.
    TooLarge,
    /// 429 (injected).
    RateLimited,
    /// 500 (injected).
    ServerError,
    /// Never answered (injected).
    Hang,
    /// Connection reset (injected).
    Reset,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::BadRequest,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::TooLarge,
        Outcome::RateLimited,
        Outcome::ServerError,
        Outcome::Hang,
        Outcome::Reset,
    ];

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "200",
            Outcome::BadRequest => "400",
            Outcome::NotFound => "404",
            Outcome::MethodNotAllowed => "405",
            Outcome::TooLarge => "413",
            Outcome::RateLimited => "429",
            Outcome::ServerError => "500",
            Outcome::Hang => "hang",
            Outcome::Reset => "reset",
        }
    }
}

const N_ENDPOINTS: usize = Endpoint::ALL.len();
const N_OUTCOMES: usize = Outcome::ALL.len();

/// All counters; lock-free, shared by every connection.
#[derive(Debug)]
pub struct Metrics {
    requests: [[AtomicU64; N_OUTCOMES]; N_ENDPOINTS],
    output_tokens: [AtomicU64; N_ENDPOINTS],
    in_flight: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: [const { [const { AtomicU64::new(0) }; N_OUTCOMES] }; N_ENDPOINTS],
            output_tokens: [const { AtomicU64::new(0) }; N_ENDPOINTS],
            in_flight: AtomicI64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one finished (or abandoned) request.
    pub fn count(&self, endpoint: Endpoint, outcome: Outcome) {
        self.requests[endpoint as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts output tokens actually sent.
    pub fn add_tokens(&self, endpoint: Endpoint, tokens: u64) {
        self.output_tokens[endpoint as usize].fetch_add(tokens, Ordering::Relaxed);
    }

    /// Marks a completion request in flight until the guard drops (the guard lives in
    /// the stream body for streams, so streaming time counts).
    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Prometheus text exposition. Request counters are listed when non-zero.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP mock_requests_total Requests handled by mock-upstream, by endpoint and outcome (HTTP status, or hang/reset for injected faults).\n");
        out.push_str("# TYPE mock_requests_total counter\n");
        for endpoint in Endpoint::ALL {
            for outcome in Outcome::ALL {
                let n = self.requests[endpoint as usize][outcome as usize].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "mock_requests_total{{endpoint=\"{}\",status=\"{}\"}} {n}",
                        endpoint.label(),
                        outcome.label()
                    );
                }
            }
        }
        out.push_str("# HELP mock_output_tokens_total Output tokens sent by mock-upstream.\n");
        out.push_str("# TYPE mock_output_tokens_total counter\n");
        for endpoint in [Endpoint::ChatCompletions, Endpoint::Messages] {
            let n = self.output_tokens[endpoint as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "mock_output_tokens_total{{endpoint=\"{}\"}} {n}",
                endpoint.label()
            );
        }
        out.push_str("# HELP mock_in_flight_requests Completion requests being handled (including hung ones and open streams).\n");
        out.push_str("# TYPE mock_in_flight_requests gauge\n");
        let _ = writeln!(
            out,
            "mock_in_flight_requests {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        out
    }
}

/// Decrements the in-flight gauge on drop.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_gauge() {
        let m = Arc::new(Metrics::default());
        m.count(Endpoint::ChatCompletions, Outcome::Ok);
        m.count(Endpoint::ChatCompletions, Outcome::Ok);
        m.count(Endpoint::Messages, Outcome::Reset);
        m.add_tokens(Endpoint::Messages, 5);
        let guard = m.in_flight();
        let text = m.render();
        assert!(
            text.contains("mock_requests_total{endpoint=\"chat_completions\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("mock_requests_total{endpoint=\"messages\",status=\"reset\"} 1\n"));
        assert!(text.contains("mock_output_tokens_total{endpoint=\"messages\"} 5\n"));
        assert!(text.contains("mock_in_flight_requests 1\n"));
        drop(guard);
        assert!(m.render().contains("mock_in_flight_requests 0\n"));
    }
}
