//! A per-deployment circuit breaker in atomics: closed → open after N consecutive
//! failures or a failure ratio over a sliding window (with a minimum volume); open
//! skips the deployment for a cooldown; then half-open admits one probe, whose
//! success closes it and whose failure opens it again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use super::window::Window;
use crate::config::BreakerSettings;

/// Breaker states, as exported by `llm_gateway_circuit_breaker_state`.
pub const CLOSED: u8 = 0;
pub const HALF_OPEN: u8 = 1;
pub const OPEN: u8 = 2;

/// What an attempt's outcome means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Success,
    /// A failure; `retry_after_ms` is set for a 429 that said when to come back.
    Failure {
        retry_after_ms: Option<u64>,
    },
}

/// One deployment's breaker.
pub struct Breaker {
    s: BreakerSettings,
    retry_after_max_ms: u64,
    state: AtomicU8,
    /// Open: when the cooldown ends. Half-open: when the probe is considered lost.
    until_ms: AtomicU64,
    consecutive: AtomicU32,
    /// Successes (a) and failures (b).
    window: Window,
    /// Opened by a 429 (all deployments open this way answers 429, not 503).
    rate_limited: AtomicBool,
}

impl Breaker {
    pub fn new(s: &BreakerSettings, retry_after_max_ms: u64) -> Self {
        Breaker {
            s: s.clone(),
            retry_after_max_ms,
            state: AtomicU8::new(CLOSED),
            until_ms: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            window: Window::new(s.window_ms),
            rate_limited: AtomicBool::new(false),
        }
    }

    /// The current state (0 closed, 1 half-open, 2 open).
    pub fn state(&self) -> u8 {
        self.state.load(Relaxed)
    }

    /// Whether a request could be admitted now (no state change).
    pub fn available(&self, now_ms: u64) -> bool {
        !self.s.enabled
            || self.state.load(Relaxed) == CLOSED
            || now_ms >= self.until_ms.load(Relaxed)
    }

    /// Admits a request: `Some(false)` when closed, `Some(true)` when this request is
    /// the half-open probe, `None` when the breaker refuses it.
    pub fn acquire(&self, now_ms: u64, label: &str) -> Option<bool> {
        if !self.s.enabled {
            return Some(false);
        }
        let until = self.until_ms.load(Relaxed);
        match self.state.load(Relaxed) {
            CLOSED => Some(false),
            _ if now_ms < until => None,
            OPEN => {
                let ok = self
                    .state
                    .compare_exchange(OPEN, HALF_OPEN, Relaxed, Relaxed)
                    .is_ok();
                if ok {
                    self.until_ms.store(now_ms + self.s.cooldown_ms, Relaxed);
                    tracing::info!(deployment = label, "circuit breaker half-open: probing");
                }
                ok.then_some(true)
            }
            // Half-open with a probe that never reported: let another one through.
            _ => self
                .until_ms
                .compare_exchange(until, now_ms + self.s.cooldown_ms, Relaxed, Relaxed)
                .is_ok()
                .then_some(true),
        }
    }

    /// Records an attempt's outcome.
    pub fn record(&self, now_ms: u64, outcome: Outcome, label: &str) {
        if !self.s.enabled {
            return;
        }
        match outcome {
            Outcome::Success => self.success(now_ms, label),
            Outcome::Failure { retry_after_ms } => self.failure(now_ms, retry_after_ms, label),
        }
    }

