//! Resampling statistics for the reports' intervals: percentile bootstrap (independent
//! samples, or moving blocks of a per-second series), coefficient of variation and a
//! one-sided permutation test. Every random draw comes from a fixed seed, so rendering the
//! same run twice gives the same intervals.

/// Confidence level of every interval the reports show.
pub const LEVEL: f64 = 0.95;
/// Bootstrap resamples per interval: enough for stable 2.5/97.5 % quantiles, cheap enough
/// for a 10-minute series (600 windows) per figure.
pub const REPLICATES: usize = 2000;
/// The fixed seed of every resampling.
pub const SEED: u64 = 0x6e01_5e5e_ed12;

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// The arithmetic mean; NaN for no values.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The median, sorting `xs` in place (the bootstrap reuses one buffer per resample).
pub fn median_in_place(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    quantile_sorted(xs, 0.5)
}

/// The median of a copy of `xs`; NaN for no values.
pub fn median(xs: &[f64]) -> f64 {
    median_in_place(&mut xs.to_vec())
}

/// The `q` quantile of sorted values, interpolated between neighbours (Hyndman–Fan type 7,
/// the default of R and numpy).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let h = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let i = h.floor() as usize;
            let j = (i + 1).min(n - 1);
            sorted[i] + (h - i as f64) * (sorted[j] - sorted[i])
        }
    }
}

/// Sample standard deviation (n - 1); `None` under two values.
pub fn std_dev(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (xs.len() - 1) as f64).sqrt())
}

/// Coefficient of variation: standard deviation over the absolute mean; `None` under two
/// values or with a zero mean.
pub fn cv(xs: &[f64]) -> Option<f64> {
    let m = mean(xs).abs();
    std_dev(xs).filter(|_| m > 0.0).map(|s| s / m)
}

/// Block length of the moving-block bootstrap for `n` windows: √n, rounded. Longer than
/// the n^(1/3) that is optimal for a variance under short-range dependence, on purpose:
/// what makes runs differ here is slow drift (GC, caches, neighbours), which longer
/// blocks keep together, so the interval errs on the wide side.
pub fn block_length(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize).clamp(1, n.max(1))
}

/// `replicates` values of `stat` over moving-block resamples of `xs`: each resample joins
/// blocks of `block` consecutive values starting at uniformly drawn positions, cut to
/// `xs.len()`. A block of 1 is the ordinary bootstrap of independent samples.
pub fn block_bootstrap<S>(
    xs: &[f64],
    block: usize,
    replicates: usize,
    seed: u64,
    stat: S,
) -> Vec<f64>
where
    S: Fn(&mut [f64]) -> f64,
{
    let n = xs.len();
    if n == 0 {
        return Vec::new();
    }
    let block = block.clamp(1, n);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut buf = Vec::with_capacity(n + block);
    (0..replicates)
        .map(|_| {
            buf.clear();
            while buf.len() < n {
                let start = rng.usize(0..=n - block);
                buf.extend_from_slice(&xs[start..start + block]);
            }
            buf.truncate(n);
            stat(&mut buf)
        })
        .collect()
}

/// A stratum of this many windows or more is detrended by a line; a shorter one by its
/// mean (a line through two or three points leaves nearly nothing to resample).
const LINE_FROM: usize = 4;

/// The trend of one stratum at each of its windows, and how many parameters it took.
fn trend(ys: &[f64]) -> (Vec<f64>, usize) {
    let n = ys.len();
    let m = mean(ys);
    if n < LINE_FROM {
        return (vec![m; n], 1);
    }
    let mid = (n - 1) as f64 / 2.0;
    let (sxy, sxx) = ys
        .iter()
        .enumerate()
        .fold((0.0, 0.0), |(sxy, sxx), (i, y)| {
            let dx = i as f64 - mid;
            (sxy + dx * (y - m), sxx + dx * dx)
        });
    let slope = sxy / sxx;
    ((0..n).map(|i| m + slope * (i as f64 - mid)).collect(), 2)
}

/// Windows left to resample once each stratum's trend is taken out (windows less the
/// trends' parameters).
pub fn residual_dof(strata: &[Vec<f64>]) -> usize {
    strata
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.len() - trend(s).1)
        .sum()
}

