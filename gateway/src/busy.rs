//! Optional busy polling: for a short window after request activity the runtime keeps
//! polling its sockets instead of sleeping in the kernel, so the next event is seen
//! without the wake-up delay of an idle core. Trades CPU (at most the window after
//! each burst of activity) for latency at low load; off unless `busy_poll_us` is set.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Shared between the request path (which reports activity) and the spinner task.
pub struct BusyPoll {
    origin: Instant,
    window_us: u64,
    last_us: AtomicU64,
    sleeping: AtomicBool,
    wake: Notify,
}

impl BusyPoll {
    /// A busy poller that spins for `window` after the last activity.
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(BusyPoll {
            origin: Instant::now(),
            window_us: u64::try_from(window.as_micros()).unwrap_or(u64::MAX),
            last_us: AtomicU64::new(0),
            sleeping: AtomicBool::new(true),
            wake: Notify::new(),
        })
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Something happened (a request arrived): keep polling for a while.
    pub fn activity(&self) {
        self.last_us.store(self.now_us(), Relaxed);
        if self.sleeping.load(Relaxed) {
            self.wake.notify_one();
        }
    }

    /// The spinner: yields to the scheduler (which then polls the sockets without
    /// sleeping) while activity is recent; waits for activity otherwise.
    pub async fn run(self: Arc<Self>) {
        loop {
            if self.now_us().saturating_sub(self.last_us.load(Relaxed)) < self.window_us {
                tokio::task::yield_now().await;
            } else {
                self.sleeping.store(true, Relaxed);
                self.wake.notified().await;
                self.sleeping.store(false, Relaxed);
            }
        }
    }
}
