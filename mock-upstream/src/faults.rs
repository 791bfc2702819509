//! Process-wide fault settings that the admin endpoint changes at run time.
//!
//! They start as the fault flags (`--error-rate`, `--429-rate`, `--hang-rate`,
//! `--reset-rate`, `--retry-after-s`) with no outage, replace those flags for every later
//! request, and are themselves overridden per request by the `x-mock-*` headers.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::config::{is_rate, Knobs, MAX_RETRY_AFTER_S, RATE_EXPECTED, RETRY_AFTER_EXPECTED};

/// Keys accepted by `PUT /__mock/faults`.
pub const FAULT_KEYS: [&str; 6] = [
    "error_rate",
    "rate_429",
    "hang_rate",
    "reset_rate",
    "retry_after_s",
    "outage",
];

/// A simulated outage of the whole upstream (the admin endpoint is never affected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Outage {
    /// Serve normally.
    Off = 0,
    /// Close the listening socket (new connections are refused by the kernel) and reset
    /// kept-alive connections at their next request.
    Refuse = 1,
    /// Accept connections but reset each one at its request (RST, no answer).
    Reset = 2,
}

impl Outage {
    /// All modes, in label order.
    pub const ALL: [Outage; 3] = [Outage::Off, Outage::Refuse, Outage::Reset];

    /// The JSON value and metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outage::Off => "off",
            Outage::Refuse => "refuse",
            Outage::Reset => "reset",
        }
    }

    fn from_u8(v: u8) -> Outage {
        match v {
            1 => Outage::Refuse,
            2 => Outage::Reset,
            _ => Outage::Off,
        }
    }
}

/// The run-time fault settings; serialized as the body of `GET /__mock/faults`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaultSettings {
    /// Share answered 500.
    pub error_rate: f64,
    /// Share answered 429.
    pub rate_429: f64,
    /// Share never answered.
    pub hang_rate: f64,
    /// Share whose connection is reset.
    pub reset_rate: f64,
    /// `retry-after` of injected 429 answers, seconds.
    pub retry_after_s: u32,
    /// Whole-upstream outage mode.
    pub outage: Outage,
}

impl FaultSettings {
    /// The fault part of the startup knobs, with no outage.
    pub fn from_knobs(knobs: &Knobs) -> FaultSettings {
        FaultSettings {
            error_rate: knobs.error_rate,
            rate_429: knobs.rate_429,
            hang_rate: knobs.hang_rate,
            reset_rate: knobs.reset_rate,
            retry_after_s: knobs.retry_after_s,
            outage: Outage::Off,
        }
    }

    /// Writes these settings over the fault knobs of `knobs` (headers are applied after).
    pub fn apply_to(&self, knobs: &mut Knobs) {
        knobs.error_rate = self.error_rate;
        knobs.rate_429 = self.rate_429;
        knobs.hang_rate = self.hang_rate;
        knobs.reset_rate = self.reset_rate;
        knobs.retry_after_s = self.retry_after_s;
    }

    /// Applies a partial update given as a JSON object. All or nothing: on error `self`
    /// is unchanged.
    pub fn with_update(self, body: &[u8]) -> Result<FaultSettings, FaultUpdateError> {
        let value: Value = serde_json::from_slice(body).map_err(FaultUpdateError::Json)?;
        let Value::Object(map) = value else {
            return Err(FaultUpdateError::NotAnObject);
        };
        let mut next = self;
        next.apply_map(&map)?;
        Ok(next)
    }

    fn apply_map(&mut self, map: &Map<String, Value>) -> Result<(), FaultUpdateError> {
        for (key, value) in map {
            match key.as_str() {
                "error_rate" => self.error_rate = rate(key, value)?,
                "rate_429" => self.rate_429 = rate(key, value)?,
                "hang_rate" => self.hang_rate = rate(key, value)?,
                "reset_rate" => self.reset_rate = rate(key, value)?,
                "retry_after_s" => self.retry_after_s = retry_after(key, value)?,
                "outage" => self.outage = outage(key, value)?,
                _ => return Err(FaultUpdateError::UnknownKey { key: key.clone() }),
            }
        }
        Ok(())
    }
}

fn invalid(key: &str, value: &Value, expected: &'static str) -> FaultUpdateError {
    FaultUpdateError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        expected,
    }
}

fn rate(key: &str, value: &Value) -> Result<f64, FaultUpdateError> {
    value
        .as_f64()
        .filter(|v| is_rate(*v))
        .ok_or_else(|| invalid(key, value, RATE_EXPECTED))
}

fn retry_after(key: &str, value: &Value) -> Result<u32, FaultUpdateError> {
    value
        .as_u64()
        .filter(|v| *v <= u64::from(MAX_RETRY_AFTER_S))
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| invalid(key, value, RETRY_AFTER_EXPECTED))
}

