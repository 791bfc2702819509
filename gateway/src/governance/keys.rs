//! API keys by name: a lookup that does not leak the secret through timing, each key's
//! model restriction, and its request and token limits.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use super::limiter::Gcra;
use crate::config::KeySettings;

/// One accepted key. Its secret is only compared, never shown: metrics and logs
/// use `name`.
pub struct ApiKey {
    pub name: String,
    secret: Box<[u8]>,
    /// Allowed models by route index; `None` = all.
    models: Option<Box<[bool]>>,
    pub rpm: Option<Gcra>,
    pub tpm: Option<Gcra>,
}

impl ApiKey {
    /// Whether this key may use model `m` (route index).
    pub fn allows(&self, m: usize) -> bool {
        self.models
            .as_ref()
            .is_none_or(|a| a.get(m).copied().unwrap_or(false))
    }

    /// Whether the key has any limit (so the request path must check it).
    pub fn limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
}

/// The accepted keys, found by a hash of the presented secret.
///
/// The hash is SipHash under a random per-process key, so which bucket a guess lands
/// in says nothing an attacker can steer; the one candidate found is then compared in
/// constant time. (A plain `==` over the list would stop at the first differing byte.)
pub struct KeyTable {
    keys: Box<[ApiKey]>,
    by_hash: HashMap<u64, Vec<usize>>,
    hasher: RandomState,
}

impl KeyTable {
    /// Builds the table; `models` is the number of routes.
    pub fn new(keys: &[KeySettings], models: usize) -> Self {
        let hasher = RandomState::new();
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        let keys: Box<[ApiKey]> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                by_hash
                    .entry(hasher.hash_one(k.key.as_bytes()))
                    .or_default()
                    .push(i);
                ApiKey {
                    name: k.name.clone(),
                    secret: k.key.as_bytes().into(),
                    models: k
                        .models
                        .as_ref()
                        .map(|list| (0..models).map(|m| list.contains(&m)).collect()),
                    rpm: k.rpm.map(Gcra::per_minute),
                    tpm: k.tpm.map(Gcra::per_minute),
                }
            })
            .collect();
        KeyTable {
            keys,
            by_hash,
            hasher,
        }
    }

    /// No keys configured: no authentication.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key whose secret is `presented`, by index.
    pub fn find(&self, presented: &[u8]) -> Option<usize> {
        let candidates = self.by_hash.get(&self.hasher.hash_one(presented))?;
        candidates
            .iter()
            .copied()
            .find(|&i| constant_time_eq(&self.keys[i].secret, presented))
    }

    pub fn get(&self, i: usize) -> &ApiKey {
        &self.keys[i]
    }

    pub fn all(&self) -> &[ApiKey] {
        &self.keys
    }
}

/// Byte equality whose time depends only on the lengths, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(name: &str, key: &str, models: Option<Vec<usize>>) -> KeySettings {
        KeySettings {
            name: name.into(),
            key: key.into(),
            rpm: None,
            tpm: None,
            models,
        }
    }

    #[test]
    fn finds_keys_by_secret_and_checks_models() {
        let t = KeyTable::new(
            &[key("a", "sk-a", None), key("b", "sk-b", Some(vec![1]))],
            3,
        );
        assert_eq!(t.find(b"sk-a"), Some(0));
        assert_eq!(t.find(b"sk-b"), Some(1));
        assert_eq!(t.find(b"sk-c"), None);
        assert_eq!(t.find(b"sk-"), None);
        assert!(t.get(0).allows(2));
        assert!(t.get(1).allows(1) && !t.get(1).allows(0));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
