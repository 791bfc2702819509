//! Results of one phase run by several generators at once (each with its share of the
//! rate or of the virtual users), merged exactly: HDR histograms added and their
//! percentiles read again (never averages of percentiles), counts and rates summed, the
//! per-second series summed second by second, every generator's cost kept.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::result::{
    GeneratorCost, GeneratorPart, PhaseHistograms, PhaseResult, RequestCounts, ResultWarning,
    ResultWarningKind, SuiteResult, TimePoint,
};
use super::stats::{curve, histogram, summary, Tally};

/// Why phases could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("generator {0}'s result has no histograms (written by an older orchestrator?)")]
    NoHistograms(usize),
    #[error("generator {index}'s {which} histogram: {why}")]
    Histogram {
        index: usize,
        which: &'static str,
        why: String,
    },
    #[error(
        "generator `{name}` ran {got}, the first generator ran {want}: only results of the same run merge"
    )]
    Mismatch {
        name: String,
        got: String,
        want: String,
    },
}

/// A generator that started this late against the shared start time (ms) is named in a
/// `generator_lagged` warning: for that long the target saw less than the whole load.
pub const LAG_WARN_MS: f64 = 100.0;

/// What must agree between the results of generators that ran one suite together: the
/// suite, the URL and the phases' names in order.
fn run_of(r: &SuiteResult) -> String {
    let phases: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    format!(
        "suite `{}` against {} (phases {})",
        r.suite,
        r.url,
        phases.join(", ")
    )
}

/// One suite's result from the results of several generators that ran it at the same time,
/// each named: every phase merged exactly ([`merge_phases`]) with each generator's part
/// kept, each generator's warnings kept under its name, and a `generator_lagged` warning
/// for one that started [`LAG_WARN_MS`] late or stopped early.
pub fn merge_results(parts: &[(String, SuiteResult)]) -> Result<SuiteResult, MergeError> {
    let (_, first) = parts.first().ok_or(MergeError::Empty)?;
    let want = run_of(first);
    if let Some((name, r)) = parts.iter().find(|(_, r)| run_of(r) != want) {
        return Err(MergeError::Mismatch {
            name: name.clone(),
            got: run_of(r),
            want,
        });
    }
    let mut out = first.clone();
    out.phases = (0..first.phases.len())
        .map(|i| {
            let phases: Vec<PhaseResult> = parts.iter().map(|(_, r)| r.phases[i].clone()).collect();
            let mut merged = merge_phases(&phases)?;
            merged.generators = parts
                .iter()
                .map(|(name, r)| part_of(name, &r.phases[i], r.interrupted))
                .collect();
            Ok(merged)
        })
        .collect::<Result<_, MergeError>>()?;
    out.interrupted = parts.iter().any(|(_, r)| r.interrupted);
    out.started_at = parts
        .iter()
        .map(|(_, r)| r.started_at)
        .min()
        .unwrap_or(out.started_at);
    out.finished_at = parts
        .iter()
        .map(|(_, r)| r.finished_at)
        .max()
        .unwrap_or(out.finished_at);
    out.warnings = parts
        .iter()
        .flat_map(|(name, r)| named_warnings(name, &r.warnings))
        .chain(out.phases.iter().flat_map(lag_warnings))
        .collect();
    Ok(out)
}

/// A generator's own warnings in a merged result, each prefixed with its name.
pub(crate) fn named_warnings<'a>(
    name: &'a str,
    warnings: &'a [ResultWarning],
) -> impl Iterator<Item = ResultWarning> + 'a {
    warnings.iter().map(move |w| ResultWarning {
        message: format!("generator `{name}`: {}", w.message),
        ..w.clone()
    })
}

pub(crate) fn part_of(name: &str, p: &PhaseResult, interrupted: bool) -> GeneratorPart {
    GeneratorPart {
        name: name.to_string(),
        requests: p.requests.total,
        ok: p.requests.ok,
        requests_per_s: p.throughput.requests_per_s,
        p50_ms: p.latency_ms.p50,
        p99_ms: p.latency_ms.p99,
        generator: p.generator.clone(),
        interrupted,
    }
}