fn outage(key: &str, value: &Value) -> Result<Outage, FaultUpdateError> {
    match value.as_str() {
        Some("off") => Ok(Outage::Off),
        Some("refuse") => Ok(Outage::Refuse),
        Some("reset") => Ok(Outage::Reset),
        _ => Err(invalid(key, value, "\"off\", \"refuse\" or \"reset\"")),
    }
}

/// A rejected `PUT /__mock/faults`; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum FaultUpdateError {
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The body is JSON but not an object.
    #[error("the body must be a JSON object such as {{\"rate_429\": 0.5}}")]
    NotAnObject,
    /// A key that is not a fault setting (a typo, or `429_rate` for `rate_429`).
    #[error("unknown key `{key}`: known keys are {}", FAULT_KEYS.join(", "))]
    UnknownKey {
        /// The rejected key.
        key: String,
    },
    /// A value out of range or of the wrong type.
    #[error("invalid value {value} for `{key}`: expected {expected}")]
    Invalid {
        /// The key.
        key: String,
        /// The rejected value, as JSON.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// `outage: refuse` without `--admin-listen` would make the outage impossible to end.
    #[error("`outage: refuse` closes the main port, and with it this endpoint: start mock-upstream with --admin-listen to use it")]
    RefuseNeedsAdminListener,
}

impl FaultUpdateError {
    /// The key at fault, if one is (the error body's `param`).
    pub fn key(&self) -> Option<&str> {
        match self {
            FaultUpdateError::UnknownKey { key } | FaultUpdateError::Invalid { key, .. } => {
                Some(key)
            }
            FaultUpdateError::RefuseNeedsAdminListener => Some("outage"),
            FaultUpdateError::Json(_) | FaultUpdateError::NotAnObject => None,
        }
    }

    /// Short label (the error body's `code`).
    pub fn code(&self) -> &'static str {
        match self {
            FaultUpdateError::Json(_) => "invalid_json",
            FaultUpdateError::NotAnObject => "not_an_object",
            FaultUpdateError::UnknownKey { .. } => "unknown_key",
            FaultUpdateError::Invalid { .. } => "invalid_value",
            FaultUpdateError::RefuseNeedsAdminListener => "admin_listener_required",
        }
    }
}

/// The live settings: read on every request, written by the admin endpoint.
///
/// A sequence lock over plain atomics: readers never write shared memory (no lock word
/// bouncing between cores at ~100k requests/s), and retry in the rare case a write
/// overlapped their read, so they always see one whole setting, never half an update.
#[derive(Debug)]
pub struct LiveFaults {
    /// Odd while a write is in progress.
    seq: AtomicU64,
    /// Serializes writers (and read-modify-write updates).
    writer: Mutex<()>,
    error_rate: AtomicU64,
    rate_429: AtomicU64,
    hang_rate: AtomicU64,
    reset_rate: AtomicU64,
    retry_after_s: AtomicU32,
    outage: AtomicU8,
    startup: FaultSettings,
    /// Announces outage changes to the accept loop, which closes or reopens the port.
    outage_tx: watch::Sender<Outage>,
}

impl LiveFaults {
    /// Live settings starting (and resetting) to `startup`.
    pub fn new(startup: FaultSettings) -> LiveFaults {
        let live = LiveFaults {
            seq: AtomicU64::new(0),
            writer: Mutex::new(()),
            error_rate: AtomicU64::new(0),
            rate_429: AtomicU64::new(0),
            hang_rate: AtomicU64::new(0),
            reset_rate: AtomicU64::new(0),
            retry_after_s: AtomicU32::new(0),
            outage: AtomicU8::new(0),
            startup,
            outage_tx: watch::Sender::new(startup.outage),
        };
        live.write(&startup);
        live
    }

