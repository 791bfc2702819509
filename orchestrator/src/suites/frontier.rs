//! The `frontier` suite's search on the open-model rate: coarse rungs over the configured
//! ladder until one fails hard, then bisection between the last rate meeting a p99 bound and
//! the first missing it. Each rung lasts long enough for its p99 to rest on `min_samples`
//! answers (within a cap), and fails when its latency rises over the rung (saturation),
//! whatever its overall p99. The run itself is the caller's (`measure`); the rules here are
//! pure, so they are tested against synthetic targets.

use std::time::Duration;

use super::def::{FrontierDef, Profile, ProfileDef};
use crate::load::result::{
    FrontierPoint, FrontierRung, FrontierSearch, PhaseResult, RungFail, RungSearch, Summary,
};

/// A quarter needs this many answers before its median is compared: fewer (a short rung
/// at a low rate) leave saturation unjudged rather than guessed.
const MIN_PART_SAMPLES: u64 = 20;
/// The last quarter's median must be at least this many times the first quarter's ...
const RISE_FACTOR: f64 = 2.0;
/// ... and this much higher (ms), so a sub-millisecond median that doubles by noise
/// (0.1 -> 0.2 ms) is not taken for a queue.
const MIN_RISE_MS: f64 = 0.5;

/// One rung to run.
#[derive(Debug, Clone, PartialEq)]
pub struct RungPlan {
    pub name: String,
    pub rate: f64,
    pub duration: Duration,
    pub search: RungSearch,
    /// A warm-up at the rung's rate first: before the first rung and before each bisection
    /// rung (which follows a failed, higher one). Coarse rungs follow a lower rung that
    /// warmed the target already.
    pub warm: bool,
}

/// A measured rung and whether the ladder should stop after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub rung: FrontierRung,
    pub stop: bool,
}

/// The medians of the first and last quarter (by due time) and whether latency rose.
///
/// An open-model target that cannot keep up queues: each request waits behind the ones
/// before it, so latency grows with the request's due time. Comparing medians of the
/// first and last quarter sees that rise and is blind to a few slow outliers (a GC pause
/// moves p99, not a quarter's median); the third quarter must be above the first too, so a
/// stall in the last quarter alone does not count as a queue.
pub fn saturation(parts: &[Summary]) -> (Option<f64>, Option<f64>, bool) {
    let p50 = |i: usize| {
        parts
            .get(i)
            .filter(|s| s.count >= MIN_PART_SAMPLES)
            .map(|s| s.p50)
    };
    let n = parts.len();
    let (first, last) = (p50(0), n.checked_sub(1).and_then(p50));
    let third = n.checked_sub(2).and_then(p50);
    let saturated = match (first, third, last) {
        (Some(a), Some(c), Some(d)) if n >= 3 => {
            d >= a * RISE_FACTOR && d - a >= MIN_RISE_MS && c > a
        }
        _ => false,
    };
    (first, last, saturated)
}

/// Judges a measured rung: what fails it for every bound, which bounds it met, and
/// whether the ladder stops (hard failure: no answers, p99 over the largest bound, errors
/// or drops over `stop_error_percent`, the generator's limit, saturation).
pub fn judge(f: &FrontierDef, p: &PhaseResult, search: RungSearch, duration: Duration) -> Judged {
    let (first, last, saturated) = saturation(&p.latency_by_due_ms);
    let mut fails = Vec::new();
    if p.requests.ok == 0 {
        fails.push(RungFail::NoAnswers);
    }
    if p.requests.error_percent >= f.max_error_percent {
        fails.push(RungFail::Errors);
    }
    if p.requests.dropped > 0 {
        fails.push(RungFail::Dropped);
    }
    if p.generator.bound {
        fails.push(RungFail::GeneratorBound);
    }
    if saturated {
        fails.push(RungFail::Saturated);
    }
    let p99 = (p.latency_ms.count > 0).then_some(p.latency_ms.p99);
    let met_bounds_ms = f
        .bounds_ms
        .iter()
        .copied()
        .filter(|b| fails.is_empty() && p99.is_some_and(|v| v <= *b))
        .collect();
    let largest = f.bounds_ms.iter().copied().fold(0.0, f64::max);
    let scheduled = p.target_rate_per_s.unwrap_or(0.0) * p.duration_s;
    let dropped_percent = if scheduled > 0.0 {
        p.requests.dropped as f64 * 100.0 / scheduled
    } else {
        0.0
    };
    let stop = p.requests.ok == 0
        || p99.is_some_and(|v| v > largest)
        || p.requests.error_percent > f.stop_error_percent
        || dropped_percent > f.stop_error_percent
        || p.generator.bound
        || saturated;
    let samples = p.latency_ms.count;
    Judged {
        rung: FrontierRung {
            phase: p.name.clone(),
            search,
            rate_per_s: p.target_rate_per_s.unwrap_or(0.0),
            duration_s: duration.as_secs_f64(),
            samples,
            under_sampled: samples < f.min_samples,
            p99_ms: p99,
            first_quarter_p50_ms: first,
            last_quarter_p50_ms: last,
            fails,
            met_bounds_ms,
        },
        stop,
    }
}

