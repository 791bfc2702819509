//! Deployments and how a request picks one: routing strategies (weighted, least busy,
//! latency P2C over a peak EWMA), circuit breakers, the retry budget and backoff.
//! Per-deployment state is atomics: no lock and no allocation on the request path.

pub mod breaker;
pub mod window;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::config::{ModelSettings, ProviderSettings, RetrySettings, Strategy};
use breaker::Breaker;
use window::Window;

/// Nanoseconds since the first call (a monotonic clock that fits in an atomic).
pub fn now_ns() -> u64 {
    ns_at(Instant::now())
}

/// An instant already read, on the [`now_ns`] clock (no clock read: callers that hold
/// one pass it on instead of reading the clock again).
pub fn ns_at(t: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(t.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX)
}

/// Milliseconds on the same clock.
pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// One deployment of a model and its live state.
pub struct Deployment {
    /// Index into the server's providers.
    pub provider: usize,
    pub upstream_model: Option<String>,
    pub weight: u32,
    /// Name in metrics, logs and `x-gateway-deployment`: the provider's name, with
    /// `#N` appended when one model lists the same provider twice.
    pub label: String,
    pub header: HeaderValue,
    /// Metrics slot of (model, provider).
    pub slot: usize,
    pub breaker: Breaker,
    in_flight: AtomicU32,
    /// Peak EWMA of time to first byte, ns, as f64 bits; and when it was last updated.
    ewma: AtomicU64,
    stamp: AtomicU64,
}

impl Deployment {
    /// Requests in flight on this deployment.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// An attempt starts (pair with [`Deployment::end`]).
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// An attempt (or the stream it opened) ended.
    pub fn end(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// Feeds a time to first byte into the peak EWMA: a slower sample is taken at
    /// once, a faster one blends in with weight by the time since the last sample.
    pub fn observe(&self, ttfb: Duration, decay_ns: f64, now: u64) {
        let rtt = ttfb.as_nanos() as f64;
        let prev = f64::from_bits(self.ewma.load(Relaxed));
        let next = if rtt > prev {
            rtt
        } else {
            let w = decay(now.saturating_sub(self.stamp.load(Relaxed)), decay_ns);
            prev * w + rtt * (1.0 - w)
        };
        self.ewma.store(next.to_bits(), Relaxed);
        self.stamp.store(now, Relaxed);
    }

    /// The P2C cost: the EWMA decayed towards 0 since its last sample (so a deployment
    /// that got no traffic is tried again), times the requests in flight plus one.
    fn cost(&self, now: u64, decay_ns: f64) -> f64 {
        let ewma = f64::from_bits(self.ewma.load(Relaxed));
        let w = decay(now.saturating_sub(self.stamp.load(Relaxed)), decay_ns);
        ewma * w * f64::from(self.in_flight() + 1)
    }

    /// The current EWMA of time to first byte (for tests and benches).
    pub fn ewma_ns(&self) -> f64 {
        f64::from_bits(self.ewma.load(Relaxed))
    }
}

/// A model: its deployments, strategy, retries, fallbacks and retry budget.
pub struct ModelRoute {
    pub name: String,
    pub deployments: Box<[Deployment]>,
    /// Running sums of the weights, for a binary-search weighted pick when every
    /// deployment is a candidate (the common case).
    cum_weights: Box<[u64]>,
    pub strategy: Strategy,
    pub retries: u32,
    /// Indexes of fallback models, in order.
    pub fallbacks: Vec<usize>,
    /// Requests (a) and retries (b) over the budget's window.
    budget: Window,
    budget_percent: f64,
    budget_floor: f64,
    decay_ns: f64,
}

/// A deployment picked for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub index: usize,
    /// This attempt is the half-open breaker's probe.
    pub probe: bool,
}

