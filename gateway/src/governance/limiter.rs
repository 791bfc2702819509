//! A lock-free GCRA limiter: one atomic holds the theoretical arrival time (TAT) of
//! the next unit; admitting `n` units moves it `n` emission intervals forward.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A per-minute limit (requests or tokens) with a bucket of one minute's allowance.
pub struct Gcra {
    limit: u64,
    /// Nanoseconds one unit takes to refill.
    interval_ns: u64,
    /// How far the TAT may run ahead of now: the whole bucket, `limit` units.
    capacity_ns: u64,
    tat: AtomicU64,
}

/// What a check found; the figures OpenAI's `x-ratelimit-*` headers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Until the bucket is full again, ms.
    pub reset_ms: u64,
}

/// A refusal: the units did not fit; `retry_after_ms` until they would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub quota: Quota,
    pub retry_after_ms: u64,
}

const MINUTE_NS: u64 = 60_000_000_000;

impl Gcra {
    /// A limit of `per_minute` units (at least 1).
    pub fn per_minute(per_minute: u64) -> Self {
        let limit = per_minute.max(1);
        let interval_ns = (MINUTE_NS / limit).max(1);
        Gcra {
            limit,
            interval_ns,
            capacity_ns: interval_ns.saturating_mul(limit),
            tat: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn quota(&self, ahead_ns: u64) -> Quota {
        Quota {
            limit: self.limit,
            remaining: self.capacity_ns.saturating_sub(ahead_ns) / self.interval_ns,
            reset_ms: ahead_ns.div_ceil(1_000_000),
        }
    }

    /// Admits `units` at `now_ns` if they fit in the bucket (0 units: admitted unless
    /// a charge after the fact left the bucket in debt).
    pub fn check(&self, now_ns: u64, units: u64) -> Result<Quota, Denied> {
        let cost = units.saturating_mul(self.interval_ns);
        let mut tat = self.tat.load(Relaxed);
        loop {
            let next = tat.max(now_ns).saturating_add(cost);
            let ahead = next - now_ns;
            if ahead > self.capacity_ns {
                let base = tat.max(now_ns) - now_ns;
                return Err(Denied {
                    quota: self.quota(base),
                    retry_after_ms: (ahead - self.capacity_ns).div_ceil(1_000_000),
                });
            }
            match self.tat.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => return Ok(self.quota(ahead)),
                Err(t) => tat = t,
            }
        }
    }

    /// Charges (`delta` > 0) or refunds (`delta` < 0) units after the fact, without
    /// refusing: a charge may put the bucket in debt, which later checks then wait out.
    pub fn adjust(&self, now_ns: u64, delta: i64) {
        if delta == 0 {
            return;
        }
        let step = delta.unsigned_abs().saturating_mul(self.interval_ns);
        let mut tat = self.tat.load(Relaxed);
        loop {
            let next = if delta > 0 {
                tat.max(now_ns).saturating_add(step)
            } else {
                // A refund never moves the TAT before now: unused time is not banked.
                tat.saturating_sub(step).max(now_ns.min(tat))
            };
            match self.tat.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => return,
                Err(t) => tat = t,
            }
        }
    }

    /// The quota at `now_ns` without taking anything.
    pub fn peek(&self, now_ns: u64) -> Quota {
        self.quota(self.tat.load(Relaxed).saturating_sub(now_ns))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_then_the_rate() {
        let g = Gcra::per_minute(60);
        let t = 100 * SEC;
        for i in 0..60 {
            let q = g.check(t, 1).unwrap();
            assert_eq!(q.remaining, 59 - i);
        }
        let d = g.check(t, 1).unwrap_err();
        assert_eq!((d.retry_after_ms, d.quota.remaining), (1000, 0));
        assert_eq!(d.quota.reset_ms, 60_000);
        // One unit refills per second.
        assert!(g.check(t + SEC, 1).is_ok());
        assert!(g.check(t + SEC, 1).is_err());
    }

    #[test]
    fn charges_after_the_fact_put_it_in_debt_and_refunds_give_back() {
        let g = Gcra::per_minute(600);
        let t = 100 * SEC;
        g.check(t, 500).unwrap();
        assert!(g.check(t, 200).is_err());
        g.adjust(t, -400);
        assert_eq!(g.peek(t).remaining, 500);
        g.adjust(t, 1000);
        // In debt: even a zero-unit check is refused until it is paid off.
        let d = g.check(t, 0).unwrap_err();
        assert_eq!(d.retry_after_ms, 50_000);
        assert!(g.check(t + 50 * SEC, 0).is_ok());
    }

    #[test]
    fn a_refund_does_not_bank_idle_time() {
        let g = Gcra::per_minute(60);
        g.adjust(100 * SEC, -1000);
        assert_eq!(g.peek(100 * SEC).remaining, 60);
        for _ in 0..60 {
            g.check(100 * SEC, 1).unwrap();
        }
        assert!(g.check(100 * SEC, 1).is_err());
    }
}