    fn success(&self, now_ms: u64, label: &str) {
        self.window.add(now_ms, 1, 0);
        if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
        }
        if self.state.load(Relaxed) == HALF_OPEN
            && self
                .state
                .compare_exchange(HALF_OPEN, CLOSED, Relaxed, Relaxed)
                .is_ok()
        {
            self.window.clear();
            self.rate_limited.store(false, Relaxed);
            tracing::info!(deployment = label, "circuit breaker closed");
        }
    }

    fn failure(&self, now_ms: u64, retry_after_ms: Option<u64>, label: &str) {
        self.window.add(now_ms, 0, 1);
        let run = self.consecutive.fetch_add(1, Relaxed).saturating_add(1);
        let state = self.state.load(Relaxed);
        let trip = match state {
            HALF_OPEN => true,
            CLOSED => run >= self.s.consecutive_failures || self.ratio_tripped(now_ms),
            _ => false,
        };
        if !trip {
            return;
        }
        let cooldown = match retry_after_ms.filter(|_| self.s.cooldown_from_retry_after) {
            Some(ra) => ra.min(self.retry_after_max_ms).max(1),
            None => self.s.cooldown_ms,
        };
        self.until_ms.store(now_ms + cooldown, Relaxed);
        self.rate_limited.store(retry_after_ms.is_some(), Relaxed);
        if self
            .state
            .compare_exchange(state, OPEN, Relaxed, Relaxed)
            .is_ok()
        {
            tracing::info!(
                deployment = label,
                cooldown_ms = cooldown,
                consecutive_failures = run,
                "circuit breaker opened"
            );
        }
    }

    fn ratio_tripped(&self, now_ms: u64) -> bool {
        let (ok, failed) = self.window.sum(now_ms);
        let total = ok + failed;
        total >= u64::from(self.s.min_requests)
            && total > 0
            && failed as f64 / total as f64 >= self.s.failure_ratio
    }

    /// Milliseconds until this breaker admits a probe (0 when it admits now).
    pub fn wait_ms(&self, now_ms: u64) -> u64 {
        if self.available(now_ms) {
            return 0;
        }
        self.until_ms.load(Relaxed).saturating_sub(now_ms)
    }

    /// Whether the breaker is open because of an upstream 429.
    pub fn rate_limited(&self) -> bool {
        self.rate_limited.load(Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            enabled: true,
            consecutive_failures: 3,
            failure_ratio: 0.5,
            min_requests: 10,
            window_ms: 10_000,
            cooldown_ms: 1_000,
            cooldown_from_retry_after: true,
        }
    }

    const FAIL: Outcome = Outcome::Failure {
        retry_after_ms: None,
    };

    #[test]
    fn opens_half_opens_and_closes() {
        let b = Breaker::new(&settings(), 5_000);
        for _ in 0..2 {
            b.record(0, FAIL, "d");
        }
        assert_eq!(b.state(), CLOSED);
        b.record(0, FAIL, "d");
        assert_eq!(b.state(), OPEN);
        assert_eq!(b.acquire(999, "d"), None);
        assert!(!b.available(999));
        assert_eq!(b.wait_ms(500), 500);
        // One probe after the cooldown; a second caller is refused meanwhile.
        assert_eq!(b.acquire(1000, "d"), Some(true));
        assert_eq!(b.state(), HALF_OPEN);
        assert_eq!(b.acquire(1001, "d"), None);
        b.record(1002, Outcome::Success, "d");
        assert_eq!(b.state(), CLOSED);
        assert_eq!(b.acquire(1003, "d"), Some(false));
    }

    #[test]
    fn failed_probe_reopens_and_lost_probe_is_replaced() {
        let b = Breaker::new(&settings(), 5_000);
        for _ in 0..3 {
            b.record(0, FAIL, "d");
        }
        assert_eq!(b.acquire(1000, "d"), Some(true));
        b.record(1001, FAIL, "d");
        assert_eq!(b.state(), OPEN);
        assert_eq!(b.acquire(1500, "d"), None);
        assert_eq!(b.acquire(2001, "d"), Some(true));
        // That probe never reports: after a cooldown another request probes.
        assert_eq!(b.acquire(2500, "d"), None);
        assert_eq!(b.acquire(3001, "d"), Some(true));
    }

    #[test]
    fn ratio_over_the_window_opens() {
        let b = Breaker::new(&settings(), 5_000);
        for i in 0..10 {
            let o = if i % 2 == 1 { FAIL } else { Outcome::Success };
            b.record(i, o, "d");
        }
        assert_eq!(b.state(), OPEN, "5 of 10 failed, ratio 0.5");
        let b = Breaker::new(&settings(), 5_000);
        for i in 0..8 {
            let o = if i % 2 == 1 { FAIL } else { Outcome::Success };
            b.record(i, o, "d");
        }
        assert_eq!(b.state(), CLOSED, "below the minimum volume");
    }

    #[test]
    fn retry_after_sets_the_cooldown_up_to_the_cap() {
        let b = Breaker::new(&settings(), 5_000);
        let limited = Outcome::Failure {
            retry_after_ms: Some(60_000),
        };
        for _ in 0..3 {
            b.record(0, limited, "d");
        }
        assert!(b.rate_limited());
        assert_eq!(b.wait_ms(0), 5_000);
        let off = BreakerSettings {
            enabled: false,
            ..settings()
        };
        let b = Breaker::new(&off, 5_000);
        for _ in 0..10 {
            b.record(0, FAIL, "d");
        }
        assert_eq!(b.acquire(0, "d"), Some(false));
    }
}
