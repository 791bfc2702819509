//! The exact-match answer cache of a model: in memory, entries live `ttl`, bounded by
//! entry count and bytes (the oldest go first). Only whole successful answers are
//! stored. One mutex per model, taken only by models that opted in.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

use crate::config::CacheSettings;

/// What makes two requests the same: the API, the key's scope (keys never share
/// answers), the model and the exact body bytes. The body is hashed once, when the key
/// is made, and the cache and the coalescer reuse that hash (a 40 KB prompt would cost
/// tens of microseconds per lookup otherwise).
#[derive(Debug, Clone)]
pub struct AnswerKey {
    pub api: u8,
    /// Key index; `usize::MAX` without authentication.
    pub key: usize,
    pub model: usize,
    pub body: Bytes,
    hash: u64,
}

impl AnswerKey {
    pub fn new(api: u8, key: usize, model: usize, body: Bytes) -> Self {
        // Keyed per process (SipHash with a random key): a client cannot pick bodies
        // that collide on purpose.
        static SEED: OnceLock<RandomState> = OnceLock::new();
        let hash = SEED
            .get_or_init(RandomState::new)
            .hash_one((api, key, model, &body[..]));
        AnswerKey {
            api,
            key,
            model,
            body,
            hash,
        }
    }
}

impl PartialEq for AnswerKey {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash
            && (self.api, self.key, self.model) == (o.api, o.key, o.model)
            && self.body == o.body
    }
}

impl Eq for AnswerKey {}

impl Hash for AnswerKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

/// Passes an [`AnswerKey`]'s own hash through to the map.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only write_u64 is used; anything else still spreads.
        for b in bytes {
            self.0 = self.0.rotate_left(5) ^ u64::from(*b);
        }
    }
}

/// A map by [`AnswerKey`], hashed once per key.
pub type KeyMap<V> = HashMap<AnswerKey, V, BuildHasherDefault<KeyHasher>>;

struct Entry {
    answer: Bytes,
    expires_ns: u64,
    /// Insertion number, to tell a replaced entry's stale place in `order`.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    map: KeyMap<Entry>,
    order: VecDeque<(AnswerKey, u64)>,
    bytes: usize,
    seq: u64,
}

/// A model's cache.
pub struct Cache {
    ttl_ns: u64,
    max_entries: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

/// Bytes an entry is counted for: its answer and its key's body.
fn weight(k: &AnswerKey, answer: &Bytes) -> usize {
    k.body.len() + answer.len()
}

impl Cache {
    pub fn new(s: &CacheSettings) -> Self {
        Cache {
            ttl_ns: s.ttl_ms.saturating_mul(1_000_000),
            max_entries: s.max_entries,
            max_bytes: s.max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The stored answer for `k`, if it has not expired.
    pub fn get(&self, k: &AnswerKey, now_ns: u64) -> Option<Bytes> {
        let mut g = self.inner.lock().ok()?;
        let e = g.map.get(k)?;
        if e.expires_ns > now_ns {
            return Some(e.answer.clone());
        }
        if let Some(e) = g.map.remove(k) {
            g.bytes -= weight(k, &e.answer);
        }
        None
    }

    /// Stores an answer (replacing an older one), then drops the oldest entries
    /// until both bounds hold. An answer larger than the byte bound is not stored.
    pub fn put(&self, k: AnswerKey, answer: Bytes, now_ns: u64) -> bool {
        let w = weight(&k, &answer);
        if w > self.max_bytes || self.max_entries == 0 {
            return false;
        }
        let Ok(mut g) = self.inner.lock() else {
            return false;
        };
        g.seq += 1;
        let seq = g.seq;
        g.order.push_back((k.clone(), seq));
        let entry = Entry {
            answer,
            expires_ns: now_ns.saturating_add(self.ttl_ns),
            seq,
        };
        if let Some(old) = g.map.insert(k.clone(), entry) {
            g.bytes -= weight(&k, &old.answer);
        }
        g.bytes += w;
        while g.map.len() > self.max_entries || g.bytes > self.max_bytes {
            let Some((old, s)) = g.order.pop_front() else {
                break;
            };
            if g.map.get(&old).is_some_and(|e| e.seq == s) {
                if let Some(e) = g.map.remove(&old) {
                    g.bytes -= weight(&old, &e.answer);
                }
            }
        }
        // Places left behind by replaced or expired entries are dropped as they surface.
        while g
            .order
            .front()
            .is_some_and(|(k, s)| g.map.get(k).is_none_or(|e| e.seq != *s))
        {
            g.order.pop_front();
        }
        true
    }

    /// Entries and bytes held (for tests).
    pub fn size(&self) -> (usize, usize) {
        self.inner
            .lock()
            .map(|g| (g.map.len(), g.bytes))
            .unwrap_or((0, 0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(body: &'static str) -> AnswerKey {
        AnswerKey::new(0, 0, 0, Bytes::from_static(body.as_bytes()))
    }

    fn cache(entries: usize, bytes: usize) -> Cache {
        Cache::new(&CacheSettings {
            ttl_ms: 1000,
            max_entries: entries,
            max_bytes: bytes,
        })
    }

    #[test]
    fn expires_after_ttl() {
        let c = cache(10, 1000);
        c.put(key("a"), Bytes::from_static(b"A"), 0);
        assert_eq!(c.get(&key("a"), 999_999_999).as_deref(), Some(&b"A"[..]));
        assert_eq!(c.get(&key("a"), 1_000_000_000), None);
        assert_eq!(c.size(), (0, 0));
    }

    #[test]
    fn bounded_by_entries_and_bytes_oldest_first() {
        let c = cache(2, 1000);
        for k in ["a", "b", "c"] {
            c.put(key(k), Bytes::from_static(b"x"), 0);
        }
        assert_eq!(c.get(&key("a"), 0), None);
        assert!(c.get(&key("c"), 0).is_some());
        let c = cache(10, 10);
        c.put(key("a"), Bytes::from_static(b"1234"), 0);
        c.put(key("b"), Bytes::from_static(b"1234"), 0);
        assert_eq!(c.size(), (2, 10));
        c.put(key("c"), Bytes::from_static(b"1"), 0);
        assert_eq!(c.size(), (2, 7));
        assert_eq!(c.get(&key("a"), 0), None);
        assert!(!c.put(key("d"), Bytes::from_static(b"12345678901"), 0));
    }

    #[test]
    fn keys_differ_by_scope_model_api_and_body() {
        let b = || Bytes::from_static(b"{}");
        let k = AnswerKey::new(0, 0, 0, b());
        assert_eq!(k, AnswerKey::new(0, 0, 0, b()));
        for other in [
            AnswerKey::new(1, 0, 0, b()),
            AnswerKey::new(0, 1, 0, b()),
            AnswerKey::new(0, 0, 1, b()),
            AnswerKey::new(0, 0, 0, Bytes::from_static(b"{ }")),
        ] {
            assert_ne!(k, other);
        }
    }

    #[test]
    fn replacing_an_entry_keeps_the_byte_count() {
        let c = cache(10, 100);
        c.put(key("a"), Bytes::from_static(b"1234"), 0);
        c.put(key("a"), Bytes::from_static(b"12"), 0);
        assert_eq!(c.size(), (1, 3));
    }
}