/// The warnings of a merged phase's generators that started late or stopped early.
pub(crate) fn lag_warnings(p: &PhaseResult) -> Vec<ResultWarning> {
    let warn = |message: String| ResultWarning {
        kind: ResultWarningKind::GeneratorLagged,
        phase: Some(p.name.clone()),
        message,
    };
    let mut out = Vec::new();
    for g in &p.generators {
        if let Some(lag) = g.generator.start_lag_ms.filter(|l| *l > LAG_WARN_MS) {
            out.push(warn(format!(
                "generator `{}` started {lag:.0} ms after the shared start time",
                g.name
            )));
        }
        if g.interrupted {
            out.push(warn(format!(
                "generator `{}` stopped before the end of its run",
                g.name
            )));
        }
    }
    out
}

/// `h` as V2 + deflate, base64.
pub fn encode(h: &Histogram<u64>) -> Option<String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The inverse of [`encode`].
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("{e:?}"))
}

/// The histograms of a tally, for its phase's result (`None` if one fails to serialize).
pub(crate) fn histograms_of(t: &Tally, stream: bool) -> Option<PhaseHistograms> {
    let opt = |h: &Histogram<u64>| {
        if stream {
            encode(h).map(Some)
        } else {
            Some(None)
        }
    };
    Some(PhaseHistograms {
        latency_us: encode(&t.latency)?,
        ttfb_us: encode(&t.ttfb)?,
        ttft_us: opt(&t.ttft)?,
        itl_us: opt(&t.itl)?,
        tpot_us: opt(&t.tpot)?,
        latency_by_due_us: Vec::new(),
    })
}

/// The sum of one histogram over every part (`None` when the parts do not carry it).
fn added(
    parts: &[(usize, &PhaseHistograms)],
    which: &'static str,
    get: impl Fn(&PhaseHistograms) -> Option<&String>,
) -> Result<Option<Histogram<u64>>, MergeError> {
    let mut sum = histogram();
    let mut any = false;
    for (index, h) in parts {
        let Some(text) = get(h) else { continue };
        let one = decode(text).map_err(|why| MergeError::Histogram {
            index: *index,
            which,
            why,
        })?;
        sum.add(&one).map_err(|e| MergeError::Histogram {
            index: *index,
            which,
            why: format!("{e:?}"),
        })?;
        any = true;
    }
    Ok(any.then_some(sum))
}

/// One phase from the same phase run by several generators at the same time.
pub fn merge_phases(parts: &[PhaseResult]) -> Result<PhaseResult, MergeError> {
    let first = parts.first().ok_or(MergeError::Empty)?;
    let hs: Vec<(usize, &PhaseHistograms)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.histograms
                .as_ref()
                .map(|h| (i, h))
                .ok_or(MergeError::NoHistograms(i))
        })
        .collect::<Result<_, _>>()?;
    let latency = added(&hs, "latency", |h| Some(&h.latency_us))?.unwrap_or_else(histogram);
    let ttfb = added(&hs, "ttfb", |h| Some(&h.ttfb_us))?.unwrap_or_else(histogram);
    let ttft = added(&hs, "ttft", |h| h.ttft_us.as_ref())?;
    let itl = added(&hs, "itl", |h| h.itl_us.as_ref())?;
    let tpot = added(&hs, "tpot", |h| h.tpot_us.as_ref())?;
    let mut out = first.clone();
    out.duration_s = parts.iter().map(|p| p.duration_s).fold(0.0, f64::max);
    out.vus = parts.iter().map(|p| p.vus).sum();
    out.target_rate_per_s = parts.iter().map(|p| p.target_rate_per_s).sum();
    out.requests = counts(parts);
    let sum = |f: fn(&PhaseResult) -> f64| parts.iter().map(f).sum::<f64>();
    out.throughput.requests_per_s = sum(|p| p.throughput.requests_per_s);
    out.throughput.ok_per_s = sum(|p| p.throughput.ok_per_s);
    out.throughput.output_tokens_per_s = sum(|p| p.throughput.output_tokens_per_s);
    out.output_tokens = parts.iter().map(|p| p.output_tokens).sum();
    out.latency_ms = summary(&latency);
    out.ttfb_ms = summary(&ttfb);
    out.ttft_ms = ttft.as_ref().map(summary);
    out.itl_ms = itl.as_ref().map(summary);
    out.tpot_ms = tpot.as_ref().map(summary);
    out.percentile_curve = curve(&latency);
    out.generator = GeneratorCost {
        cpu_seconds: sum(|p| p.generator.cpu_seconds),
        cpu_percent: sum(|p| p.generator.cpu_percent),
        threads: parts.iter().map(|p| p.generator.threads).sum(),
        cores: parts.iter().map(|p| p.generator.cores).sum(),
        bound: parts.iter().any(|p| p.generator.bound),
        start_lag_ms: parts
            .iter()
            .filter_map(|p| p.generator.start_lag_ms)
            .reduce(f64::max),
    };
    out.timeseries = series(parts);
    // Per stage there is no histogram to add: left out.
    out.stages = Vec::new();
    let by_due = by_due_added(&hs)?;
    out.latency_by_due_ms = by_due.iter().map(summary).collect();
    out.histograms = Some(PhaseHistograms {
        latency_us: encode(&latency).unwrap_or_default(),
        ttfb_us: encode(&ttfb).unwrap_or_default(),
        ttft_us: ttft.as_ref().and_then(encode),
        itl_us: itl.as_ref().and_then(encode),
        tpot_us: tpot.as_ref().and_then(encode),
        latency_by_due_us: by_due.iter().filter_map(encode).collect(),
    });
    Ok(out)
}

