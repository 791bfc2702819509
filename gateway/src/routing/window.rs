//! A lock-free sliding window of two counters (e.g. successes and failures), kept in
//! ten buckets: cheap to add to from many threads, approximate at bucket edges.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

const BUCKETS: usize = 10;

struct Bucket {
    epoch: AtomicU64,
    a: AtomicU32,
    b: AtomicU32,
}

/// Two counts over the last `window_ms`.
pub struct Window {
    bucket_ms: u64,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    /// A window of `window_ms` (at least 10 ms).
    pub fn new(window_ms: u64) -> Self {
        Window {
            bucket_ms: (window_ms / BUCKETS as u64).max(1),
            buckets: std::array::from_fn(|_| Bucket {
                epoch: AtomicU64::new(u64::MAX),
                a: AtomicU32::new(0),
                b: AtomicU32::new(0),
            }),
        }
    }

    /// Adds `a` and `b` at time `now_ms`. A bucket from an older epoch is claimed and
    /// zeroed first; a count racing with that reset may be lost, which is fine here.
    pub fn add(&self, now_ms: u64, a: u32, b: u32) {
        let epoch = now_ms / self.bucket_ms;
        let bk = &self.buckets[(epoch % BUCKETS as u64) as usize];
        let cur = bk.epoch.load(Relaxed);
        if cur != epoch
            && bk
                .epoch
                .compare_exchange(cur, epoch, Relaxed, Relaxed)
                .is_ok()
        {
            bk.a.store(0, Relaxed);
            bk.b.store(0, Relaxed);
        }
        if a > 0 {
            bk.a.fetch_add(a, Relaxed);
        }
        if b > 0 {
            bk.b.fetch_add(b, Relaxed);
        }
    }

    /// The two sums over the window ending at `now_ms`.
    pub fn sum(&self, now_ms: u64) -> (u64, u64) {
        let epoch = now_ms / self.bucket_ms;
        let oldest = epoch.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|bk| {
                let e = bk.epoch.load(Relaxed);
                e != u64::MAX && e >= oldest && e <= epoch
            })
            .fold((0, 0), |(a, b), bk| {
                (
                    a + u64::from(bk.a.load(Relaxed)),
                    b + u64::from(bk.b.load(Relaxed)),
                )
            })
    }

    /// Forgets everything.
    pub fn clear(&self) {
        for bk in &self.buckets {
            bk.epoch.store(u64::MAX, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_within_the_window_only() {
        let w = Window::new(1000);
        w.add(0, 1, 0);
        w.add(450, 2, 1);
        w.add(999, 0, 3);
        assert_eq!(w.sum(999), (3, 4));
        // At 1,450 ms only the bucket of 900..1000 ms is still in the window.
        assert_eq!(w.sum(1450), (0, 3));
        assert_eq!(w.sum(5000), (0, 0));
        w.add(5000, 7, 0);
        assert_eq!(w.sum(5000), (7, 0));
        w.clear();
        assert_eq!(w.sum(5000), (0, 0));
    }
}
