//! Waiting for a target to be idle before a phase. A target that was overloaded (open
//! rates past its capacity, thousands of abandoned streams) can go on working off that
//! backlog for many seconds after the generator stopped; a phase started then measures the
//! backlog, not its own load. So before each phase the lab sends one small request at a
//! time (a probe) until [`IN_A_ROW`] probes in a row come back within [`Settle::bound`] of
//! the target's idle latency, measured once right after the target started
//! ([`idle_latency`]), or until [`Settle::max_wait`] has passed.

use std::time::{Duration, Instant};

use super::http::{exchange, Conn, Scratch};
use super::request::PreparedRequest;
use super::{CancelToken, LoadError};

/// Probes in a row that must come back within the bound.
pub const IN_A_ROW: u32 = 3;
/// The longest the lab waits for a target to settle before a phase.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// A wait shorter than this is not reported: it is the probes themselves.
pub const REPORTED_WAIT: Duration = Duration::from_secs(1);
/// A probe that takes longer counts as slow (and its connection is dropped).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A warm probe's timeout: a target's first answer can be slow (LiteLLM's took 4.7 s).
const WARM_TIMEOUT: Duration = Duration::from_secs(30);
/// After a slow or failed probe, so probing adds no load of its own.
const PAUSE: Duration = Duration::from_millis(100);
/// Probes before the idle latency is measured (their failures do not count), probes it
/// is the median of, and failed probes tolerated among those.
const IDLE_WARM: usize = 5;
const IDLE_MEASURED: usize = 21;
const IDLE_FAILURES: usize = 5;

/// What "idle" means for one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settle {
    /// The probe's median latency right after the target started.
    pub idle: Duration,
    pub max_wait: Duration,
}

impl Settle {
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            max_wait: MAX_WAIT,
        }
    }

    /// The slowest probe that still counts as idle: three times the idle latency, and at
    /// least 5 ms over it (sub-millisecond targets jitter by more than 3x).
    pub fn bound(&self) -> Duration {
        (self.idle * 3).max(self.idle + Duration::from_millis(5))
    }
}

/// How waiting for a target went.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Settled {
    /// [`IN_A_ROW`] probes in a row within the bound, after `waited`.
    Idle {
        waited: Duration,
        probes: u32,
    },
    /// Still slow (or failing) after the longest wait; `last` is the last probe's latency
    /// (`None`: it failed or timed out).
    Busy {
        waited: Duration,
        last: Option<Duration>,
    },
    Cancelled,
}

/// One probe on `conn`: its latency, or `None` when it failed or took over `timeout`.
async fn probe(
    conn: &mut Option<Conn>,
    req: &PreparedRequest,
    s: &mut Scratch,
    timeout: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    match tokio::time::timeout(timeout, exchange(conn, req, s)).await {
        Ok(Ok(_)) => Some(t0.elapsed()),
        Ok(Err(_)) => None,
        Err(_) => {
            *conn = None;
            None
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, LoadError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)
}

/// The median latency of [`IDLE_MEASURED`] sequential probes after [`IDLE_WARM`] warm
/// ones, on one kept-alive connection (blocking). An error when more than
/// [`IDLE_FAILURES`] measured probes fail: the target does not answer the probe, so it
/// cannot be waited for.
pub fn idle_latency(req: &PreparedRequest) -> Result<Duration, LoadError> {
    runtime()?.block_on(async {
        let (mut conn, mut scratch) = (None, Scratch::new());
        for _ in 0..IDLE_WARM {
            probe(&mut conn, req, &mut scratch, WARM_TIMEOUT).await;
        }
        let (mut seen, mut failed) = (Vec::with_capacity(IDLE_MEASURED), 0);
        while seen.len() < IDLE_MEASURED {
            match probe(&mut conn, req, &mut scratch, PROBE_TIMEOUT).await {
                Some(t) => seen.push(t),
                None if failed < IDLE_FAILURES => failed += 1,
                None => {
                    return Err(LoadError::Probe {
                        url: req.endpoint.url.clone(),
                        why: format!("{} of its probes failed or took over 5 s", failed + 1),
                    })
                }
            }
        }
        seen.sort();
        Ok(seen[seen.len() / 2])
    })
}

/// Probes until the target answers [`IN_A_ROW`] probes in a row within `s.bound()`, or
/// `s.max_wait` has passed (blocking).
pub fn settle(
    req: &PreparedRequest,
    s: &Settle,
    cancel: &CancelToken,
) -> Result<Settled, LoadError> {
    let bound = s.bound();
    Ok(runtime()?.block_on(async {
        let (mut conn, mut scratch) = (None, Scratch::new());
        let (t0, mut probes, mut in_row) = (Instant::now(), 0u32, 0u32);
        loop {
            if cancel.is_cancelled() {
                return Settled::Cancelled;
            }
            let took = probe(&mut conn, req, &mut scratch, PROBE_TIMEOUT).await;
            probes += 1;
            match took {
                Some(t) if t <= bound => in_row += 1,
                _ => in_row = 0,
            }
            if in_row >= IN_A_ROW {
                return Settled::Idle {
                    waited: t0.elapsed(),
                    probes,
                };
            }
            if t0.elapsed() >= s.max_wait {
                return Settled::Busy {
                    waited: t0.elapsed(),
                    last: took,
                };
            }
            if in_row == 0 {
                tokio::time::sleep(PAUSE).await;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_three_times_idle_and_at_least_5_ms_over_it() {
        let ms = Duration::from_millis;
        assert_eq!(
            Settle::new(Duration::from_micros(300)).bound(),
            Duration::from_micros(5300)
        );
        assert_eq!(Settle::new(ms(11)).bound(), ms(33));
        assert_eq!(Settle::new(ms(2)).bound(), ms(7));
    }
}