    /// The current settings (lock-free; see the type's docs).
    pub fn load(&self) -> FaultSettings {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let settings = self.read_fields();
                // Orders the field reads before the re-check of the sequence.
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return settings;
                }
            }
            // A writer is mid-update; it holds no lock we could wait on, so let it run.
            std::thread::yield_now();
        }
    }

    /// Just the outage mode: one load, for paths that need nothing else.
    pub fn outage(&self) -> Outage {
        Outage::from_u8(self.outage.load(Ordering::Relaxed))
    }

    /// The settings the process started with.
    pub fn startup(&self) -> FaultSettings {
        self.startup
    }

    /// Replaces the settings with `change(current)` unless it fails; returns the new ones.
    pub fn update<E>(
        &self,
        change: impl FnOnce(FaultSettings) -> Result<FaultSettings, E>,
    ) -> Result<FaultSettings, E> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let next = change(self.load())?;
        self.write(&next);
        // Sent under the writer lock so that outage announcements keep the write order.
        self.outage_tx.send_replace(next.outage);
        Ok(next)
    }

    /// A receiver of outage changes.
    pub fn subscribe_outage(&self) -> watch::Receiver<Outage> {
        self.outage_tx.subscribe()
    }

    fn read_fields(&self) -> FaultSettings {
        let f = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        FaultSettings {
            error_rate: f(&self.error_rate),
            rate_429: f(&self.rate_429),
            hang_rate: f(&self.hang_rate),
            reset_rate: f(&self.reset_rate),
            retry_after_s: self.retry_after_s.load(Ordering::Relaxed),
            outage: Outage::from_u8(self.outage.load(Ordering::Relaxed)),
        }
    }

    /// Stores every field; callers hold `writer` (or own `self` exclusively, in `new`).
    fn write(&self, s: &FaultSettings) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Readers that see any new field below also see the odd sequence.
        fence(Ordering::Release);
        let f = |a: &AtomicU64, v: f64| a.store(v.to_bits(), Ordering::Relaxed);
        f(&self.error_rate, s.error_rate);
        f(&self.rate_429, s.rate_429);
        f(&self.hang_rate, s.hang_rate);
        f(&self.reset_rate, s.reset_rate);
        self.retry_after_s.store(s.retry_after_s, Ordering::Relaxed);
        self.outage.store(s.outage as u8, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup() -> FaultSettings {
        let knobs = Knobs {
            error_rate: 0.25,
            ..Knobs::default()
        };
        FaultSettings::from_knobs(&knobs)
    }

    #[test]
    fn partial_update_keeps_the_other_keys() {
        let next = startup()
            .with_update(br#"{"rate_429": 1, "outage": "reset", "retry_after_s": 7}"#)
            .unwrap();
        assert_eq!(next.rate_429, 1.0);
        assert_eq!(next.error_rate, 0.25);
        assert_eq!(next.outage, Outage::Reset);
        assert_eq!(next.retry_after_s, 7);
    }

    #[test]
    fn bad_updates_name_the_key() {
        let cases: [(&[u8], Option<&str>, &str); 7] = [
            (br#"{"429_rate": 1}"#, Some("429_rate"), "unknown_key"),
            (
                br#"{"rate_429": 1, "bogus": 1}"#,
                Some("bogus"),
                "unknown_key",
            ),
            (br#"{"hang_rate": 1.5}"#, Some("hang_rate"), "invalid_value"),
            (
                br#"{"hang_rate": "0.5"}"#,
                Some("hang_rate"),
                "invalid_value",
            ),
            (
                br#"{"retry_after_s": 2.5}"#,
                Some("retry_after_s"),
                "invalid_value",
            ),
            (br#"{"outage": "down"}"#, Some("outage"), "invalid_value"),
            (b"[1]", None, "not_an_object"),
        ];
        for (body, key, code) in cases {
            let err = startup().with_update(body).unwrap_err();
            assert_eq!(err.key(), key, "{err}");
            assert_eq!(err.code(), code, "{err}");
            if let Some(key) = key {
                assert!(err.to_string().contains(key), "{err}");
            }
        }
        assert_eq!(
            startup().with_update(b"{").unwrap_err().code(),
            "invalid_json"
        );
    }

    #[test]
    fn live_settings_update_and_reset() {
        let live = LiveFaults::new(startup());
        assert_eq!(live.load(), startup());
        let mut rx = live.subscribe_outage();
        let next = live
            .update(|s| s.with_update(br#"{"outage": "refuse", "reset_rate": 0.5}"#))
            .unwrap();
        assert_eq!(live.load(), next);
        assert_eq!(live.outage(), Outage::Refuse);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), Outage::Refuse);
        let failed = live.update(|s| s.with_update(br#"{"reset_rate": 2}"#));
        assert!(failed.is_err());
        assert_eq!(live.load(), next);
        live.update(|_| Ok::<_, FaultUpdateError>(live.startup()))
            .unwrap();
        assert_eq!(live.load(), startup());
    }

    #[test]
    fn concurrent_readers_never_see_half_an_update() {
        let live = std::sync::Arc::new(LiveFaults::new(FaultSettings::from_knobs(
            &Knobs::default(),
        )));
        let writer = {
            let live = std::sync::Arc::clone(&live);
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let v = f64::from(i % 2);
                    live.update(|s| {
                        Ok::<_, FaultUpdateError>(FaultSettings {
                            error_rate: v,
                            rate_429: v,
                            hang_rate: v,
                            reset_rate: v,
                            ..s
                        })
                    })
                    .unwrap();
                }
            })
        };
        for _ in 0..20_000 {
            let s = live.load();
            assert!(
                s.error_rate == s.rate_429
                    && s.rate_429 == s.hang_rate
                    && s.hang_rate == s.reset_rate,
                "{s:?}"
            );
        }
        writer.join().unwrap();
    }
}