fn meets(r: &FrontierRung, bound: f64) -> bool {
    r.met_bounds_ms.iter().any(|b| (b - bound).abs() < 1e-9)
}

/// Whether `r` missing `bound` caps the frontier there. A miss on p99 alone by a rung
/// under its sample count does not when a fully sampled rung above it met the bound: the
/// short rung's p99 is the max of a handful of samples, the long one's is evidence.
fn caps(rungs: &[FrontierRung], r: &FrontierRung, bound: f64) -> bool {
    if meets(r, bound) {
        return false;
    }
    let weak = r.under_sampled && r.fails.is_empty();
    !(weak
        && rungs
            .iter()
            .any(|s| s.rate_per_s > r.rate_per_s && !s.under_sampled && meets(s, bound)))
}

/// For one bound: the lowest rate that missed it (see [`caps`]), and the highest rate below
/// that which met it. Rungs above the first miss that passed anyway (noise) do not raise the
/// frontier.
fn bracket(rungs: &[FrontierRung], bound: f64) -> (Option<&FrontierRung>, Option<&FrontierRung>) {
    let miss = rungs
        .iter()
        .filter(|r| caps(rungs, r, bound))
        .min_by(|a, b| a.rate_per_s.total_cmp(&b.rate_per_s));
    let hi = miss.map_or(f64::INFINITY, |r| r.rate_per_s);
    let pass = rungs
        .iter()
        .filter(|r| meets(r, bound) && r.rate_per_s < hi)
        .max_by(|a, b| a.rate_per_s.total_cmp(&b.rate_per_s));
    (pass, miss)
}