/// `replicates` values of `stat` over a series whose level changes by design (a ramp's
/// stages): each stratum keeps its trend (a line, or its mean when short) and has its
/// residuals resampled in moving blocks of √n, inflated by √(n / (n − parameters)) for
/// what the fit absorbed. The replicates carry the noise around the ramp, not the ramp;
/// `stat` runs on the strata joined.
pub fn stratified_bootstrap<S>(
    strata: &[Vec<f64>],
    replicates: usize,
    seed: u64,
    stat: S,
) -> Vec<f64>
where
    S: Fn(&mut [f64]) -> f64,
{
    let parts: Vec<(Vec<f64>, Vec<f64>)> = strata
        .iter()
        .filter(|s| s.len() > 1)
        .map(|s| {
            let (fit, k) = trend(s);
            let inflate = (s.len() as f64 / (s.len() - k).max(1) as f64).sqrt();
            let res = s.iter().zip(&fit).map(|(y, f)| (y - f) * inflate).collect();
            (fit, res)
        })
        .collect();
    let fixed: Vec<f64> = strata
        .iter()
        .filter(|s| s.len() == 1)
        .flatten()
        .copied()
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut buf = Vec::new();
    (0..replicates)
        .map(|_| {
            buf.clear();
            buf.extend_from_slice(&fixed);
            for (fit, res) in &parts {
                let (n, block) = (res.len(), block_length(res.len()));
                let mut drawn = 0;
                while drawn < n {
                    let start = rng.usize(0..=n - block);
                    for r in &res[start..start + block.min(n - drawn)] {
                        buf.push(fit[drawn] + r);
                        drawn += 1;
                    }
                }
            }
            stat(&mut buf)
        })
        .collect()
}

/// The percentile interval at [`LEVEL`] of bootstrap replicates (sorted in place).
pub fn percentile_interval(replicates: &mut [f64]) -> Interval {
    replicates.sort_by(f64::total_cmp);
    let tail = (1.0 - LEVEL) / 2.0;
    Interval {
        lo: quantile_sorted(replicates, tail),
        hi: quantile_sorted(replicates, 1.0 - tail),
    }
}

/// Percentile bootstrap interval of `stat` over independent samples.
pub fn bootstrap_interval<S>(xs: &[f64], stat: S) -> Option<Interval>
where
    S: Fn(&mut [f64]) -> f64,
{
    if xs.is_empty() {
        return None;
    }
    let mut reps = block_bootstrap(xs, 1, REPLICATES, SEED, stat);
    Some(percentile_interval(&mut reps))
}

/// Which way a one-sided test looks: is `b`'s statistic greater, or less, than `a`'s?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    Greater,
    Less,
}

/// Largest pooled sample enumerated exactly (2^16 subsets); beyond it, seeded shuffles.
const EXACT_MAX: usize = 16;
const SHUFFLES: usize = 9999;

