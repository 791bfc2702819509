//! Prometheus metrics in a fixed registry built from the config: every series is an
//! atomic found by index (model slot, status slot, error slot), so the hot path never
//! hashes or locks label strings. Rendered in the text exposition format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::error::{GatewayError, RETRY_REASONS};
use crate::routing::ModelRoute;

/// Status codes with their own `requests_total` series; anything else is `other`.
/// 499 counts requests whose client went away before the answer (nginx's convention).
const STATUSES: [u16; 12] = [200, 400, 401, 404, 405, 408, 413, 429, 499, 500, 502, 504];
/// Request duration buckets, seconds.
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// `llm_gateway_upstream_requests_total{status}` values: statuses, then failures
/// without one.
const UPSTREAM_STATUSES: [&str; 18] = [
    "200",
    "400",
    "401",
    "403",
    "404",
    "408",
    "413",
    "422",
    "429",
    "500",
    "502",
    "503",
    "504",
    "other",
    "connect_error",
    "timeout",
    "reset",
    "protocol_error",
];

/// Index into [`UPSTREAM_STATUSES`] of an attempt's outcome.
fn upstream_index(r: Result<(), &GatewayError>) -> usize {
    let e = match r {
        Ok(()) => return 0,
        Err(e) => e,
    };
    match e {
        GatewayError::UpstreamStatus { status, .. } => UPSTREAM_STATUSES[..13]
            .iter()
            .position(|s| s.parse() == Ok(*status))
            .unwrap_or(13),
        GatewayError::UpstreamConnect(_) => 14,
        GatewayError::UpstreamTimeout(_) => 15,
        GatewayError::UpstreamIo(_) => 16,
        _ => 17,
    }
}

/// Consecutive upstream failures after which a provider reports unhealthy.
const UNHEALTHY_AFTER: u32 = 3;

/// Gateway overhead buckets, seconds (microseconds to milliseconds).
const OVERHEAD_BUCKETS: [f64; 12] = [
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
];