impl ModelRoute {
    /// Builds a model's route; `slot_of(provider)` gives the metrics slot.
    pub fn new(
        m: &ModelSettings,
        providers: &[ProviderSettings],
        retry: &RetrySettings,
        mut slot_of: impl FnMut(usize) -> usize,
    ) -> Self {
        let deployments = m
            .deployments
            .iter()
            .enumerate()
            .map(|(j, d)| {
                let name = &providers[d.provider].name;
                let twice = m
                    .deployments
                    .iter()
                    .filter(|x| x.provider == d.provider)
                    .count()
                    > 1;
                let label = if twice {
                    format!("{name}#{j}")
                } else {
                    name.clone()
                };
                Deployment {
                    provider: d.provider,
                    upstream_model: d.upstream_model.clone(),
                    weight: d.weight,
                    header: HeaderValue::from_str(&label)
                        .unwrap_or_else(|_| HeaderValue::from_static("-")),
                    label,
                    slot: slot_of(d.provider),
                    breaker: Breaker::new(&m.breaker, retry.retry_after_max_ms),
                    in_flight: AtomicU32::new(0),
                    ewma: AtomicU64::new(0),
                    stamp: AtomicU64::new(0),
                }
            })
            .collect::<Box<[Deployment]>>();
        let cum_weights = deployments
            .iter()
            .scan(0u64, |acc, d| {
                *acc += u64::from(d.weight);
                Some(*acc)
            })
            .collect();
        ModelRoute {
            name: m.name.clone(),
            cum_weights,
            deployments,
            strategy: m.routing,
            retries: m.retries,
            fallbacks: m.fallbacks.clone(),
            budget: Window::new(retry.budget.window_ms),
            budget_percent: retry.budget.percent / 100.0,
            budget_floor: retry.budget.min_per_second * retry.budget.window_ms as f64 / 1000.0,
            decay_ns: retry.latency_decay_ms as f64 * 1e6,
        }
    }

    /// The EWMA decay, ns.
    pub fn decay_ns(&self) -> f64 {
        self.decay_ns
    }

    /// Picks a deployment for the next attempt: among those whose breaker admits
    /// traffic and that were not tried yet (`tried` bit set), else among the tried
    /// ones; `None` when every breaker is open.
    ///
    /// Breakers are asked only about the deployment chosen (and the next choice when
    /// it refuses), not all up front: choosing again among the rest is the same draw
    /// as choosing among the admitting ones, and an O(n) scan is saved per request.
    pub fn pick(&self, tried: u64, now_ns: u64) -> Option<Pick> {
        let now_ms = now_ns / 1_000_000;
        let all = u64::MAX >> (64 - self.deployments.len().clamp(1, 64));
        let untried = all & !tried;
        [untried, all & tried]
            .into_iter()
            .find_map(|mask| self.admit(mask, now_ms, now_ns))
    }

    /// Chooses among `mask` until a breaker admits the choice.
    fn admit(&self, mut mask: u64, now_ms: u64, now_ns: u64) -> Option<Pick> {
        while mask != 0 {
            let i = self.choose(mask, now_ns);
            let d = &self.deployments[i];
            match d.breaker.acquire(now_ms, &d.label) {
                Some(probe) => return Some(Pick { index: i, probe }),
                None => mask &= !(1 << i),
            }
        }
        None
    }

    /// One deployment out of the non-empty bit set `mask`, by the model's strategy.
    pub fn choose(&self, mask: u64, now_ns: u64) -> usize {
        if mask.count_ones() == 1 {
            return mask.trailing_zeros() as usize;
        }
        match self.strategy {
            Strategy::Weighted => self.weighted(mask),
            Strategy::LeastBusy => self.least_busy(mask),
            Strategy::Latency => self.p2c(mask, now_ns),
        }
    }

