//! Prometheus metrics in a fixed registry built from the config: every series is an
//! atomic found by index (model slot, status slot, error slot), so the hot path never
//! hashes or locks label strings. Rendered in the text exposition format.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::error::{GatewayError, RETRY_REASONS};
use crate::routing::ModelRoute;

/// Status codes with their own `requests_total` series; anything else is `other`.
/// 499 counts requests whose client went away before the answer (nginx's convention).
const STATUSES: [u16; 12] = [200, 400, 401, 404, 405, 408, 413, 429, 499, 500, 502, 504];
/// Request duration bucket bounds, nanoseconds (0.5 ms to 60 s).
const DURATION_NS: [u64; 16] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
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

/// Gateway overhead bucket bounds, nanoseconds (5 µs to 50 ms).
const OVERHEAD_NS: [u64; 12] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 50_000_000,
];

/// Threads with a shard of their own; later threads share one more shard.
const MAX_OWNED_SHARDS: usize = 64;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's number, handed out in order of first use.
fn thread_index() -> usize {
    THREAD.with(|t| {
        if t.get() == usize::MAX {
            t.set(NEXT_THREAD.fetch_add(1, Relaxed));
        }
        t.get()
    })
}

/// Adds `v` to a counter. On a shard only this thread writes (`owned`), a plain load
/// and store is enough and costs no locked instruction; the shared shard needs the
/// read-modify-write. Wrapping, so gauges can go down by adding a negative.
#[inline]
fn add(c: &AtomicU64, v: u64, owned: bool) {
    if owned {
        c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
    } else {
        c.fetch_add(v, Relaxed);
    }
}

/// A histogram as fixed bucket counters (non-cumulative; summed when rendered).
struct Hist<const B: usize> {
    buckets: [AtomicU64; B],
    sum_ns: AtomicU64,
}

type DurationHist = Hist<{ DURATION_NS.len() + 1 }>;
type OverheadHist = Hist<{ OVERHEAD_NS.len() + 1 }>;

impl<const B: usize> Hist<B> {
    fn new() -> Self {
        Hist {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, bounds: &[u64], d: Duration, owned: bool) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = bounds.iter().position(|&b| ns <= b).unwrap_or(bounds.len());
        add(&self.buckets[i], 1, owned);
        add(&self.sum_ns, ns, owned);
    }
}

/// Writes the `_bucket`, `_sum` and `_count` lines of `name` with `labels`, summing
/// the histograms of every shard.
fn render_hist<'a, const B: usize>(
    o: &mut String,
    name: &str,
    labels: &str,
    bounds: &[u64],
    hists: impl Iterator<Item = &'a Hist<B>> + Clone,
) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cum = 0u64;
    for i in 0..B {
        cum = cum.wrapping_add(sum_of(hists.clone(), |h| &h.buckets[i]));
        let le = bounds
            .get(i)
            .map_or("+Inf".to_string(), |&ns| (ns as f64 / 1e9).to_string());
        let _ = writeln!(o, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
    }
    let sum = sum_of(hists, |h| &h.sum_ns) as f64 / 1e9;
    let braced = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(o, "{name}_sum{braced} {sum}");
    let _ = writeln!(o, "{name}_count{braced} {cum}");
}

