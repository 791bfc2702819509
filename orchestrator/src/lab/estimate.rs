//! How long `orchestrator run` will take, printed before it starts so that nobody starts a
//! 90-minute `full` run by mistake: every chosen suite's scheduled time (phase durations ×
//! the profile's scale, plus warm-ups; see [`SuiteDef::estimated_duration`]) for each
//! target, plus the time to bring the stack and each target's container up. Image builds
//! are not counted (they happen once; `orchestrator images`).

use std::time::Duration;

use crate::lab::run::DIRECT;
use crate::report::format::duration as human;
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
    /// Every chosen suite as many times as it repeats, at the run's profile.
    pub suites_per_target: Duration,
    /// The stack and every target's container start, once per round of repeats.
    pub setup: Duration,
    /// Rounds: the most repeats of any chosen suite (each round restarts every target).
    pub rounds: u32,
    pub total: Duration,
    pub targets: usize,
}

/// Estimates a run of `suites` against each of `targets` in turn at `profile`.
pub fn estimate(suites: &[SuiteDef], targets: &[String], profile: Profile) -> Estimate {
    let suites_per_target: Duration = suites
        .iter()
        .map(|s| s.estimated_duration(profile) * s.repeats)
        .sum();
    let rounds = crate::suites::def::rounds(suites);
    let starts = targets.iter().map(|t| target_setup(t)).sum::<Duration>() * rounds;
    let setup = STACK_SETUP + starts;
    Estimate {
        suites_per_target,
        setup,
        rounds,
        total: suites_per_target * targets.len() as u32 + setup,
        targets: targets.len(),
    }
}

impl Estimate {
    /// The line printed before a run starts.
    pub fn line(&self, profile: Profile) -> String {
        format!(
            "estimate: about {} ({} profile: {} of suites per target, repeats included, × {} target(s), plus about {} of container starts over {} round(s); image builds not counted)",
            human(self.total),
            profile.name(),
            human(self.suites_per_target),
            self.targets,
            human(self.setup),
            self.rounds
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

    /// The figures README.md gives: quick about 4 min of suites per target (baseline,
    /// overhead, the ramp and frontier three times) plus about 2 min of `faults`; full about 51 min plus 5 min.
    #[test]
    fn matches_the_readme_per_target() {
        let (suites, faults) = split(Profile::Quick);
        assert_eq!(suites.as_secs(), 241, "{suites:?}");
        assert!((100..=130).contains(&faults.as_secs()), "{faults:?}");
        let (suites, faults) = split(Profile::Full);
        assert_eq!(suites.as_secs() / 60, 51, "{suites:?}");
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
        // Three rounds (baseline and overhead repeat three times): every target starts thrice.
        assert_eq!(e.rounds, 3);
        assert_eq!(e.setup, Duration::from_secs(20 + 3 * (5 + 5 + 40)));
        assert_eq!(e.total, e.suites_per_target * 4 + e.setup);
        let line = e.line(Profile::Quick);
        // README.md: "quick against the four default targets: about 26 min, full: about 3 h 50 min".
        assert!(line.starts_with("estimate: about 26 min"), "{line}");
        assert!(line.contains("4 target(s)"), "{line}");
        let full = estimate(&f.suites, &targets, Profile::Full).line(Profile::Full);
        assert!(full.starts_with("estimate: about 3 h 47 min"), "{full}");
    }
}