    fn weighted(&self, mask: u64) -> usize {
        let n = self.deployments.len();
        let total = self.cum_weights.last().copied().unwrap_or(0);
        if total > 0 && mask.count_ones() as usize == n {
            let r = fastrand::u64(..total);
            return self.cum_weights.partition_point(|&c| c <= r);
        }
        let total: u64 = bits(mask)
            .map(|i| u64::from(self.deployments[i].weight))
            .sum();
        if total == 0 {
            return nth_bit(mask, fastrand::u32(..mask.count_ones()));
        }
        let mut r = fastrand::u64(..total);
        for i in bits(mask) {
            let w = u64::from(self.deployments[i].weight);
            if r < w {
                return i;
            }
            r -= w;
        }
        mask.trailing_zeros() as usize
    }

    /// The deployment with the fewest requests in flight: exact up to
    /// [`LEAST_BUSY_SCAN`] candidates, beyond that the less busy of two random ones
    /// (power of two choices: O(1), and nearly as even under load).
    fn least_busy(&self, mask: u64) -> usize {
        let flight = |i: usize| self.deployments[i].in_flight();
        if mask.count_ones() > LEAST_BUSY_SCAN {
            let (a, b) = two_of(mask);
            return if flight(b) < flight(a) { b } else { a };
        }
        // One pass starting at a random candidate, so ties spread.
        let s = nth_bit(mask, fastrand::u32(..mask.count_ones()));
        let mut best = (u32::MAX, 0);
        for j in bits(mask.rotate_right(s as u32)) {
            let i = (j + s) % 64;
            let f = flight(i);
            if f < best.0 {
                best = (f, i);
            }
        }
        best.1
    }

    fn p2c(&self, mask: u64, now: u64) -> usize {
        let (a, b) = two_of(mask);
        let (ca, cb) = (
            self.deployments[a].cost(now, self.decay_ns),
            self.deployments[b].cost(now, self.decay_ns),
        );
        if cb < ca {
            b
        } else {
            a
        }
    }

    /// Counts a client request (arrived at `now_ms`) for the retry budget.
    pub fn count_request(&self, now_ms: u64) {
        self.budget.add(now_ms, 1, 0);
    }

    /// Takes a retry from the budget; `false` when retries already add their share.
    pub fn take_retry(&self) -> bool {
        let now = now_ms();
        let (requests, retries) = self.budget.sum(now);
        let allowed = (requests as f64 * self.budget_percent).max(self.budget_floor);
        if (retries as f64) < allowed {
            self.budget.add(now, 0, 1);
            true
        } else {
            false
        }
    }

    /// When every breaker is open: milliseconds until the first admits a probe, and
    /// whether all of them were opened by upstream 429s.
    pub fn all_open(&self) -> (u64, bool) {
        let now = now_ms();
        let wait = self
            .deployments
            .iter()
            .map(|d| d.breaker.wait_ms(now))
            .min()
            .unwrap_or(0);
        let limited = self.deployments.iter().all(|d| d.breaker.rate_limited());
        (wait, limited)
    }
}

/// exp(-dt/decay): the weight left to a sample `dt` ns old. A deployment in use was
/// sampled a moment ago, where three Taylor terms are exact to 4e-5 and cost a few
/// multiplications instead of a libm `exp` call (two per latency pick).
fn decay(dt_ns: u64, decay_ns: f64) -> f64 {
    let x = dt_ns as f64 / decay_ns;
    if x < 1.0 / 16.0 {
        1.0 - x + x * x * 0.5
    } else {
        (-x).exp()
    }
}

/// Candidates a least-busy pick compares exactly; more get a power-of-two-choices pick.
const LEAST_BUSY_SCAN: u32 = 16;

/// Two different set bits of `mask` (at least two set), at random.
fn two_of(mask: u64) -> (usize, usize) {
    let n = mask.count_ones();
    let a = fastrand::u32(..n);
    let b = (a + 1 + fastrand::u32(..n - 1)) % n;
    (nth_bit(mask, a), nth_bit(mask, b))
}

/// Set bit indexes of `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

/// Index of the `n`-th set bit of `mask` (which has more than `n` set). When every
/// deployment is a candidate (the mask is all ones from bit 0, the common case) that
/// is `n` itself; otherwise the lowest set bit is cleared `n` times.
fn nth_bit(mut mask: u64, n: u32) -> usize {
    if mask & mask.wrapping_add(1) == 0 {
        return n as usize;
    }
    for _ in 0..n {
        mask &= mask - 1;
    }
    mask.trailing_zeros() as usize
}