/// Three significant figures, as text (`1410`, `14.1`, `10`): rung names and rates stay
/// readable.
fn sig3(x: f64) -> String {
    if x <= 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (2.0 - x.log10().floor()).max(0.0) as usize;
    let k = 10f64.powf(x.log10().floor() - 2.0);
    let text = format!("{:.*}", decimals, (x / k).round() * k);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn round3(x: f64) -> f64 {
    sig3(x).parse().unwrap_or(x)
}

/// The next rate to try: the geometric middle of the widest bracket (relative width) still
/// wider than `resolution_percent`; None when every bracket is narrow enough.
pub fn next_bisection(
    bounds: &[f64],
    rungs: &[FrontierRung],
    resolution_percent: f64,
) -> Option<f64> {
    let limit = 1.0 + resolution_percent / 100.0;
    bounds
        .iter()
        .filter_map(|&b| match bracket(rungs, b) {
            (Some(lo), Some(hi)) => Some((lo.rate_per_s, hi.rate_per_s)),
            _ => None,
        })
        .filter(|(lo, hi)| hi / lo > limit)
        .filter_map(|(lo, hi)| {
            let mid = round3((lo * hi).sqrt());
            (mid > lo && mid < hi).then_some((hi / lo, mid))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, mid)| mid)
}

/// Rung name for a rate: `rate-2000`, `rate-14.1`.
pub fn rung_name(rate: f64) -> String {
    format!("rate-{}", sig3(rate))
}

/// Runs the search with `measure` (None: interrupted, the search ends with what it has).
pub fn search<E>(
    f: &FrontierDef,
    p: &ProfileDef,
    profile: Profile,
    mut measure: impl FnMut(&RungPlan) -> Result<Option<Judged>, E>,
) -> Result<FrontierSearch, E> {
    let mut rungs: Vec<FrontierRung> = Vec::new();
    for (i, &rate) in f.rates.iter().enumerate() {
        let plan = RungPlan {
            name: rung_name(rate),
            rate,
            duration: f.rung_duration(p, rate),
            search: RungSearch::Coarse,
            warm: i == 0,
        };
        let Some(j) = measure(&plan)? else {
            return Ok(done(f, profile, rungs));
        };
        rungs.push(j.rung);
        if j.stop {
            break;
        }
    }
    for _ in 0..f.max_bisections(profile) {
        let Some(rate) = next_bisection(&f.bounds_ms, &rungs, f.resolution_percent) else {
            break;
        };
        let plan = RungPlan {
            name: rung_name(rate),
            rate,
            duration: f.rung_duration(p, rate),
            search: RungSearch::Bisect,
            warm: true,
        };
        let Some(j) = measure(&plan)? else { break };
        rungs.push(j.rung);
    }
    Ok(done(f, profile, rungs))
}

fn done(f: &FrontierDef, profile: Profile, rungs: Vec<FrontierRung>) -> FrontierSearch {
    FrontierSearch {
        min_samples: f.min_samples,
        resolution_percent: f.resolution_percent,
        max_bisections: u64::from(f.max_bisections(profile)),
        rungs,
    }
}

/// For each bound, the highest rate met below the lowest rate missed, with the rung it
/// rests on and why the next one failed.
pub fn frontier_of(
    bounds_ms: &[f64],
    s: &FrontierSearch,
    phases: &[PhaseResult],
) -> Vec<FrontierPoint> {
    bounds_ms
        .iter()
        .map(|&bound| {
            let (pass, miss) = bracket(&s.rungs, bound);
            let phase = pass.and_then(|r| phases.iter().find(|p| p.name == r.phase));
            let mut failed_because = miss.map(|r| r.fails.clone()).unwrap_or_default();
            if miss.is_some_and(|r| r.p99_ms.is_some_and(|v| v > bound)) {
                failed_because.insert(0, RungFail::P99);
            }
            FrontierPoint {
                p99_bound_ms: bound,
                max_rate_per_s: pass.map(|r| r.rate_per_s),
                achieved_rate_per_s: phase.map(|p| p.throughput.requests_per_s),
                p99_ms: pass.and_then(|r| r.p99_ms),
                phase: pass.map(|r| r.phase.clone()),
                samples: pass.map(|r| r.samples),
                under_sampled: pass.is_some_and(|r| r.under_sampled),
                failed_rate_per_s: miss.map(|r| r.rate_per_s),
                failed_because,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::load::result::tests::sample_phase;
    use crate::suites::def::Dur;

    fn def(max_bisections: u32) -> FrontierDef {
        FrontierDef {
            rates: vec![
                10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0,
                50000.0,
            ],
            step: Dur(Duration::from_secs(10)),
            bounds_ms: vec![1.0, 5.0, 10.0, 50.0, 100.0],
            max_error_percent: 0.1,
            stop_error_percent: 5.0,
            max_in_flight: None,
            min_samples: 1000,
            max_rung: Dur(Duration::from_secs(30)),
            resolution_percent: 10.0,
            max_bisections,
            quick_max_bisections: 1,
        }
    }

    fn full() -> ProfileDef {
        ProfileDef {
            scale: 1.0,
            warmup: Dur(Duration::from_secs(5)),
            min_phase: Dur::default(),
        }
    }

    fn part(count: u64, p50: f64) -> Summary {
        Summary {
            count,
            p50,
            ..Summary::default()
        }
    }

    /// A synthetic target: p99 of 0.05 ms + rate / 4000 ms (1 ms at 3,800/s), saturating
    /// above 7,300/s (its medians climb over the rung).
    fn synthetic(f: &FrontierDef, plan: &RungPlan) -> Judged {
        let mut p = sample_phase(false);
        p.name = plan.name.clone();
        p.target_rate_per_s = Some(plan.rate);
        p.duration_s = plan.duration.as_secs_f64();
        let n = (plan.rate * p.duration_s) as u64;
        p.requests.ok = n;
        p.latency_ms.count = n;
        p.latency_ms.p99 = 0.05 + plan.rate / 4000.0;
        let q = n / 4;
        p.latency_by_due_ms = if plan.rate > 7300.0 {
            vec![part(q, 0.2), part(q, 3.0), part(q, 6.0), part(q, 9.0)]
        } else {
            vec![part(q, 0.2), part(q, 0.21), part(q, 0.19), part(q, 0.2)]
        };
        judge(f, &p, plan.search, plan.duration)
    }

    #[test]
    fn bisection_converges_on_each_bound_within_the_resolution() {
        let f = def(20);
        let s = search(&f, &full(), Profile::Full, |plan| {
            Ok::<_, ()>(Some(synthetic(&f, plan)))
        })
        .unwrap();
        // The ladder stopped at the first saturated rung (10,000/s).
        let coarse: Vec<f64> = s
            .rungs
            .iter()
            .filter(|r| r.search == RungSearch::Coarse)
            .map(|r| r.rate_per_s)
            .collect();
        assert_eq!(coarse.last(), Some(&10000.0), "{coarse:?}");
        let points = frontier_of(&f.bounds_ms, &s, &[]);
        // True frontiers: 3,800/s for 1 ms (p99), 7,300/s (saturation) for the others.
        for (pt, truth) in points.iter().zip([3800.0, 7300.0, 7300.0, 7300.0, 7300.0]) {
            let (lo, hi) = (pt.max_rate_per_s.unwrap(), pt.failed_rate_per_s.unwrap());
            assert!(lo <= truth && truth < hi, "{pt:?}");
            assert!(hi / lo <= 1.1 + 1e-9, "{pt:?}");
        }
        assert_eq!(points[0].failed_because, [RungFail::P99], "{points:?}");
        assert_eq!(
            points[1].failed_because,
            [RungFail::Saturated],
            "{points:?}"
        );
        // Bisection rungs are shared by the bounds that have the same bracket.
        let bisect = s
            .rungs
            .iter()
            .filter(|r| r.search == RungSearch::Bisect)
            .count();
        assert!(bisect <= 10, "{bisect} bisection rungs");
    }

    #[test]
    fn a_p99_miss_on_too_few_samples_does_not_cap_a_sound_pass_above_it() {
        let f = def(20);
        // 10/s for 30 s: 300 samples, under 1,000; its p99 (a max) hit 1.96 ms once.
        let s = search(&f, &full(), Profile::Full, |plan| {
            let mut j = synthetic(&f, plan);
            if plan.rate == 10.0 {
                assert!(j.rung.under_sampled, "{:?}", j.rung);
                j.rung.p99_ms = Some(1.96);
                j.rung.met_bounds_ms.retain(|b| *b > 1.96);
            }
            Ok::<_, ()>(Some(j))
        })
        .unwrap();
        let points = frontier_of(&f.bounds_ms, &s, &[]);
        let (lo, hi) = (points[0].max_rate_per_s, points[0].failed_rate_per_s);
        assert!(
            lo.is_some_and(|lo| lo <= 3800.0) && hi.is_some_and(|hi| 3800.0 < hi),
            "{points:?}"
        );
        // Without a sound pass above it, the short rung's miss stands.
        let only_low: Vec<FrontierRung> = s
            .rungs
            .iter()
            .filter(|r| r.rate_per_s <= 20.0)
            .cloned()
            .collect();
        assert!(caps(&only_low, &only_low[0], 1.0));
    }

    #[test]
    fn bisection_stops_at_its_cap_and_leaves_the_bracket_wide() {
        let f = def(2);
        let s = search(&f, &full(), Profile::Full, |plan| {
            Ok::<_, ()>(Some(synthetic(&f, plan)))
        })
        .unwrap();
        let bisect = s
            .rungs
            .iter()
            .filter(|r| r.search == RungSearch::Bisect)
            .count();
        assert_eq!(bisect, 2);
        let quick = search(&f, &full(), Profile::Quick, |plan| {
            Ok::<_, ()>(Some(synthetic(&f, plan)))
        })
        .unwrap();
        assert_eq!(quick.max_bisections, 1);
        let pts = frontier_of(&f.bounds_ms, &quick, &[]);
        let (lo, hi) = (
            pts[0].max_rate_per_s.unwrap(),
            pts[0].failed_rate_per_s.unwrap(),
        );
        assert!(lo <= 3800.0 && 3800.0 < hi && hi / lo > 1.1, "{pts:?}");
    }

    #[test]
    fn an_interrupted_search_keeps_what_it_measured() {
        let f = def(6);
        let mut n = 0;
        let s = search(&f, &full(), Profile::Full, |plan| {
            n += 1;
            Ok::<_, ()>((n <= 3).then(|| synthetic(&f, plan)))
        })
        .unwrap();
        assert_eq!(s.rungs.len(), 3);
        let pts = frontier_of(&f.bounds_ms, &s, &[]);
        assert_eq!(pts[0].max_rate_per_s, Some(50.0));
        assert_eq!(pts[0].failed_rate_per_s, None, "the top of what ran");
    }

    #[test]
    fn saturation_flags_a_rising_series_not_a_flat_noisy_one() {
        // A queue building: medians climb quarter by quarter.
        let rising = [
            part(500, 0.3),
            part(500, 2.0),
            part(500, 4.1),
            part(500, 6.0),
        ];
        assert_eq!(saturation(&rising), (Some(0.3), Some(6.0), true));
        // Slow rise on a 20 ms target: 20 -> 45 ms.
        let slow = [
            part(50, 20.0),
            part(50, 28.0),
            part(50, 37.0),
            part(50, 45.0),
        ];
        assert!(saturation(&slow).2);
        // Flat with noise, sub-millisecond: the median doubles but by 0.15 ms only.
        let noisy = [
            part(500, 0.15),
            part(500, 0.4),
            part(500, 0.12),
            part(500, 0.3),
        ];
        assert!(!saturation(&noisy).2);
        // Flat with noise at 20 ms.
        let flat = [
            part(80, 20.0),
            part(80, 26.0),
            part(80, 19.0),
            part(80, 24.0),
        ];
        assert!(!saturation(&flat).2);
        // A stall in the last quarter alone is not a queue.
        let stall = [
            part(500, 1.0),
            part(500, 1.1),
            part(500, 0.9),
            part(500, 9.0),
        ];
        assert!(!saturation(&stall).2);
        // Falling (connections opening at the start) is not a queue either.
        let falling = [
            part(500, 5.0),
            part(500, 1.0),
            part(500, 0.5),
            part(500, 0.5),
        ];
        assert!(!saturation(&falling).2);
        // Too few answers in a quarter: not judged.
        let thin = [part(5, 0.3), part(5, 2.0), part(5, 4.1), part(5, 6.0)];
        assert_eq!(saturation(&thin), (None, None, false));
        assert_eq!(saturation(&[]), (None, None, false));
    }

    #[test]
    fn a_saturated_rung_fails_every_bound_and_stops_the_ladder() {
        let f = def(6);
        let mut p = sample_phase(false);
        p.requests.ok = 2000;
        p.latency_ms.count = 2000;
        p.latency_ms.p99 = 0.8;
        p.latency_by_due_ms = vec![
            part(500, 0.1),
            part(500, 0.3),
            part(500, 0.1),
            part(500, 0.2),
        ];
        let j = judge(&f, &p, RungSearch::Coarse, Duration::from_secs(1));
        assert!(!j.stop && j.rung.fails.is_empty(), "{j:?}");
        assert_eq!(j.rung.met_bounds_ms, f.bounds_ms);
        p.latency_by_due_ms[2].p50 = 0.5;
        p.latency_by_due_ms[3].p50 = 0.7;
        let j = judge(&f, &p, RungSearch::Coarse, Duration::from_secs(1));
        assert!(j.stop, "{j:?}");
        assert_eq!(j.rung.fails, [RungFail::Saturated]);
        assert!(j.rung.met_bounds_ms.is_empty());
        assert!(!j.rung.under_sampled);
        p.latency_ms.count = 999;
        assert!(
            judge(&f, &p, RungSearch::Coarse, Duration::ZERO)
                .rung
                .under_sampled
        );
    }

    #[test]
    fn rungs_last_long_enough_for_the_samples_within_the_cap() {
        let f = def(6);
        let ms = |rate| f.rung_duration(&full(), rate).as_millis();
        // 1,000 samples: 10 s step from 100/s up, longer below, capped at 30 s.
        assert_eq!(ms(50000.0), 10_000);
        assert_eq!(ms(100.0), 10_000);
        assert_eq!(ms(70.0), 14_286);
        assert_eq!(ms(50.0), 20_000);
        assert_eq!(ms(10.0), 30_000);
        let quick = ProfileDef {
            scale: 0.0667,
            warmup: Dur(Duration::from_secs(1)),
            min_phase: Dur(Duration::from_secs(1)),
        };
        let qs = |rate| f.rung_duration(&quick, rate).as_millis();
        assert_eq!(qs(5000.0), 1000);
        assert_eq!(qs(1000.0), 1000);
        assert_eq!(qs(700.0), 1429);
        assert_eq!(qs(10.0), 2001, "30 s x 0.0667");
    }

    #[test]
    fn rung_names_are_short() {
        assert_eq!(rung_name(1414.2), "rate-1410");
        assert_eq!(rung_name(14.142), "rate-14.1");
        assert_eq!(rung_name(2000.0), "rate-2000");
        assert_eq!(rung_name(10.0), "rate-10");
        assert_eq!(rung_name(1.5), "rate-1.5");
    }
}