/// A histogram as fixed bucket counters (non-cumulative; summed when rendered).
struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self::with_bounds(&DURATION_BUCKETS)
    }

    fn with_bounds(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of `name` with `labels`.
    fn render(&self, o: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            cum += b.load(Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or("+Inf".to_string(), f64::to_string);
            let _ = writeln!(o, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
        }
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(o, "{name}_sum{braced} {sum}");
        let _ = writeln!(o, "{name}_count{braced} {cum}");
    }
}

/// Cache operations counted per model, as `op` labels.
pub const CACHE_OPS: [&str; 3] = ["hit", "miss", "store"];

/// Series of keys, limits, cache and overhead.
struct Governance {
    /// Key names (escaped), then "-" for requests without a key.
    keys: Vec<String>,
    models: Vec<String>,
    /// Per (key, model): `keys.len() * models.len()` counters.
    rate_limit_hits: Box<[AtomicU64]>,
    /// Per model, per [`CACHE_OPS`].
    cache: Box<[[AtomicU64; 3]]>,
    overhead: Histogram,
}

/// Every series for one (model, provider) pair.
struct Slot {
    model: String,
    provider: String,
    requests: [AtomicU64; STATUSES.len() + 1],
    errors: [AtomicU64; GatewayError::LABELS.len()],
    duration: Histogram,
    ttft: Histogram,
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    active: AtomicI64,
}

struct Health {
    failures: AtomicU32,
    healthy: AtomicBool,
}

/// The registry. Slot `models.len()` collects requests that never reached a model
/// (bad key, unknown model, bad JSON); it is labelled `model="-",provider="-"`.
pub struct Metrics {
    slots: Box<[Slot]>,
    providers: Vec<String>,
    health: Box<[Health]>,
    /// Per provider, per [`UPSTREAM_STATUSES`].
    upstream: Box<[[AtomicU64; UPSTREAM_STATUSES.len()]]>,
    /// Per model (route index), per [`RETRY_REASONS`].
    retries: Box<[[AtomicU64; RETRY_REASONS.len()]]>,
    /// Per model, per entry of its fallback list.
    fallbacks: Box<[Box<[AtomicU64]>]>,
    gov: Governance,
}

impl Metrics {
    /// Builds the registry for `models` (name, provider index) over `providers`.
    pub fn new(providers: &[String], models: &[(String, usize)]) -> Self {
        Self::with_routes(providers, models, &[])
    }

    /// Builds the registry with per-model retry and fallback series for `routes`.
    pub fn with_routes(
        providers: &[String],
        models: &[(String, usize)],
        routes: &[ModelRoute],
    ) -> Self {
        let slot = |model: &str, provider: &str| Slot {
            model: escape(model),
            provider: escape(provider),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            duration: Histogram::new(),
            ttft: Histogram::new(),
            tokens_in: AtomicU64::new(0),
            tokens_out: AtomicU64::new(0),
            active: AtomicI64::new(0),
        };
        let mut slots: Vec<Slot> = models
            .iter()
            .map(|(m, p)| slot(m, providers.get(*p).map_or("-", String::as_str)))
            .collect();
        slots.push(slot("-", "-"));
        Metrics {
            slots: slots.into_boxed_slice(),
            providers: providers.iter().map(|p| escape(p)).collect(),
            health: providers
                .iter()
                .map(|_| Health {
                    failures: AtomicU32::new(0),
                    healthy: AtomicBool::new(true),
                })
                .collect(),
            upstream: providers
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            retries: routes
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            fallbacks: routes
                .iter()
                .map(|r| r.fallbacks.iter().map(|_| AtomicU64::new(0)).collect())
                .collect(),
            gov: Governance::new(
                &[],
                &routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            ),
        }
    }

    /// Adds the per-key series for `keys` (names, in key-table order).
    pub fn with_keys(mut self, keys: &[String]) -> Self {
        let g = &mut self.gov;
        g.keys = keys.iter().map(|k| escape(k)).collect();
        g.keys.push("-".to_string());
        g.rate_limit_hits = (0..g.keys.len() * g.models.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        self
    }

    /// Counts a request refused by a rate limit (`key` index, `None` without a key).
    pub fn rate_limit_hit(&self, key: Option<usize>, model: usize) {
        let g = &self.gov;
        let k = key.unwrap_or(g.keys.len() - 1).min(g.keys.len() - 1);
        if let Some(c) = g.rate_limit_hits.get(k * g.models.len() + model) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts a cache operation ([`CACHE_OPS`] index) of `model`.
    pub fn cache(&self, model: usize, op: usize) {
        if let Some(c) = self.gov.cache.get(model).and_then(|c| c.get(op)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The gateway's own time on one request.
    pub fn overhead(&self, d: Duration) {
        self.gov.overhead.observe(d);
    }

    /// Counts one upstream attempt of `provider` by its outcome.
    pub fn upstream(&self, provider: usize, r: Result<(), &GatewayError>) {
        if let Some(p) = self.upstream.get(provider) {
            p[upstream_index(r)].fetch_add(1, Relaxed);
        }
    }

    /// Counts a retry of `model` (route index) for reason `reason` ([`RETRY_REASONS`]).
    pub fn retry(&self, model: usize, reason: usize) {
        if let Some(c) = self.retries.get(model).and_then(|r| r.get(reason)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts a request of `model` moving to its `nth` fallback.
    pub fn fallback(&self, model: usize, nth: usize) {
        if let Some(c) = self.fallbacks.get(model).and_then(|f| f.get(nth)) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Slot for requests not routed to a model.
    pub fn unrouted(&self) -> usize {
        self.slots.len() - 1
    }

    fn slot(&self, i: usize) -> &Slot {
        &self.slots[i.min(self.slots.len() - 1)]
    }

    /// A request started on `slot`.
    pub fn start(&self, slot: usize) {
        self.slot(slot).active.fetch_add(1, Relaxed);
    }

    /// Moves an in-flight request from one slot to another (once its model is known).
    pub fn reroute(&self, from: usize, to: usize) {
        self.slot(from).active.fetch_sub(1, Relaxed);
        self.slot(to).active.fetch_add(1, Relaxed);
    }

    /// A request on `slot` finished (its body is done) after `elapsed`.
    pub fn finish(&self, slot: usize, elapsed: Duration) {
        let s = self.slot(slot);
        s.active.fetch_sub(1, Relaxed);
        s.duration.observe(elapsed);
    }

    /// Counts a response status on `slot`.
    pub fn status(&self, slot: usize, status: u16) {
        let i = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len());
        self.slot(slot).requests[i].fetch_add(1, Relaxed);
    }

    /// Counts an error by its label.
    pub fn error(&self, slot: usize, e: &GatewayError) {
        self.slot(slot).errors[e.label_index()].fetch_add(1, Relaxed);
    }

    /// Time to first content token.
    pub fn ttft(&self, slot: usize, d: Duration) {
        self.slot(slot).ttft.observe(d);
    }

    /// Input and output token counts.
    pub fn tokens(&self, slot: usize, input: u64, output: u64) {
        let s = self.slot(slot);
        if input > 0 {
            s.tokens_in.fetch_add(input, Relaxed);
        }
        if output > 0 {
            s.tokens_out.fetch_add(output, Relaxed);
        }
    }

    /// An upstream exchange of `provider` succeeded.
    pub fn upstream_ok(&self, provider: usize) {
        if let Some(h) = self.health.get(provider) {
            if h.failures.load(Relaxed) != 0 {
                h.failures.store(0, Relaxed);
            }
            if !h.healthy.load(Relaxed) {
                h.healthy.store(true, Relaxed);
            }
        }
    }

    /// An upstream exchange of `provider` failed.
    pub fn upstream_failed(&self, provider: usize) {
        if let Some(h) = self.health.get(provider) {
            if h.failures.fetch_add(1, Relaxed) + 1 >= UNHEALTHY_AFTER {
                h.healthy.store(false, Relaxed);
            }
        }
    }

    /// The text exposition of every series; `routes` gives the retry, fallback and
    /// breaker series their labels (pass the routes the registry was built with).
    pub fn render_with(&self, routes: &[ModelRoute]) -> String {
        let mut o = self.render();
        self.render_upstream(&mut o);
        self.render_governance(&mut o);
        self.render_routes(&mut o, routes);
        o
    }

    fn render_governance(&self, o: &mut String) {
        let g = &self.gov;
        head(
            o,
            "llm_gateway_rate_limit_hits_total",
            "counter",
            "Requests refused by a key's or a model's rpm/tpm limit, by key name and model.",
        );
        for (i, c) in g.rate_limit_hits.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                let (k, m) = (&g.keys[i / g.models.len()], &g.models[i % g.models.len()]);
                let _ = writeln!(
                    o,
                    "llm_gateway_rate_limit_hits_total{{key=\"{k}\",model=\"{m}\"}} {n}"
                );
            }
        }
        head(
            o,
            "llm_gateway_cache_operations_total",
            "counter",
            "Answer cache lookups (hit, miss) and stores, by model.",
        );
        for (m, ops) in g.models.iter().zip(g.cache.iter()) {
            for (op, c) in CACHE_OPS.iter().zip(ops.iter()) {
                let n = c.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        o,
                        "llm_gateway_cache_operations_total{{model=\"{m}\",op=\"{op}\"}} {n}"
                    );
                }
            }
        }
        head(
            o,
            "llm_gateway_overhead_seconds",
            "histogram",
            "Time spent in the gateway per request, excluding the waits for the client's body, the upstream and retry backoff.",
        );
        g.overhead.render(o, "llm_gateway_overhead_seconds", "");
    }

    fn render_upstream(&self, o: &mut String) {
        head(
            o,
            "llm_gateway_upstream_requests_total",
            "counter",
            "Upstream attempts (retries included), by provider and status or failure.",
        );
        for (p, counts) in self.providers.iter().zip(self.upstream.iter()) {
            for (i, c) in counts.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    let st = UPSTREAM_STATUSES[i];
                    let _ = writeln!(
                        o,
                        "llm_gateway_upstream_requests_total{{provider=\"{p}\",status=\"{st}\"}} {n}"
                    );
                }
            }
        }
    }

    fn render_routes(&self, o: &mut String, routes: &[ModelRoute]) {
        head(
            o,
            "llm_gateway_retries_total",
            "counter",
            "Retried upstream attempts, by model and reason.",
        );
        for (r, counts) in routes.iter().zip(self.retries.iter()) {
            let m = escape(&r.name);
            for (i, c) in counts.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    let reason = RETRY_REASONS[i];
                    let _ = writeln!(
                        o,
                        "llm_gateway_retries_total{{model=\"{m}\",reason=\"{reason}\"}} {n}"
                    );
                }
            }
        }
        head(
            o,
            "llm_gateway_fallbacks_total",
            "counter",
            "Requests moved to a fallback model.",
        );
        for (r, counts) in routes.iter().zip(self.fallbacks.iter()) {
            let m = escape(&r.name);
            for (f, c) in r.fallbacks.iter().zip(counts.iter()) {
                let to = escape(&routes[*f].name);
                let _ = writeln!(
                    o,
                    "llm_gateway_fallbacks_total{{model=\"{m}\",to=\"{to}\"}} {}",
                    c.load(Relaxed)
                );
            }
        }
        head(
            o,
            "llm_gateway_circuit_breaker_state",
            "gauge",
            "Circuit breaker of each deployment: 0 closed, 1 half-open, 2 open.",
        );
        for r in routes {
            let m = escape(&r.name);
            for d in r.deployments.iter() {
                let _ = writeln!(
                    o,
                    "llm_gateway_circuit_breaker_state{{model=\"{m}\",deployment=\"{}\"}} {}",
                    escape(&d.label),
                    d.breaker.state()
                );
            }
        }
    }

    /// The text exposition of the per-slot and provider-health series.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096 + self.slots.len() * 4096);
        head(
            &mut o,
            "llm_gateway_requests_total",
            "counter",
            "Requests answered, by model, provider and HTTP status.",
        );
        for s in self.slots.iter() {
            for (i, c) in s.requests.iter().enumerate() {
                let n = c.load(Relaxed);
                if n == 0 {
                    continue;
                }
                let status = STATUSES.get(i).map_or("other".to_string(), u16::to_string);
                let _ = writeln!(
                    o,
                    "llm_gateway_requests_total{{model=\"{}\",provider=\"{}\",status=\"{status}\"}} {n}",
                    s.model, s.provider
                );
            }
        }
        for (name, help, pick) in [
            (
                "llm_gateway_request_duration_seconds",
                "Request duration until the last byte of the answer.",
                (|s: &Slot| &s.duration) as fn(&Slot) -> &Histogram,
            ),
            (
                "llm_gateway_ttft_seconds",
                "Time from request to the first content token of a stream.",
                |s: &Slot| &s.ttft,
            ),
        ] {
            head(&mut o, name, "histogram", help);
            for s in self.slots.iter() {
                let labels = format!("model=\"{}\",provider=\"{}\"", s.model, s.provider);
                pick(s).render(&mut o, name, &labels);
            }
        }
        head(
            &mut o,
            "llm_gateway_tokens_total",
            "counter",
            "Tokens, input (prompt) and output (completion).",
        );
        for s in self.slots.iter() {
            for (dir, v) in [("input", &s.tokens_in), ("output", &s.tokens_out)] {
                let _ = writeln!(
                    o,
                    "llm_gateway_tokens_total{{direction=\"{dir}\",model=\"{}\",provider=\"{}\"}} {}",
                    s.model,
                    s.provider,
                    v.load(Relaxed)
                );
            }
        }
        head(
            &mut o,
            "llm_gateway_active_requests",
            "gauge",
            "Requests in flight (streams count until their last byte).",
        );
        for s in self.slots.iter() {
            let _ = writeln!(
                o,
                "llm_gateway_active_requests{{model=\"{}\",provider=\"{}\"}} {}",
                s.model,
                s.provider,
                s.active.load(Relaxed)
            );
        }
        head(
            &mut o,
            "llm_gateway_errors_total",
            "counter",
            "Failed requests by error type.",
        );
        for s in self.slots.iter() {
            for (i, c) in s.errors.iter().enumerate() {
                let n = c.load(Relaxed);
                if n == 0 {
                    continue;
                }
                let _ = writeln!(
                    o,
                    "llm_gateway_errors_total{{error_type=\"{}\",model=\"{}\",provider=\"{}\"}} {n}",
                    GatewayError::LABELS[i],
                    s.model,
                    s.provider
                );
            }
        }
        head(
            &mut o,
            "llm_gateway_provider_health",
            "gauge",
            "1 while a provider answers, 0 after consecutive upstream failures.",
        );
        for (p, h) in self.providers.iter().zip(self.health.iter()) {
            let _ = writeln!(
                o,
                "llm_gateway_provider_health{{provider=\"{p}\"}} {}",
                u8::from(h.healthy.load(Relaxed))
            );
        }
        o
    }
}