/// Full-jitter exponential backoff before attempt `n` (1 = first retry) on the same
/// deployment: a uniform wait in 0..min(max, base·2^(n-1)).
pub fn backoff(retry: &RetrySettings, n: u32) -> Duration {
    let cap = retry
        .backoff_base_ms
        .saturating_mul(1u64 << n.saturating_sub(1).min(20))
        .min(retry.backoff_max_ms);
    if cap == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(fastrand::u64(..cap * 1000))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn route(extra: &str) -> ModelRoute {
        let text = format!(
            r#"
providers:
  a: {{type: openai, base_url: "http://127.0.0.1:9/v1"}}
  b: {{type: openai, base_url: "http://127.0.0.1:9/v1"}}
  c: {{type: openai, base_url: "http://127.0.0.1:9/v1"}}
models:
  - name: m
    deployments: [{{provider: a, weight: 1}}, {{provider: b, weight: 3}}, {{provider: c, weight: 0}}]
    {extra}
"#
        );
        let s = parse(&text).unwrap().validate().unwrap();
        ModelRoute::new(&s.models[0], &s.providers, &s.retry, |p| p)
    }

    #[test]
    fn weighted_follows_weights_and_skips_zero() {
        let r = route("routing: weighted");
        let mut n = [0u32; 3];
        for _ in 0..40_000 {
            n[r.pick(0, now_ns()).unwrap().index] += 1;
        }
        assert_eq!(n[2], 0);
        let share = f64::from(n[1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{n:?}");
    }

    #[test]
    fn tried_deployments_are_avoided_then_reused() {
        let r = route("routing: weighted");
        for _ in 0..100 {
            assert_eq!(r.pick(0b010, now_ns()).unwrap().index, 0);
        }
        // All weighted ones tried: the zero-weight one is still untried.
        assert_eq!(r.pick(0b011, now_ns()).unwrap().index, 2);
        assert!(r.pick(0b111, now_ns()).is_some());
    }

    #[test]
    fn open_breakers_are_skipped_tried_or_not() {
        let r = route("breaker: {consecutive_failures: 1, cooldown_ms: 60000}");
        let fail = breaker::Outcome::Failure {
            retry_after_ms: None,
        };
        r.deployments[1].breaker.record(now_ms(), fail, "b");
        for _ in 0..200 {
            assert_eq!(r.pick(0, now_ns()).unwrap().index, 0);
        }
        // a tried, b open: the untried zero-weight c before a again.
        assert_eq!(r.pick(0b001, now_ns()).unwrap().index, 2);
        // Only b untried and open: back to the tried ones that admit.
        assert_eq!(r.pick(0b101, now_ns()).unwrap().index, 0);
    }

    #[test]
    fn least_busy_takes_the_idle_one() {
        let r = route("routing: least_busy");
        r.deployments[0].begin();
        r.deployments[2].begin();
        for _ in 0..100 {
            assert_eq!(r.pick(0, now_ns()).unwrap().index, 1);
        }
        // Ties spread over all of them.
        r.deployments[1].begin();
        r.deployments[1].begin();
        r.deployments[0].begin();
        r.deployments[2].begin();
        let mut n = [0u32; 3];
        for _ in 0..3000 {
            n[r.pick(0, now_ns()).unwrap().index] += 1;
        }
        assert!(n.iter().all(|&k| k > 600), "{n:?}");
    }

    #[test]
    fn least_busy_over_many_is_two_choices() {
        let providers: String = (0..20)
            .map(|i| format!("  p{i}: {{type: openai, base_url: \"http://127.0.0.1:9/v1\"}}\n"))
            .collect();
        let deps: Vec<String> = (0..20).map(|i| format!("{{provider: p{i}}}")).collect();
        let text = format!(
            "providers:\n{providers}models:\n  - {{name: m, routing: least_busy, deployments: [{}]}}\n",
            deps.join(", ")
        );
        let s = parse(&text).unwrap().validate().unwrap();
        let r = ModelRoute::new(&s.models[0], &s.providers, &s.retry, |p| p);
        for (i, d) in r.deployments.iter().enumerate() {
            if i != 7 {
                d.begin();
            }
        }
        let mut idle = 0;
        for _ in 0..4000 {
            idle += u32::from(r.pick(0, now_ns()).unwrap().index == 7);
        }
        // Picked whenever it is one of the two drawn: 1 - C(19,2)/C(20,2) = 10 %,
        // against 5 % for a blind pick.
        assert!((300..=500).contains(&idle), "{idle}");
    }

    #[test]
    fn latency_prefers_the_fast_deployment() {
        let r = route("routing: latency");
        let d = r.decay_ns();
        r.deployments[0].observe(Duration::from_millis(50), d, now_ns());
        r.deployments[1].observe(Duration::from_millis(1), d, now_ns());
        r.deployments[2].observe(Duration::from_millis(50), d, now_ns());
        let mut n = [0u32; 3];
        for _ in 0..3000 {
            n[r.pick(0, now_ns()).unwrap().index] += 1;
        }
        // P2C: the fast one wins every pair it is in (2 of 3 pairs).
        assert!(n[1] > 1800, "{n:?}");
    }

    #[test]
    fn budget_allows_its_share() {
        let r = route("retries: 2");
        // Floor: 10/s over 10 s = 100 retries with no requests at all.
        let granted = (0..200).filter(|_| r.take_retry()).count();
        assert_eq!(granted, 100);
        for _ in 0..1000 {
            r.count_request(now_ms());
        }
        // 20 % of 1000 = 200 in all, 100 already used.
        let granted = (0..200).filter(|_| r.take_retry()).count();
        assert_eq!(granted, 100);
    }

    #[test]
    fn all_open_reports_the_wait() {
        let r = route("breaker: {consecutive_failures: 1, cooldown_ms: 3000}");
        let fail = breaker::Outcome::Failure {
            retry_after_ms: None,
        };
        for d in r.deployments.iter() {
            d.breaker.record(now_ms(), fail, "x");
        }
        assert_eq!(r.pick(0, now_ns()), None);
        let (wait, limited) = r.all_open();
        assert!(wait > 2000 && wait <= 3000, "{wait}");
        assert!(!limited);
    }

    #[test]
    fn decay_matches_exp() {
        for dt in [
            0u64,
            1,
            1_000,
            300_000_000,
            624_000_000,
            625_000_000,
            9_000_000_000,
        ] {
            let exact = (-(dt as f64) / 1e10).exp();
            assert!((decay(dt, 1e10) - exact).abs() < 5e-5, "{dt}");
        }
    }

    #[test]
    fn nth_bit_selects_like_counting() {
        for _ in 0..2000 {
            let mask = fastrand::u64(1..);
            let n = fastrand::u32(..mask.count_ones());
            assert_eq!(nth_bit(mask, n), bits(mask).nth(n as usize).unwrap());
        }
        assert_eq!(nth_bit(u64::MAX, 63), 63);
        assert_eq!(nth_bit(1 << 63, 0), 63);
    }

    #[test]
    fn backoff_is_bounded() {
        let s = parse("providers: {}\nmodels: []").unwrap().resilience;
        let retry = RetrySettings {
            backoff_base_ms: s.backoff_base_ms,
            backoff_max_ms: s.backoff_max_ms,
            retry_after_max_ms: s.retry_after_max_ms,
            budget: s.retry_budget,
            latency_decay_ms: s.latency_decay_ms,
        };
        for n in 1..30 {
            assert!(backoff(&retry, n) < Duration::from_millis(retry.backoff_max_ms));
        }
        assert!(backoff(&retry, 1) < Duration::from_millis(25));
    }
}