/// The sum over `items` of the counter `pick` finds in each.
fn sum_of<'a, T: 'a>(
    items: impl Iterator<Item = &'a T>,
    pick: impl Fn(&'a T) -> &'a AtomicU64,
) -> u64 {
    items.fold(0, |acc, t| acc.wrapping_add(pick(t).load(Relaxed)))
}

/// Cache operations counted per model, as `op` labels.
pub const CACHE_OPS: [&str; 3] = ["hit", "miss", "store"];

/// Series of keys, limits and cache (rare events: plain shared atomics).
struct Governance {
    /// Key names (escaped), then "-" for requests without a key.
    keys: Vec<String>,
    models: Vec<String>,
    /// Per (key, model): `keys.len() * models.len()` counters.
    rate_limit_hits: Box<[AtomicU64]>,
    /// Per model, per [`CACHE_OPS`].
    cache: Box<[[AtomicU64; 3]]>,
}

/// Labels and rare-event series of one (model, provider) pair.
struct Slot {
    model: String,
    provider: String,
    errors: [AtomicU64; GatewayError::LABELS.len()],
}

/// The per-request series of one slot in one shard. Aligned so two shards' cells
/// never share a cache line (nor an adjacent-line prefetch pair).
#[repr(align(128))]
struct SlotCells {
    requests: [AtomicU64; STATUSES.len() + 1],
    duration: DurationHist,
    ttft: DurationHist,
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    /// Gauge as a wrapping sum of +1/-1 (a request may end on another thread).
    active: AtomicU64,
}

/// What one thread writes on every request; summed over shards at scrape time.
struct Shard {
    cells: Box<[SlotCells]>,
    /// Per provider, per [`UPSTREAM_STATUSES`].
    upstream: Box<[[AtomicU64; UPSTREAM_STATUSES.len()]]>,
    overhead: OverheadHist,
}

impl Shard {
    fn new(slots: usize, providers: usize) -> Self {
        Shard {
            cells: (0..slots)
                .map(|_| SlotCells {
                    requests: std::array::from_fn(|_| AtomicU64::new(0)),
                    duration: Hist::new(),
                    ttft: Hist::new(),
                    tokens_in: AtomicU64::new(0),
                    tokens_out: AtomicU64::new(0),
                    active: AtomicU64::new(0),
                })
                .collect(),
            upstream: (0..providers)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            overhead: Hist::new(),
        }
    }
}

struct Health {
    failures: AtomicU32,
    healthy: AtomicBool,
}

/// The registry. Slot `models.len()` collects requests that never reached a model
/// (bad key, unknown model, bad JSON); it is labelled `model="-",provider="-"`.
/// The per-request series live in per-thread shards: a request's record is a few
/// plain stores instead of a dozen locked read-modify-writes on shared lines.
pub struct Metrics {
    slots: Box<[Slot]>,
    /// `owned` shards, one per early thread, then one shared by the rest.
    shards: Box<[Shard]>,
    owned: usize,
    providers: Vec<String>,
    health: Box<[Health]>,
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
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
        };
        let mut slots: Vec<Slot> = models
            .iter()
            .map(|(m, p)| slot(m, providers.get(*p).map_or("-", String::as_str)))
            .collect();
        slots.push(slot("-", "-"));
        let owned = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_OWNED_SHARDS);
        Metrics {
            shards: (0..=owned)
                .map(|_| Shard::new(slots.len(), providers.len()))
                .collect(),
            owned,
            slots: slots.into_boxed_slice(),
            providers: providers.iter().map(|p| escape(p)).collect(),
            health: providers
                .iter()
                .map(|_| Health {
                    failures: AtomicU32::new(0),
                    healthy: AtomicBool::new(true),
                })
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
        let (s, owned) = self.shard();
        s.overhead.observe(&OVERHEAD_NS, d, owned);
    }

    /// Counts one upstream attempt of `provider` by its outcome.
    pub fn upstream(&self, provider: usize, r: Result<(), &GatewayError>) {
        let (s, owned) = self.shard();
        if let Some(p) = s.upstream.get(provider) {
            add(&p[upstream_index(r)], 1, owned);
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

    /// This thread's shard, and whether this thread is its only writer.
    #[inline]
    fn shard(&self) -> (&Shard, bool) {
        let t = thread_index();
        if t < self.owned {
            (&self.shards[t], true)
        } else {
            (&self.shards[self.owned], false)
        }
    }

    /// This thread's cells of `slot`, and whether this thread is their only writer.
    #[inline]
    fn cells(&self, slot: usize) -> (&SlotCells, bool) {
        let (s, owned) = self.shard();
        (&s.cells[slot.min(s.cells.len() - 1)], owned)
    }

    /// The sum over shards of the counter `pick` finds in each.
    fn sum(&self, pick: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        sum_of(self.shards.iter(), pick)
    }

    /// A request started on `slot`.
    pub fn start(&self, slot: usize) {
        let (c, owned) = self.cells(slot);
        add(&c.active, 1, owned);
    }

    /// Moves an in-flight request from one slot to another (once its model is known).
    pub fn reroute(&self, from: usize, to: usize) {
        let (c, owned) = self.cells(from);
        add(&c.active, u64::MAX, owned);
        let (c, owned) = self.cells(to);
        add(&c.active, 1, owned);
    }

    /// A request on `slot` finished (its body is done) after `elapsed`.
    pub fn finish(&self, slot: usize, elapsed: Duration) {
        let (c, owned) = self.cells(slot);
        add(&c.active, u64::MAX, owned);
        c.duration.observe(&DURATION_NS, elapsed, owned);
    }

    /// Counts a response status on `slot`.
    pub fn status(&self, slot: usize, status: u16) {
        let i = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len());
        let (c, owned) = self.cells(slot);
        add(&c.requests[i], 1, owned);
    }

    /// Counts an error by its label.
    pub fn error(&self, slot: usize, e: &GatewayError) {
        self.slot(slot).errors[e.label_index()].fetch_add(1, Relaxed);
    }

    /// Time to first content token.
    pub fn ttft(&self, slot: usize, d: Duration) {
        let (c, owned) = self.cells(slot);
        c.ttft.observe(&DURATION_NS, d, owned);
    }

    /// Input and output token counts.
    pub fn tokens(&self, slot: usize, input: u64, output: u64) {
        let (c, owned) = self.cells(slot);
        if input > 0 {
            add(&c.tokens_in, input, owned);
        }
        if output > 0 {
            add(&c.tokens_out, output, owned);
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
        let hists = self.shards.iter().map(|s| &s.overhead);
        render_hist(o, "llm_gateway_overhead_seconds", "", &OVERHEAD_NS, hists);
    }

    fn render_upstream(&self, o: &mut String) {
        head(
            o,
            "llm_gateway_upstream_requests_total",
            "counter",
            "Upstream attempts (retries included), by provider and status or failure.",
        );
        for (pi, p) in self.providers.iter().enumerate() {
            for (i, st) in UPSTREAM_STATUSES.iter().enumerate() {
                let n = self.sum(|s| &s.upstream[pi][i]);
                if n > 0 {
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
        self.render_requests(&mut o);
        self.render_slot_hists(&mut o);
        self.render_gauges(&mut o);
        o
    }

    fn render_requests(&self, o: &mut String) {
        head(
            o,
            "llm_gateway_requests_total",
            "counter",
            "Requests answered, by model, provider and HTTP status.",
        );
        for (si, s) in self.slots.iter().enumerate() {
            for i in 0..=STATUSES.len() {
                let n = self.sum(|sh| &sh.cells[si].requests[i]);
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
        head(
            o,
            "llm_gateway_tokens_total",
            "counter",
            "Tokens, input (prompt) and output (completion).",
        );
        for (si, s) in self.slots.iter().enumerate() {
            let input = self.sum(|sh| &sh.cells[si].tokens_in);
            let output = self.sum(|sh| &sh.cells[si].tokens_out);
            for (dir, v) in [("input", input), ("output", output)] {
                let _ = writeln!(
                    o,
                    "llm_gateway_tokens_total{{direction=\"{dir}\",model=\"{}\",provider=\"{}\"}} {v}",
                    s.model, s.provider,
                );
            }
        }
    }

    fn render_slot_hists(&self, o: &mut String) {
        for (name, help, pick) in [
            (
                "llm_gateway_request_duration_seconds",
                "Request duration until the last byte of the answer.",
                (|c: &SlotCells| &c.duration) as fn(&SlotCells) -> &DurationHist,
            ),
            (
                "llm_gateway_ttft_seconds",
                "Time from request to the first content token of a stream.",
                |c: &SlotCells| &c.ttft,
            ),
        ] {
            head(o, name, "histogram", help);
            for (si, s) in self.slots.iter().enumerate() {
                let labels = format!("model=\"{}\",provider=\"{}\"", s.model, s.provider);
                let hists = self.shards.iter().map(|sh| pick(&sh.cells[si]));
                render_hist(o, name, &labels, &DURATION_NS, hists);
            }
        }
    }

    fn render_gauges(&self, o: &mut String) {
        head(
            o,
            "llm_gateway_active_requests",
            "gauge",
            "Requests in flight (streams count until their last byte).",
        );
        for (si, s) in self.slots.iter().enumerate() {
            // Wrapping sum of +1/-1 across shards, read as signed.
            let active = self.sum(|sh| &sh.cells[si].active) as i64;
            let _ = writeln!(
                o,
                "llm_gateway_active_requests{{model=\"{}\",provider=\"{}\"}} {active}",
                s.model, s.provider,
            );
        }
        head(
            o,
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
            o,
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
    fn shards_sum_across_threads() {
        let m = Metrics::new(&["p".into()], &[("m".into(), 0)]);
        // More threads than owned shards, so the shared shard is exercised too.
        let threads = m.owned + 3;
        std::thread::scope(|sc| {
            for _ in 0..threads {
                sc.spawn(|| {
                    for _ in 0..1000 {
                        m.start(m.unrouted());
                        m.reroute(m.unrouted(), 0);
                        m.status(0, 200);
                        m.tokens(0, 1, 2);
                        m.finish(0, Duration::from_millis(3));
                        m.overhead(Duration::from_micros(7));
                    }
                    // One request still open on this thread.
                    m.start(0);
                });
            }
        });
        let t = m.render_with(&[]);
        let n = threads * 1000;
        for line in [
            format!("llm_gateway_requests_total{{model=\"m\",provider=\"p\",status=\"200\"}} {n}"),
            format!("llm_gateway_request_duration_seconds_count{{model=\"m\",provider=\"p\"}} {n}"),
            format!(
                "llm_gateway_tokens_total{{direction=\"output\",model=\"m\",provider=\"p\"}} {}",
                2 * n
            ),
            format!("llm_gateway_active_requests{{model=\"m\",provider=\"p\"}} {threads}"),
            "llm_gateway_active_requests{model=\"-\",provider=\"-\"} 0".to_string(),
            format!("llm_gateway_overhead_seconds_bucket{{le=\"0.00001\"}} {n}"),
            "llm_gateway_overhead_seconds_bucket{le=\"0.000005\"} 0".to_string(),
        ] {
            assert!(t.contains(&line), "missing {line}");
        }
    }

    #[test]
    fn bucket_bounds_render_as_seconds() {
        let m = Metrics::new(&["p".into()], &[("m".into(), 0)]);
        let t = m.render_with(&[]);
        let les = |name: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with(name) && !l.contains("model=\"-\""))
                .filter_map(|l| l.split("le=\"").nth(1))
                .filter_map(|r| r.split('"').next())
                .map(String::from)
                .collect()
        };
        let want = "0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60 +Inf";
        assert_eq!(
            les("llm_gateway_request_duration_seconds_bucket").join(" "),
            want
        );
        let want = "0.000005 0.00001 0.000025 0.00005 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.05 +Inf";
        assert_eq!(les("llm_gateway_overhead_seconds_bucket").join(" "), want);
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
