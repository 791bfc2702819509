//! How long `orchestrator run` will take, printed before it starts so that nobody starts a
//! 90-minute `full` run by mistake: every chosen suite's scheduled time (phase durations ×
//! the profile's scale, plus warm-ups; see [`SuiteDef::estimated_duration`]) for each
//! target, plus the time to bring the stack and each target's container up. Image builds
//! are not counted (they happen once; `orchestrator images`).

use std::time::Duration;

use crate::lab::run::DIRECT;
use crate::suites::{Profile, SuiteDef};

/// Bringing up the mocks, Prometheus and the sink, and the teardown at the end.
const STACK_SETUP: Duration = Duration::from_secs(20);
/// A target container's start until it answers its readiness URL. LiteLLM (a Python
/// proxy) takes tens of seconds; the Rust gateway about one; `direct` is the mock, already up.
fn target_setup(target: &str) -> Duration {
    match target {
        DIRECT => Duration::ZERO,
        "litellm" => Duration::from_secs(40),
        _ => Duration::from_secs(5),
    }
}

/// The estimate of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Every chosen suite once, at the run's profile.
    pub suites_per_target: Duration,
    /// The stack and every target's container start.
    pub setup: Duration,
    pub total: Duration,
    pub targets: usize,
}

/// Estimates a run of `suites` against each of `targets` in turn at `profile`.
pub fn estimate(suites: &[SuiteDef], targets: &[String], profile: Profile) -> Estimate {
    let suites_per_target: Duration = suites.iter().map(|s| s.estimated_duration(profile)).sum();
    let setup = STACK_SETUP + targets.iter().map(|t| target_setup(t)).sum::<Duration>();
    Estimate {
        suites_per_target,
        setup,
        total: suites_per_target * targets.len() as u32 + setup,
        targets: targets.len(),
    }
}

/// `1 h 5 min`, `12 min 30 s`, `45 s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

impl Estimate {
    /// The line printed before a run starts.
    pub fn line(&self, profile: Profile) -> String {
        format!(
            "estimate: about {} ({} profile: {} of suites per target × {} target(s), plus about {} of container starts; image builds not counted)",
            human(self.total),
            profile.name(),
            human(self.suites_per_target),
            self.targets,
            human(self.setup)
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::suites::SuitesFile;

    fn split(profile: Profile) -> (Duration, Duration) {
        let f = SuitesFile::builtin().unwrap();
        let (faults, rest): (Vec<SuiteDef>, Vec<SuiteDef>) =
            f.suites.into_iter().partition(|s| s.name == "faults");
        let one = |s: &[SuiteDef]| estimate(s, &["gateway".into()], profile).suites_per_target;
        (one(&rest), one(&faults))
    }

    /// The figures README.md gives: quick about 107 s of suites per target plus about
    /// 2 min of `faults`; full about 23 min plus 5 min.
    #[test]
    fn matches_the_readme_per_target() {
        let (suites, faults) = split(Profile::Quick);
        assert_eq!(suites.as_secs(), 107, "{suites:?}");
        assert!((100..=130).contains(&faults.as_secs()), "{faults:?}");
        let (suites, faults) = split(Profile::Full);
        assert_eq!(suites.as_secs() / 60, 23, "{suites:?}");
        assert!((270..=300).contains(&faults.as_secs()), "{faults:?}");
    }

    #[test]
    fn adds_setup_per_target_and_scales_with_targets() {
        let f = SuitesFile::builtin().unwrap();
        let targets: Vec<String> = crate::lab::run::DEFAULT_TARGETS
            .split(',')
            .map(String::from)
            .collect();
        let e = estimate(&f.suites, &targets, Profile::Quick);
        assert_eq!(e.setup, Duration::from_secs(20 + 5 + 5 + 40));
        assert_eq!(e.total, e.suites_per_target * 4 + e.setup);
        let line = e.line(Profile::Quick);
        // README.md: "quick against the four default targets: about 15 min, full: about 1 h 55 min".
        assert!(line.starts_with("estimate: about 15 min"), "{line}");
        assert!(line.contains("4 target(s)"), "{line}");
        let full = estimate(&f.suites, &targets, Profile::Full).line(Profile::Full);
        assert!(full.starts_with("estimate: about 1 h 55 min"), "{full}");
        assert_eq!(human(Duration::from_secs(750)), "12 min 30 s");
        assert_eq!(human(Duration::from_secs(3900)), "1 h 5 min");
        assert_eq!(human(Duration::from_secs(45)), "45 s");
    }
}