/// One-sided permutation test of `stat(b) - stat(a)` in the direction `tail`: the share of
/// reassignments of the pooled values to groups of the same sizes whose difference is at
/// least as extreme as the observed one (the observed one counts). Exact up to
/// [`EXACT_MAX`] values: with 3 against 3 the smallest possible p is 1/20 = 0.05.
pub fn permutation_p<S>(a: &[f64], b: &[f64], tail: Tail, stat: S) -> f64
where
    S: Fn(&mut [f64]) -> f64,
{
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    let diff = |ga: &mut Vec<f64>, gb: &mut Vec<f64>| {
        let d = stat(gb) - stat(ga);
        match tail {
            Tail::Greater => d,
            Tail::Less => -d,
        }
    };
    let observed = diff(&mut a.to_vec(), &mut b.to_vec());
    // A tolerance so that ties in floating point count as "as extreme".
    let extreme = |d: f64| d >= observed - 1e-12 * observed.abs().max(1.0);
    let (mut ga, mut gb) = (Vec::new(), Vec::new());
    let mut split = |in_a: &dyn Fn(usize) -> bool| {
        ga.clear();
        gb.clear();
        for (i, &x) in pooled.iter().enumerate() {
            if in_a(i) {
                ga.push(x)
            } else {
                gb.push(x)
            }
        }
        extreme(diff(&mut ga, &mut gb))
    };
    let n = pooled.len();
    if n <= EXACT_MAX {
        let (mut hits, mut total) = (0usize, 0usize);
        for mask in 0u32..(1 << n) {
            if mask.count_ones() as usize == a.len() {
                total += 1;
                hits += usize::from(split(&|i| mask & (1 << i) != 0));
            }
        }
        return hits as f64 / total as f64;
    }
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut order: Vec<usize> = (0..n).collect();
    let mut hits = 0usize;
    for _ in 0..SHUFFLES {
        rng.shuffle(&mut order);
        let chosen: Vec<bool> = {
            let mut c = vec![false; n];
            order[..a.len()].iter().for_each(|&i| c[i] = true);
            c
        };
        hits += usize::from(split(&|i| chosen[i]));
    }
    (hits + 1) as f64 / (SHUFFLES + 1) as f64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A standard normal draw (Box–Muller).
    fn normal(rng: &mut fastrand::Rng) -> f64 {
        let u = 1.0 - rng.f64();
        let v = rng.f64();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    #[test]
    fn quantiles_median_and_cv() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(quantile_sorted(&[0.0, 10.0], 0.25), 2.5);
        // mean 2.5, sample variance 5/3.
        let cv = cv(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((cv - (5.0f64 / 3.0).sqrt() / 2.5).abs() < 1e-12, "{cv}");
        assert_eq!(super::cv(&[5.0]), None);
        assert_eq!(super::cv(&[0.0, 0.0]), None);
        assert_eq!(block_length(600), 24);
        assert_eq!(block_length(10), 3);
        assert_eq!(block_length(1), 1);
    }

    #[test]
    fn a_constant_series_has_a_zero_width_interval() {
        let xs = vec![42.0; 30];
        let i = bootstrap_interval(&xs, median_in_place).unwrap();
        assert_eq!((i.lo, i.hi), (42.0, 42.0));
        let mut reps = block_bootstrap(&xs, 5, 200, SEED, |x| mean(x));
        let i = percentile_interval(&mut reps);
        assert!((i.hi - i.lo).abs() < 1e-12 && (i.lo - 42.0).abs() < 1e-12);
        assert_eq!(bootstrap_interval(&[], median_in_place), None);
    }

    #[test]
    fn the_same_seed_gives_the_same_interval() {
        let xs: Vec<f64> = (0..50).map(|i| ((i * 37) % 11) as f64).collect();
        let a = bootstrap_interval(&xs, median_in_place).unwrap();
        let b = bootstrap_interval(&xs, median_in_place).unwrap();
        assert_eq!(a, b);
        assert!(a.lo < a.hi);
    }

    /// The 95 % interval of the median of N(10, 2) samples covers 10 in about 95 % of
    /// trials (the percentile bootstrap of a median runs slightly conservative at n = 41).
    #[test]
    fn the_median_interval_covers_mu_at_about_its_level() {
        let mut rng = fastrand::Rng::with_seed(7);
        let trials = 200;
        let covered = (0..trials)
            .filter(|t| {
                let xs: Vec<f64> = (0..41).map(|_| 10.0 + 2.0 * normal(&mut rng)).collect();
                let mut reps = block_bootstrap(&xs, 1, 500, SEED + t, median_in_place);
                let i = percentile_interval(&mut reps);
                i.lo <= 10.0 && 10.0 <= i.hi
            })
            .count();
        let share = covered as f64 / trials as f64;
        assert!((0.89..=0.99).contains(&share), "coverage {share}");
    }

    /// On an autocorrelated series (AR(1), φ = 0.8) the block bootstrap keeps the mean's
    /// coverage near its level where the independent bootstrap falls well short.
    #[test]
    fn blocks_keep_coverage_on_an_autocorrelated_series() {
        let mut rng = fastrand::Rng::with_seed(11);
        let (trials, n) = (100, 400);
        let mut cover = [0usize; 2];
        for t in 0..trials {
            let mut x = 0.0;
            let xs: Vec<f64> = (0..n)
                .map(|_| {
                    x = 0.8 * x + normal(&mut rng);
                    x
                })
                .collect();
            for (k, block) in [block_length(n), 1].into_iter().enumerate() {
                let mut reps = block_bootstrap(&xs, block, 400, SEED + t, |x| mean(x));
                let i = percentile_interval(&mut reps);
                cover[k] += usize::from(i.lo <= 0.0 && 0.0 <= i.hi);
            }
        }
        let (blocks, iid) = (cover[0] as f64 / 100.0, cover[1] as f64 / 100.0);
        assert!((0.85..=0.99).contains(&blocks), "blocks {blocks}");
        assert!(iid < 0.75, "independent {iid}");
    }

    #[test]
    fn permutation_test_is_exact_for_small_groups() {
        let a = [100.0, 101.0, 102.0];
        let b = [90.0, 91.0, 92.0];
        // Complete separation of 3 against 3: 1 of C(6,3) = 20 splits.
        let p = permutation_p(&a, &b, Tail::Less, |x| mean(x));
        assert!((p - 0.05).abs() < 1e-12, "{p}");
        assert_eq!(permutation_p(&a, &b, Tail::Greater, |x| mean(x)), 1.0);
        // The median ties between splits, so it cannot reach 1/20 here.
        assert!(permutation_p(&a, &b, Tail::Less, median_in_place) > 0.05);
        let a4 = [100.0, 101.0, 102.0, 103.0];
        let b4 = [90.0, 91.0, 92.0, 93.0];
        let p = permutation_p(&a4, &b4, Tail::Less, |x| mean(x));
        assert!((p - 1.0 / 70.0).abs() < 1e-12, "{p}");
        // Interleaved groups: nothing to see.
        let p = permutation_p(&[1.0, 3.0, 5.0], &[2.0, 4.0, 6.0], Tail::Less, |x| mean(x));
        assert!(p > 0.5, "{p}");
    }

    #[test]
    fn permutation_test_samples_large_groups() {
        let a: Vec<f64> = (0..20).map(|i| 100.0 + i as f64).collect();
        let shifted: Vec<f64> = a.iter().map(|x| x - 15.0).collect();
        let p = permutation_p(&a, &shifted, Tail::Less, |x| mean(x));
        assert!(p < 0.01, "{p}");
        let p = permutation_p(&a, &a, Tail::Less, |x| mean(x));
        assert!(p > 0.3, "{p}");
    }

    #[test]
    fn a_stratified_bootstrap_keeps_the_ramp_and_resamples_the_noise_around_it() {
        // Stages climbing 100 → 400 → 700, each a line, no noise: nothing to resample.
        let clean: Vec<Vec<f64>> = (0..3)
            .map(|k| {
                (0..10)
                    .map(|i| 100.0 + 300.0 * k as f64 + 10.0 * i as f64)
                    .collect()
            })
            .collect();
        let reps = stratified_bootstrap(&clean, 200, SEED, |x| mean(x));
        let own = mean(&clean.concat());
        assert!(reps.iter().all(|r| (r - own).abs() < 1e-9), "{reps:?}");
        assert_eq!(residual_dof(&clean), 3 * (10 - 2));
        // The same ramp with noise of sd 20: the mean's interval is about ±2·20/√30 wide,
        // where resampling the joined series would mix the stages (±~90).
        let mut rng = fastrand::Rng::with_seed(9);
        let noisy: Vec<Vec<f64>> = clean
            .iter()
            .map(|s| s.iter().map(|y| y + 20.0 * normal(&mut rng)).collect())
            .collect();
        let own = mean(&noisy.concat());
        let mut reps = stratified_bootstrap(&noisy, REPLICATES, SEED, |x| mean(x));
        let i = percentile_interval(&mut reps);
        assert!(i.lo < own && own < i.hi, "{i:?} {own}");
        assert!(i.hi - i.lo > 5.0 && i.hi - i.lo < 30.0, "{i:?}");
        let mut mixed = block_bootstrap(&noisy.concat(), 5, REPLICATES, SEED, |x| mean(x));
        let m = percentile_interval(&mut mixed);
        assert!(m.hi - m.lo > 3.0 * (i.hi - i.lo), "{m:?} against {i:?}");
        // Short strata are detrended by their mean: one parameter each.
        assert_eq!(residual_dof(&[vec![1.0, 2.0], vec![3.0; 3], vec![]]), 1 + 2);
    }
}