/// The latency by due part summed over the parts, part by part; empty unless every
/// part carries them (the schedules of generators started together cut the same
/// quarters of time).
fn by_due_added(hs: &[(usize, &PhaseHistograms)]) -> Result<Vec<Histogram<u64>>, MergeError> {
    let parts = hs.first().map_or(0, |(_, h)| h.latency_by_due_us.len());
    if parts == 0 || hs.iter().any(|(_, h)| h.latency_by_due_us.len() != parts) {
        return Ok(Vec::new());
    }
    (0..parts)
        .map(|k| {
            let one = added(hs, "latency by due time", |h| h.latency_by_due_us.get(k))?;
            Ok(one.unwrap_or_else(histogram))
        })
        .collect()
}

fn counts(parts: &[PhaseResult]) -> RequestCounts {
    let mut c = RequestCounts::default();
    for p in parts {
        let r = &p.requests;
        c.total += r.total;
        c.ok += r.ok;
        c.dropped += r.dropped;
        c.rig_refused += r.rig_refused;
        c.errors.add(&r.errors);
    }
    if c.total > 0 {
        c.error_percent = c.errors.total() as f64 * 100.0 / c.total as f64;
    }
    c
}

/// Second by second: counts and rates summed. A second's p50/p99 cannot be merged without
/// its histogram; the merged series carries the highest of the generators' (an upper
/// bound), while the phase's own percentiles above are exact.
fn series(parts: &[PhaseResult]) -> Vec<TimePoint> {
    let n = parts.iter().map(|p| p.timeseries.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            let mut t = TimePoint::default();
            for w in parts.iter().filter_map(|p| p.timeseries.get(i)) {
                t.t_s = t.t_s.max(w.t_s);
                t.active_vus += w.active_vus;
                t.target_rate_per_s += w.target_rate_per_s;
                t.requests += w.requests;
                t.ok += w.ok;
                t.errors += w.errors;
                t.dropped += w.dropped;
                t.requests_per_s += w.requests_per_s;
                t.p50_ms = t.p50_ms.max(w.p50_ms);
                t.p99_ms = t.p99_ms.max(w.p99_ms);
                t.ttft_p50_ms = t.ttft_p50_ms.max(w.ttft_p50_ms);
                t.output_tokens += w.output_tokens;
            }
            t
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::load::result::tests::sample_phase;

    /// A phase result of `latencies_us`, histograms included.
    pub(crate) fn part(latencies_us: &[u64]) -> PhaseResult {
        let mut t = Tally::new();
        for &us in latencies_us {
            t.latency.record(us).unwrap();
            t.ttfb.record(us / 2).unwrap();
        }
        let mut p = sample_phase(false);
        p.requests.total = latencies_us.len() as u64;
        p.requests.ok = latencies_us.len() as u64;
        p.latency_ms = summary(&t.latency);
        p.histograms = histograms_of(&t, false);
        p
    }

    fn result(name: &str, latencies_us: &[u64], lag_ms: f64) -> (String, SuiteResult) {
        let mut r = crate::load::result::tests::sample();
        let mut p = part(latencies_us);
        p.generator.start_lag_ms = Some(lag_ms);
        r.phases = vec![p];
        r.warnings = vec![ResultWarning {
            kind: ResultWarningKind::Dropped,
            phase: None,
            message: "3 dropped".into(),
        }];
        (name.to_string(), r)
    }

    #[test]
    fn results_merge_phase_by_phase_naming_each_generator() {
        let a = result("gen-a", &[1000; 300], 2.0);
        let b = result("gen-b", &[3000; 100], 250.0);
        let m = merge_results(&[a.clone(), b]).unwrap();
        let p = &m.phases[0];
        assert_eq!(p.requests.total, 400);
        assert_eq!(p.latency_ms.count, 400);
        let names: Vec<&str> = p.generators.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["gen-a", "gen-b"]);
        assert_eq!(p.generators[1].requests, 100);
        assert_eq!(p.generator.start_lag_ms, Some(250.0));
        let text: Vec<&str> = m.warnings.iter().map(|w| w.message.as_str()).collect();
        assert!(text.contains(&"generator `gen-a`: 3 dropped"), "{text:?}");
        assert!(
            text.contains(&"generator `gen-b` started 250 ms after the shared start time"),
            "{text:?}"
        );
        assert!(
            !text.iter().any(|t| t.contains("`gen-a` started")),
            "{text:?}"
        );
        // Another run's result does not merge, and says whose.
        let mut other = result("gen-c", &[1000], 0.0);
        other.1.url = "http://elsewhere:1".into();
        let e = merge_results(&[a, other]).unwrap_err().to_string();
        assert!(
            e.contains("generator `gen-c` ran suite `frontier` against http://elsewhere:1"),
            "{e}"
        );
    }

    #[test]
    fn latency_by_due_time_merges_part_by_part() {
        let with_due = |us: &[u64; 4]| {
            let mut p = part(&[1000; 4]);
            p.histograms.as_mut().unwrap().latency_by_due_us = us
                .iter()
                .map(|&v| {
                    let mut h = histogram();
                    h.record(v).unwrap();
                    encode(&h).unwrap()
                })
                .collect();
            p
        };
        let m = merge_phases(&[
            with_due(&[1000, 1000, 1000, 1000]),
            with_due(&[1000, 1000, 9000, 9000]),
        ])
        .unwrap();
        let counts: Vec<u64> = m.latency_by_due_ms.iter().map(|s| s.count).collect();
        assert_eq!(counts, [2, 2, 2, 2]);
        assert!(m.latency_by_due_ms[3].max > 8.9 && m.latency_by_due_ms[0].max < 1.1);
        assert_eq!(m.histograms.unwrap().latency_by_due_us.len(), 4);
        // A part without them (closed, or older): none rather than wrong quarters.
        let m = merge_phases(&[with_due(&[1000; 4]), part(&[1000])]).unwrap();
        assert!(m.latency_by_due_ms.is_empty());
    }

    #[test]
    fn histograms_round_trip_through_v2_deflate_base64() {
        let mut h = histogram();
        for v in [100, 200, 300, 40_000] {
            h.record(v).unwrap();
        }
        let back = decode(&encode(&h).unwrap()).unwrap();
        assert_eq!((back.len(), back.max(), back.min()), (4, h.max(), h.min()));
        assert!(decode("not base64!").is_err());
    }

    #[test]
    fn merged_percentiles_are_those_of_all_samples_not_averages() {
        // Generator A saw 1,000 fast answers, B 90 fast and 10 slow: B's p99 is slow, but
        // of all 1,100 answers under 1 % were slow, so the merged p99 is fast; averaging the
        // parts' p99s would give about 50 ms.
        let a = part(&[1000; 1000]);
        let mut mixed = vec![1000; 90];
        mixed.extend([100_000; 10]);
        let b = part(&mixed);
        let merged = merge_phases(&[a, b.clone()]).unwrap();
        let mut all = histogram();
        for v in [1000u64; 1090].iter().chain(&[100_000; 10]) {
            all.record(*v).unwrap();
        }
        assert_eq!(merged.latency_ms, summary(&all));
        assert_eq!(merged.requests.total, 1100);
        assert!(merged.latency_ms.p99 < 1.1 && b.latency_ms.p99 > 99.0);
        // No histogram, no exact merge.
        let mut old = b;
        old.histograms = None;
        assert!(matches!(
            merge_phases(&[part(&[1]), old]),
            Err(MergeError::NoHistograms(1))
        ));
        assert!(matches!(merge_phases(&[]), Err(MergeError::Empty)));
    }
}