impl Governance {
    fn new(keys: &[String], models: &[String]) -> Self {
        let mut names: Vec<String> = keys.iter().map(|k| escape(k)).collect();
        names.push("-".to_string());
        let models: Vec<String> = models.iter().map(|m| escape(m)).collect();
        Governance {
            rate_limit_hits: (0..names.len() * models.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            cache: models
                .iter()
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            keys: names,
            models,
            overhead: Histogram::with_bounds(&OVERHEAD_BUCKETS),
        }
    }
}

fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render() {
        let m = Metrics::new(&["p".into()], &[("m".into(), 0)]);
        m.start(0);
        m.status(0, 200);
        m.tokens(0, 3, 5);
        m.finish(0, Duration::from_millis(3));
        m.error(m.unrouted(), &GatewayError::Unauthorized);
        let t = m.render();
        assert!(
            t.contains("llm_gateway_requests_total{model=\"m\",provider=\"p\",status=\"200\"} 1")
        );
        assert!(t.contains(
            "llm_gateway_request_duration_seconds_bucket{model=\"m\",provider=\"p\",le=\"0.005\"} 1"
        ));
        assert!(t.contains(
            "llm_gateway_request_duration_seconds_bucket{model=\"m\",provider=\"p\",le=\"0.0025\"} 0"
        ));
        assert!(t.contains(
            "llm_gateway_tokens_total{direction=\"output\",model=\"m\",provider=\"p\"} 5"
        ));
        assert!(t.contains(
            "llm_gateway_errors_total{error_type=\"unauthorized\",model=\"-\",provider=\"-\"} 1"
        ));
        assert!(t.contains("llm_gateway_active_requests{model=\"m\",provider=\"p\"} 0"));
    }

    #[test]
    fn health_flips() {
        let m = Metrics::new(&["p".into()], &[("m".into(), 0)]);
        for _ in 0..UNHEALTHY_AFTER {
            m.upstream_failed(0);
        }
        assert!(m
            .render()
            .contains("llm_gateway_provider_health{provider=\"p\"} 0"));
        m.upstream_ok(0);
        assert!(m
            .render()
            .contains("llm_gateway_provider_health{provider=\"p\"} 1"));
    }
}
