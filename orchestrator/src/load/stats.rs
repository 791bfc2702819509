//! Recording: per worker thread, HDR histograms (µs, 3 significant figures) and counters,
//! both for the whole phase and for the current one-second interval. The coordinator merges
//! the threads' intervals every second and their totals at the end.

use hdrhistogram::Histogram;

use super::result::{CurvePoint, ErrorCounts, Summary};

/// Highest value a histogram tracks (1 hour in µs); larger values saturate.
const MAX_US: u64 = 3_600_000_000;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Connect,
    Timeout,
    Http429,
    Http4xx,
    Http5xx,
    Malformed,
    StreamCut,
    Connection,
    /// The generator itself could not open the connection (no descriptor, no local port):
    /// counted apart as `rig_refused`, never charged to the target.
    RigRefused,
}

impl ErrorClass {
    pub(crate) fn count(self, e: &mut ErrorCounts) {
        match self {
            ErrorClass::Connect => e.connect += 1,
            ErrorClass::Timeout => e.timeout += 1,
            ErrorClass::Http429 => e.http_429 += 1,
            ErrorClass::Http4xx => e.http_4xx += 1,
            ErrorClass::Http5xx => e.http_5xx += 1,
            ErrorClass::Malformed => e.malformed += 1,
            ErrorClass::StreamCut => e.stream_cut += 1,
            ErrorClass::Connection => e.connection += 1,
            // Not a target error: `Recorder::error` counts it in the tally instead.
            ErrorClass::RigRefused => {}
        }
    }
}

/// A histogram with the crate-wide bounds.
#[allow(clippy::expect_used)]
pub(crate) fn histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts: this cannot fail at run time.
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Counters and histograms for one span of time.
pub(crate) struct Tally {
    pub ok: u64,
    pub errors: ErrorCounts,
    pub dropped: u64,
    /// Connections the generator could not open itself (see [`ErrorClass::RigRefused`]).
    pub rig_refused: u64,
    pub tokens: u64,
    pub latency: Histogram<u64>,
    pub ttfb: Histogram<u64>,
    pub ttft: Histogram<u64>,
    pub itl: Histogram<u64>,
    pub tpot: Histogram<u64>,
    /// Open model: send time minus due time.
    pub lag: Histogram<u64>,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            ok: 0,
            errors: ErrorCounts::default(),
            dropped: 0,
            rig_refused: 0,
            tokens: 0,
            latency: histogram(),
            ttfb: histogram(),
            ttft: histogram(),
            itl: histogram(),
            tpot: histogram(),
            lag: histogram(),
        }
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors.total()
    }

    pub fn merge(&mut self, o: &Tally) {
        self.ok += o.ok;
        self.errors.add(&o.errors);
        self.dropped += o.dropped;
        self.rig_refused += o.rig_refused;
        self.tokens += o.tokens;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.ttfb.add(&o.ttfb);
        let _ = self.ttft.add(&o.ttft);
        let _ = self.itl.add(&o.itl);
        let _ = self.tpot.add(&o.tpot);
        let _ = self.lag.add(&o.lag);
    }

    pub fn reset(&mut self) {
        self.ok = 0;
        self.errors = ErrorCounts::default();
        self.dropped = 0;
        self.rig_refused = 0;
        self.tokens = 0;
        self.latency.reset();
        self.ttfb.reset();
        self.ttft.reset();
        self.itl.reset();
        self.tpot.reset();
        self.lag.reset();
    }
}

/// One successful request's measurements, in µs.
pub(crate) struct OkSample<'a> {
    pub latency_us: u64,
    pub ttfb_us: u64,
    pub ttft_us: Option<u64>,
    pub gaps_us: &'a [u64],
    pub tokens: u64,
    /// Open model: which part of the phase's schedule the request was due in (see
    /// [`DUE_PARTS`]).
    pub due_part: Option<usize>,
}

