//! Request counters, exposed in Prometheus text format on `GET /metrics` and as JSON on
//! `GET /__mock/stats`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::faults::Outage;

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

/// How a request ended (the `status` label): an HTTP status, or a word for requests that
/// got no answer (`hang`, `reset`, `outage_reset`, `aborted`).
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
    /// Connection reset because an outage (`refuse` or `reset`) is on.
    OutageReset,
    /// The client went away while sending the request body.
    Aborted,
}

impl Outcome {
    const ALL: [Outcome; 11] = [
        Outcome::Ok,
        Outcome::BadRequest,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::TooLarge,
        Outcome::RateLimited,
        Outcome::ServerError,
        Outcome::Hang,
        Outcome::Reset,
        Outcome::OutageReset,
        Outcome::Aborted,
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
            Outcome::OutageReset => "outage_reset",
            Outcome::Aborted => "aborted",
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
    open_streams: AtomicI64,
    connections: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: [const { [const { AtomicU64::new(0) }; N_OUTCOMES] }; N_ENDPOINTS],
            output_tokens: [const { AtomicU64::new(0) }; N_ENDPOINTS],
            in_flight: AtomicI64::new(0),
            open_streams: AtomicI64::new(0),
            connections: AtomicU64::new(0),
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

    /// Marks an SSE stream open until the guard drops (the stream body holds it).
    pub fn open_stream(self: &Arc<Self>) -> OpenStream {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        OpenStream(Arc::clone(self))
    }

    /// Counts one TCP connection accepted on the main port.
    pub fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    fn requests(&self, endpoint: Endpoint, outcome: Outcome) -> u64 {
        self.requests[endpoint as usize][outcome as usize].load(Ordering::Relaxed)
    }

    /// Prometheus text exposition. Request counters are listed when non-zero.
    pub fn render(&self, outage: Outage) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP mock_requests_total Requests handled by mock-upstream, by endpoint and outcome (HTTP status, or hang/reset/outage_reset/aborted for requests without an answer).\n");
        out.push_str("# TYPE mock_requests_total counter\n");
        for endpoint in Endpoint::ALL {
            for outcome in Outcome::ALL {
                let n = self.requests(endpoint, outcome);
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
        self.render_connections(&mut out, outage);
        out
    }

    fn render_connections(&self, out: &mut String, outage: Outage) {
        out.push_str("# HELP mock_open_streams SSE streams being sent.\n");
        out.push_str("# TYPE mock_open_streams gauge\n");
        let _ = writeln!(
            out,
            "mock_open_streams {}",
            self.open_streams.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP mock_connections_accepted_total TCP connections accepted on the main port.\n",
        );
        out.push_str("# TYPE mock_connections_accepted_total counter\n");
        let _ = writeln!(
            out,
            "mock_connections_accepted_total {}",
            self.connections.load(Ordering::Relaxed)
        );
        out.push_str("# HELP mock_outage The outage mode set through /__mock/faults (1 for the current one).\n");
        out.push_str("# TYPE mock_outage gauge\n");
        for mode in Outage::ALL {
            let _ = writeln!(
                out,
                "mock_outage{{mode=\"{}\"}} {}",
                mode.label(),
                u8::from(mode == outage)
            );
        }
    }

    /// The body of `GET /__mock/stats`: every request counter (zeros included, so the
    /// shape never changes), the completion endpoints summed, and the gauges.
    pub fn stats(&self, outage: Outage, listening: bool) -> Value {
        let mut by_endpoint = Map::new();
        for endpoint in Endpoint::ALL {
            let counts: Map<String, Value> = Outcome::ALL
                .iter()
                .map(|&o| (o.label().to_owned(), self.requests(endpoint, o).into()))
                .collect();
            by_endpoint.insert(endpoint.label().to_owned(), Value::Object(counts));
        }
        let mut completions = Map::new();
        let mut total = 0;
        for outcome in Outcome::ALL {
            let n = self.requests(Endpoint::ChatCompletions, outcome)
                + self.requests(Endpoint::Messages, outcome);
            total += n;
            completions.insert(outcome.label().to_owned(), n.into());
        }
        json!({
            "completions": {"total": total, "by_outcome": completions},
            "by_endpoint": by_endpoint,
            "connections_accepted": self.connections.load(Ordering::Relaxed),
            "in_flight_requests": self.in_flight.load(Ordering::Relaxed),
            "open_streams": self.open_streams.load(Ordering::Relaxed),
            "outage": outage.label(),
            "listening": listening,
        })
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

/// Decrements the open-stream gauge on drop.
#[derive(Debug)]
pub struct OpenStream(Arc<Metrics>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
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
        m.count(Endpoint::Messages, Outcome::OutageReset);
        m.count_connection();
        let guard = m.in_flight();
        let stream = m.open_stream();
        let text = m.render(Outage::Reset);
        assert!(
            text.contains("mock_requests_total{endpoint=\"chat_completions\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("mock_requests_total{endpoint=\"messages\",status=\"reset\"} 1\n"));
        assert!(text.contains("mock_output_tokens_total{endpoint=\"messages\"} 5\n"));
        assert!(text.contains("mock_in_flight_requests 1\n"));
        assert!(
            text.contains("mock_requests_total{endpoint=\"messages\",status=\"outage_reset\"} 1\n")
        );
        assert!(text.contains("mock_open_streams 1\n"));
        assert!(text.contains("mock_connections_accepted_total 1\n"));
        assert!(text.contains("mock_outage{mode=\"reset\"} 1\n"));
        assert!(text.contains("mock_outage{mode=\"off\"} 0\n"));
        drop(guard);
        drop(stream);
        let text = m.render(Outage::Off);
        assert!(text.contains("mock_in_flight_requests 0\n"));
        assert!(text.contains("mock_open_streams 0\n"));
    }

    #[test]
    fn stats_sum_the_completion_endpoints() {
        let m = Arc::new(Metrics::default());
        m.count(Endpoint::ChatCompletions, Outcome::Ok);
        m.count(Endpoint::Messages, Outcome::Ok);
        m.count(Endpoint::Messages, Outcome::RateLimited);
        m.count(Endpoint::Health, Outcome::Ok);
        let _guard = m.in_flight();
        let v = m.stats(Outage::Off, true);
        assert_eq!(v["completions"]["total"], 3);
        assert_eq!(v["completions"]["by_outcome"]["200"], 2);
        assert_eq!(v["completions"]["by_outcome"]["429"], 1);
        assert_eq!(v["completions"]["by_outcome"]["outage_reset"], 0);
        assert_eq!(v["by_endpoint"]["health"]["200"], 1);
        assert_eq!(v["by_endpoint"]["messages"]["429"], 1);
        assert_eq!(v["in_flight_requests"], 1);
        assert_eq!(v["open_streams"], 0);
        assert_eq!(v["outage"], "off");
        assert_eq!(v["listening"], true);
    }
}
