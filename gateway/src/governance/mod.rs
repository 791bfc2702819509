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

/// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` values of `q`. The
/// three are written into one buffer and sliced: one allocation, not five.
fn quota_values(q: Quota) -> [HeaderValue; 3] {
    let mut buf = BytesMut::with_capacity(48);
    put_u64(&mut buf, q.limit);
    let l = buf.len();
    put_u64(&mut buf, q.remaining);
    let r = buf.len();
    if q.reset_ms < 1000 {
        put_u64(&mut buf, q.reset_ms);
        buf.extend_from_slice(b"ms");
    } else {
        let _ = write_duration(&mut buf, q.reset_ms);
    }
    let all = buf.freeze();
    // Digits and letters only: always valid header values.
    [0..l, l..r, r..all.len()].map(|range| {
        HeaderValue::from_maybe_shared(all.slice(range))
            .unwrap_or_else(|_| HeaderValue::from_static("0"))
    })
}

/// Appends `n` in decimal, without the formatting machinery (`write!` costs several
/// times more, and this runs three times for every answer under a limit).
fn put_u64(buf: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Adds OpenAI's `x-ratelimit-*` headers of one limit to `h` (for refusals).
pub fn quota_headers(h: &mut HeaderMap, kind: LimitKind, q: Quota) {
    let i = kind as usize;
    h.reserve(3);
    for (name, v) in [&LIMIT[i], &REMAINING[i], &RESET[i]]
        .into_iter()
        .zip(quota_values(q))
    {
        h.insert(name.clone(), v);
    }
}

/// Room an answer's header map keeps beyond the limits' six: content-type,
/// cache-control, and the gateway's deployment, attempts, overhead and cache headers.
const ANSWER_HEADERS: usize = 6;

/// Header maps holding the `x-ratelimit-*` names (requests; tokens; both), made once.
/// A cloned map is filled in by position, so the long names are not hashed per
/// answer, as every `insert` would (FNV over some 28 bytes, six times).
fn quota_templates() -> &'static [HeaderMap; 3] {
    static MAPS: std::sync::OnceLock<[HeaderMap; 3]> = std::sync::OnceLock::new();
    MAPS.get_or_init(|| {
        [&[0][..], &[1], &[0, 1]].map(|kinds| {
            let mut h = HeaderMap::with_capacity(6 + ANSWER_HEADERS);
            for &i in kinds {
                for name in [&LIMIT[i], &REMAINING[i], &RESET[i]] {
                    h.insert(name.clone(), HeaderValue::from_static("0"));
                }
            }
            h
        })
    })
}

impl Quotas {
    /// A header map for an admitted request's answer holding these quotas'
    /// `x-ratelimit-*` headers (the key's figures, else the model's); empty (no
    /// allocation) when no limit applied.
    pub fn header_map(&self) -> HeaderMap {
        let (t, values) = match (self.requests, self.tokens) {
            (None, None) => return HeaderMap::new(),
            (Some(r), None) => (0, [Some(quota_values(r)), None]),
            (None, Some(k)) => (1, [Some(quota_values(k)), None]),
            (Some(r), Some(k)) => (2, [Some(quota_values(r)), Some(quota_values(k))]),
        };
        let mut h = quota_templates()[t].clone();
        // The template's entries are in insertion order: limit, remaining, reset per kind.
        for (slot, v) in h.values_mut().zip(values.into_iter().flatten().flatten()) {
            *slot = v;
        }
        h
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
        let decimal = |n| {
            let mut b = BytesMut::new();
            put_u64(&mut b, n);
            String::from_utf8(b.to_vec()).unwrap()
        };
        for n in [0, 7, 10, 999, 1_000_000_000_000, u64::MAX] {
            assert_eq!(decimal(n), n.to_string());
        }
    }

    #[test]
    fn header_maps_carry_each_limit_once_with_its_figures() {
        let q = |limit, remaining, reset_ms| Quota {
            limit,
            remaining,
            reset_ms,
        };
        assert!(Quotas::default().header_map().is_empty());
        let both = Quotas {
            requests: Some(q(100, 99, 600)),
            tokens: Some(q(5000, 4000, 12_000)),
        }
        .header_map();
        let text = |n: &str| both.get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!(both.len(), 6);
        assert_eq!(text("x-ratelimit-limit-requests"), "100");
        assert_eq!(text("x-ratelimit-remaining-requests"), "99");
        assert_eq!(text("x-ratelimit-reset-requests"), "600ms");
        assert_eq!(text("x-ratelimit-limit-tokens"), "5000");
        assert_eq!(text("x-ratelimit-remaining-tokens"), "4000");
        assert_eq!(text("x-ratelimit-reset-tokens"), "12s");
        let tokens = Quotas {
            requests: None,
            tokens: Some(q(7, 6, 1500)),
        }
        .header_map();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.get("x-ratelimit-reset-tokens").unwrap(), "1.5s");
        assert!(tokens.get("x-ratelimit-limit-requests").is_none());
        // A clone filled in by position keeps working as a map (lookups hash the names).
        let mut with_more = tokens.clone();
        with_more.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("a"));
        assert_eq!(with_more.get("x-ratelimit-limit-tokens").unwrap(), "7");
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