/// Open model: the schedule is cut into this many equal parts by due time, and latency is
/// kept per part, so a queue that builds over the phase shows as latency rising from part
/// to part (the frontier's saturation check).
pub const DUE_PARTS: usize = 4;

/// What one worker thread recorded for one request kind: the whole phase and the current
/// one-second interval (the interval keeps only what the time series needs).
pub(crate) struct Recorder {
    pub total: Tally,
    pub interval: Tally,
    /// Open model: latency of successful requests by due part (empty for closed phases).
    pub by_due: Vec<Histogram<u64>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            total: Tally::new(),
            interval: Tally::new(),
            by_due: Vec::new(),
        }
    }

    pub fn ok(&mut self, s: &OkSample<'_>) {
        for t in [&mut self.total, &mut self.interval] {
            t.ok += 1;
            t.tokens += s.tokens;
            t.latency.saturating_record(s.latency_us.max(1));
            if let Some(ttft) = s.ttft_us {
                t.ttft.saturating_record(ttft.max(1));
            }
            // The interval keeps the gaps too: ramp stages report their inter-token p99.
            for &g in s.gaps_us {
                t.itl.saturating_record(g.max(1));
            }
        }
        if let Some(part) = s.due_part {
            if self.by_due.is_empty() {
                self.by_due = (0..DUE_PARTS).map(|_| histogram()).collect();
            }
            if let Some(h) = self.by_due.get_mut(part) {
                h.saturating_record(s.latency_us.max(1));
            }
        }
        let t = &mut self.total;
        t.ttfb.saturating_record(s.ttfb_us.max(1));
        if let Some(ttft) = s.ttft_us {
            if s.tokens >= 2 {
                let tpot = s.latency_us.saturating_sub(ttft) / (s.tokens - 1);
                t.tpot.saturating_record(tpot.max(1));
            }
        }
    }

    pub fn error(&mut self, class: ErrorClass) {
        if class == ErrorClass::RigRefused {
            self.total.rig_refused += 1;
            self.interval.rig_refused += 1;
            return;
        }
        class.count(&mut self.total.errors);
        class.count(&mut self.interval.errors);
    }

    /// Open model: the request was sent `us` after its due time.
    pub fn lag(&mut self, us: u64) {
        self.total.lag.saturating_record(us.max(1));
    }

    pub fn dropped(&mut self) {
        self.total.dropped += 1;
        self.interval.dropped += 1;
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Summary in milliseconds of a µs histogram.
pub fn summary(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    Summary {
        count: h.len(),
        min: ms(h.min()),
        mean: h.mean() / 1000.0,
        stddev: h.stdev() / 1000.0,
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        p99_9: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// Percentiles of the latency curve written into every phase result.
const CURVE: [f64; 24] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 96.0, 97.0,
    98.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

pub fn curve(h: &Histogram<u64>) -> Vec<CurvePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE
        .iter()
        .map(|&p| CurvePoint {
            percentile: p,
            latency_ms: ms(h.value_at_quantile(p / 100.0)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn summary_and_tpot() {
        let mut r = Recorder::new();
        for i in 1..=100u64 {
            r.ok(&OkSample {
                latency_us: i * 1000,
                ttfb_us: 10,
                ttft_us: Some(500),
                gaps_us: &[100, 200],
                tokens: 3,
                due_part: None,
            });
        }
        r.error(ErrorClass::Http429);
        let s = summary(&r.total.latency);
        assert_eq!(s.count, 100);
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99 - 99.0).abs() < 0.1);
        assert!((s.max - 100.0).abs() < 0.1);
        assert_eq!(r.total.errors.http_429, 1);
        assert_eq!(r.total.itl.len(), 200);
        // (100 ms - 0.5 ms) / 2
        assert!((ms(r.total.tpot.max()) - 49.75).abs() < 0.1);
        let c = curve(&r.total.latency);
        assert_eq!(c.len(), CURVE.len());
        assert!(c.windows(2).all(|w| w[0].latency_ms <= w[1].latency_ms));
    }
}
