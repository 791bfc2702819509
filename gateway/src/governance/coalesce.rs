//! Coalescing: identical concurrent requests share one upstream call. The first
//! becomes the leader and calls; the others wait for its result. A leader that goes
//! away without a result (its client left) lets the waiters call on their own.

use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use super::cache::{AnswerKey, KeyMap};

/// One call in flight: its result once the leader has one (`None`: it left without).
pub struct Flight<V> {
    result: OnceLock<Option<V>>,
    done: Notify,
}

impl<V> Flight<V> {
    fn new() -> Arc<Self> {
        Arc::new(Flight {
            result: OnceLock::new(),
            done: Notify::new(),
        })
    }
}

/// The calls in flight of one model, by request.
pub struct Coalescer<V> {
    flights: Mutex<KeyMap<Arc<Flight<V>>>>,
}

/// How a request joined.
pub enum Joined<'a, V> {
    /// The first of its kind: call, then [`Leader::finish`].
    Leader(Leader<'a, V>),
    /// Another identical request is calling: wait with [`wait`].
    Waiter(Arc<Flight<V>>),
}

/// The caller for a group of identical requests; dropping it unfinished releases the
/// waiters with nothing.
pub struct Leader<'a, V> {
    owner: &'a Coalescer<V>,
    key: Option<AnswerKey>,
    flight: Arc<Flight<V>>,
}

impl<V> Default for Coalescer<V> {
    fn default() -> Self {
        Coalescer {
            flights: Mutex::new(KeyMap::default()),
        }
    }
}

impl<V> Coalescer<V> {
    /// Joins the flight for `key`, or starts it.
    pub fn join(&self, key: AnswerKey) -> Joined<'_, V> {
        let Ok(mut map) = self.flights.lock() else {
            // A poisoned map only costs the sharing: call alone.
            return Joined::Leader(Leader {
                owner: self,
                key: None,
                flight: Flight::new(),
            });
        };
        match map.entry(key) {
            Entry::Occupied(e) => Joined::Waiter(e.get().clone()),
            Entry::Vacant(e) => {
                let key = e.key().clone();
                let flight = Flight::new();
                e.insert(flight.clone());
                Joined::Leader(Leader {
                    owner: self,
                    key: Some(key),
                    flight,
                })
            }
        }
    }

    /// Calls in flight (for tests).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl<V> Leader<'_, V> {
    /// Hands the result to every waiter; later identical requests start a new flight.
    pub fn finish(mut self, v: V) {
        self.end(Some(v));
    }

    fn end(&mut self, v: Option<V>) {
        let Some(k) = self.key.take() else {
            return;
        };
        if let Ok(mut map) = self.owner.flights.lock() {
            map.remove(&k);
        }
        // Nobody else holds the flight: no waiter to hand it to.
        if Arc::strong_count(&self.flight) > 1 {
            let _ = self.flight.result.set(v);
            self.flight.done.notify_waiters();
        }
    }
}

impl<V> Drop for Leader<'_, V> {
    fn drop(&mut self) {
        self.end(None);
    }
}

/// The leader's result, or `None` when it left without one.
pub async fn wait<V: Clone>(flight: Arc<Flight<V>>) -> Option<V> {
    loop {
        // Registered before the check, so a result set in between still wakes it.
        let done = flight.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if let Some(r) = flight.result.get() {
            return r.clone();
        }
        done.await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn key() -> AnswerKey {
        AnswerKey::new(0, 0, 0, Bytes::from_static(b"{}"))
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_result() {
        let c = Coalescer::<u32>::default();
        let Joined::Leader(l) = c.join(key()) else {
            panic!("first is the leader")
        };
        let Joined::Waiter(w) = c.join(key()) else {
            panic!("second waits")
        };
        l.finish(7);
        assert_eq!(wait(w).await, Some(7));
        assert_eq!(c.in_flight(), 0);
        assert!(matches!(c.join(key()), Joined::Leader(_)));
    }

    #[tokio::test]
    async fn a_leader_gone_releases_the_waiters_empty() {
        let c = Coalescer::<u32>::default();
        let l = c.join(key());
        let Joined::Waiter(w) = c.join(key()) else {
            panic!("second waits")
        };
        drop(l);
        assert_eq!(wait(w).await, None);
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_waiting_on_another_thread_is_woken() {
        let c = Coalescer::<u32>::default();
        let Joined::Leader(l) = c.join(key()) else {
            panic!("first is the leader")
        };
        let waiters: Vec<_> = (0..16)
            .map(|_| match c.join(key()) {
                Joined::Waiter(w) => tokio::spawn(wait(w)),
                Joined::Leader(_) => panic!("later ones wait"),
            })
            .collect();
        tokio::task::yield_now().await;
        l.finish(3);
        for w in waiters {
            assert_eq!(w.await.unwrap(), Some(3));
        }
    }
}
