//! Coalescing: identical concurrent requests share one upstream call. The first
//! becomes the leader and calls; the others wait for its result. A leader that goes
//! away without a result (its client left) lets the waiters call on their own.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::cache::AnswerKey;

/// The calls in flight of one model, by request.
pub struct Coalescer<V> {
    flights: Mutex<HashMap<AnswerKey, watch::Receiver<Option<V>>>>,
}

/// How a request joined.
pub enum Joined<'a, V> {
    /// The first of its kind: call, then [`Leader::finish`].
    Leader(Leader<'a, V>),
    /// Another identical request is calling: wait with [`wait`].
    Waiter(watch::Receiver<Option<V>>),
}

/// The caller for a group of identical requests; dropping it unfinished releases the
/// waiters with nothing.
pub struct Leader<'a, V> {
    owner: &'a Coalescer<V>,
    key: Option<AnswerKey>,
    tx: watch::Sender<Option<V>>,
}

impl<V: Clone> Default for Coalescer<V> {
    fn default() -> Self {
        Coalescer {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<V: Clone> Coalescer<V> {
    /// Joins the flight for `key`, or starts it.
    pub fn join(&self, key: AnswerKey) -> Joined<'_, V> {
        let Ok(mut map) = self.flights.lock() else {
            // A poisoned map only costs the sharing: call alone.
            return Joined::Leader(Leader {
                owner: self,
                key: None,
                tx: watch::channel(None).0,
            });
        };
        if let Some(rx) = map.get(&key) {
            return Joined::Waiter(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), rx);
        Joined::Leader(Leader {
            owner: self,
            key: Some(key),
            tx,
        })
    }

    /// Calls in flight (for tests).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl<V> Leader<'_, V> {
    /// Hands the result to every waiter; later identical requests start a new flight.
    pub fn finish(mut self, v: V) {
        if let Some(k) = self.key.take() {
            self.owner_leave(&k);
        }
        self.tx.send_replace(Some(v));
    }

    fn owner_leave(&self, k: &AnswerKey) {
        if let Ok(mut map) = self.owner.flights.lock() {
            map.remove(k);
        }
    }
}

impl<V> Drop for Leader<'_, V> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.owner_leave(&k);
        }
    }
}

/// The leader's result, or `None` when it left without one.
pub async fn wait<V: Clone>(mut rx: watch::Receiver<Option<V>>) -> Option<V> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn key() -> AnswerKey {
        AnswerKey {
            api: 0,
            key: 0,
            model: 0,
            body: Bytes::from_static(b"{}"),
        }
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
}
