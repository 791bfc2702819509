//! Who may call and how much: named keys, per-key and per-model request and token
//! limits (lock-free GCRA), and the opt-in answer sharing of a model (coalescing of
//! identical concurrent requests, an exact-match cache).

pub mod cache;
pub mod coalesce;
pub mod keys;
pub mod limiter;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::{GatewayError, LimitKind};
use keys::KeyTable;
use limiter::{Gcra, Quota};

/// A model's own limits (all clients together).
#[derive(Default)]
pub struct ModelLimits {
    pub rpm: Option<Gcra>,
    pub tpm: Option<Gcra>,
}

impl ModelLimits {
    pub fn new(rpm: Option<u64>, tpm: Option<u64>) -> Self {
        ModelLimits {
            rpm: rpm.map(Gcra::per_minute),
            tpm: tpm.map(Gcra::per_minute),
        }
    }

    fn limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some()
    }
}

/// Tokens to settle once the answer's usage is known (carried by the request's
/// metrics guard, so a stream settles when it ends).
#[derive(Debug, Clone, Copy)]
pub struct Charge {
    pub key: Option<usize>,
    pub model: usize,
    /// Tokens reserved before the call (from `max_tokens`).
    pub reserved: u64,
}

/// The quotas an admitted request reports in `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quotas {
    pub requests: Option<Quota>,
    pub tokens: Option<Quota>,
}

/// The limits of every key and model.
pub struct Limits {
    pub models: Box<[ModelLimits]>,
    /// Whether any key or model has a limit; when not, nothing is checked.
    pub any: bool,
}

impl Limits {
    pub fn new(keys: &KeyTable, models: Box<[ModelLimits]>) -> Self {
        let any = keys.all().iter().any(|k| k.limited()) || models.iter().any(|m| m.limited());
        Limits { models, any }
    }

    /// Admits one request of `key` (index, if any) on model `m` reserving `reserve`
    /// tokens against every limit that applies, or refuses it with the limit it hit
    /// (and takes back what the limits checked before it took).
    pub fn admit(
        &self,
        keys: &KeyTable,
        key: Option<usize>,
        m: usize,
        reserve: u64,
        now: u64,
    ) -> Result<Quotas, GatewayError> {
        let k = key.map(|i| keys.get(i));
        let ml = &self.models[m];
        let checks: [(Option<&Gcra>, u64, LimitKind, bool); 4] = [
            (k.and_then(|k| k.rpm.as_ref()), 1, LimitKind::Requests, true),
            (
                k.and_then(|k| k.tpm.as_ref()),
                reserve,
                LimitKind::Tokens,
                true,
            ),
            (ml.rpm.as_ref(), 1, LimitKind::Requests, false),
            (ml.tpm.as_ref(), reserve, LimitKind::Tokens, false),
        ];
        let mut q = Quotas::default();
        for (i, (g, units, kind, of_key)) in checks.iter().enumerate() {
            let Some(g) = g else { continue };
            match g.check(now, *units) {
                Ok(quota) => {
                    // The key's figures win the headers; a model's show when the key has none.
                    let slot = match kind {
                        LimitKind::Requests => &mut q.requests,
                        LimitKind::Tokens => &mut q.tokens,
                    };
                    if *of_key || slot.is_none() {
                        *slot = Some(quota);
                    }
                }
                Err(d) => {
                    for (g, units, ..) in &checks[..i] {
                        if let Some(g) = g {
                            g.adjust(now, -(*units as i64));
                        }
                    }
                    let scope = match (of_key, k) {
                        (true, Some(k)) => format!("key `{}`", k.name),
                        _ => "this model".to_string(),
                    };
                    let e = GatewayError::RateLimited {
                        kind: *kind,
                        scope,
                        retry_after_ms: d.retry_after_ms.max(1),
                        limit: d.quota.limit,
                        remaining: d.quota.remaining,
                        reset_ms: d.quota.reset_ms,
                    };
                    return Err(e);
                }
            }
        }
        Ok(q)
    }

    /// Settles a request's tokens: charges what it used beyond its reservation, or
    /// gives back what it did not use.
    pub fn settle(&self, keys: &KeyTable, c: Charge, used: u64, now: u64) {
        let delta = used as i64 - c.reserved as i64;
        if let Some(g) = c.key.and_then(|i| keys.get(i).tpm.as_ref()) {
            g.adjust(now, delta);
        }
        if let Some(g) = self.models.get(c.model).and_then(|m| m.tpm.as_ref()) {
            g.adjust(now, delta);
        }
    }
}

const LIMIT: [HeaderName; 2] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-limit-tokens"),
];
const REMAINING: [HeaderName; 2] = [
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
];
const RESET: [HeaderName; 2] = [
    HeaderName::from_static("x-ratelimit-reset-requests"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// Adds OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers. The
/// three values are written into one buffer and sliced: one allocation, not five.
pub fn quota_headers(h: &mut HeaderMap, kind: LimitKind, q: Quota) {
    use std::fmt::Write as _;
    let i = kind as usize;
    let mut buf = BytesMut::with_capacity(48);
    let _ = write!(buf, "{}", q.limit);
    let l = buf.len();
    let _ = write!(buf, "{}", q.remaining);
    let r = buf.len();
    let _ = write_duration(&mut buf, q.reset_ms);
    let all = buf.freeze();
    h.reserve(3);
    for (name, range) in [
        (&LIMIT[i], 0..l),
        (&REMAINING[i], l..r),
        (&RESET[i], r..all.len()),
    ] {
        if let Ok(v) = HeaderValue::from_maybe_shared(all.slice(range)) {
            h.insert(name.clone(), v);
        }
    }
}

/// A wait as OpenAI writes it: `250ms`, `1s`, `6m0s`, `1.5s`.
fn write_duration(out: &mut impl std::fmt::Write, ms: u64) -> std::fmt::Result {
    if ms < 1000 {
        return write!(out, "{ms}ms");
    }
    let (min, rest) = (ms / 60_000, ms % 60_000);
    if min > 0 {
        write!(out, "{min}m")?;
    }
    if rest % 1000 == 0 {
        write!(out, "{}s", rest / 1000)
    } else {
        write!(out, "{}s", rest as f64 / 1000.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::KeySettings;

    #[test]
    fn durations_read_like_openai() {
        let duration_text = |ms| {
            let mut s = String::new();
            write_duration(&mut s, ms).unwrap();
            s
        };
        assert_eq!(duration_text(20), "20ms");
        assert_eq!(duration_text(1000), "1s");
        assert_eq!(duration_text(1500), "1.5s");
        assert_eq!(duration_text(360_000), "6m0s");
    }

    #[test]
    fn a_refusal_takes_back_what_earlier_limits_took() {
        let keys = KeyTable::new(
            &[KeySettings {
                name: "k".into(),
                key: "s".into(),
                rpm: Some(10),
                tpm: None,
                models: None,
            }],
            1,
        );
        let limits = Limits::new(&keys, vec![ModelLimits::new(Some(1), None)].into());
        assert!(limits.any);
        let now = 1_000_000_000_000;
        let q = limits.admit(&keys, Some(0), 0, 0, now).unwrap();
        assert_eq!(q.requests.unwrap().remaining, 9);
        let e = limits.admit(&keys, Some(0), 0, 0, now).unwrap_err();
        assert!(e.to_string().contains("this model"), "{e}");
        // The model refused, so the key's request was given back.
        let rpm = keys.get(0).rpm.as_ref().unwrap();
        assert_eq!(rpm.peek(now).remaining, 9);
    }
}
