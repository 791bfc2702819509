//! The cpuset plan: which cores the measured target, the mock, the load generator and the
//! monitoring services get, from the host's core count unless `.env.benchmark` says
//! otherwise. The target must not share cores with the load generator or the mock, or the
//! numbers measure the contention instead of the target.

use std::collections::BTreeSet;

/// Cores for each part of the lab, in docker `--cpuset-cpus` syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpusetPlan {
    pub target: String,
    pub mock: String,
    pub generator: String,
    pub monitoring: String,
}

/// Env variables that override each part of the plan.
pub const VAR_TARGET: &str = "LAB_CPUSET_TARGET";
pub const VAR_MOCK: &str = "LAB_CPUSET_MOCK";
pub const VAR_GENERATOR: &str = "LAB_CPUSET_GENERATOR";
pub const VAR_MONITORING: &str = "LAB_CPUSET_MONITORING";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CpusetError {
    #[error("{var}: invalid cpuset `{value}` (examples: `1`, `2-5`, `0,2`)")]
    Syntax { var: String, value: String },
    #[error("{var}: cpuset `{value}` names core {core}, but this host has {cores} cores (0-{last})", last = cores - 1)]
    BeyondHost {
        var: String,
        value: String,
        core: usize,
        cores: usize,
    },
}

fn range(a: usize, b: usize) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

impl CpusetPlan {
    /// The default plan for a host with `cores` cores.
    ///
    /// - 1 core: everything on core 0 (numbers are then only indicative).
    /// - 2 cores: the target on core 1, everything else on core 0.
    /// - 3 to 7 cores: mock and monitoring on core 0, the target on the upper half of the
    ///   rest, the load generator on the lower half (it must not be the bottleneck).
    /// - 8 or more: monitoring on 0, the mock on 1, the target on 2-5 (4 cores), the
    ///   load generator on the rest.
    pub fn for_cores(cores: usize) -> Self {
        match cores {
            0 | 1 => Self {
                target: "0".into(),
                mock: "0".into(),
                generator: "0".into(),
                monitoring: "0".into(),
            },
            2 => Self {
                target: "1".into(),
                mock: "0".into(),
                generator: "0".into(),
                monitoring: "0".into(),
            },
            3..=7 => {
                let rest = cores - 1;
                let target_n = (rest / 2).max(1);
                let gen_last = cores - 1 - target_n;
                Self {
                    target: range(gen_last + 1, cores - 1),
                    mock: "0".into(),
                    generator: range(1, gen_last),
                    monitoring: "0".into(),
                }
            }
            _ => Self {
                target: "2-5".into(),
                mock: "1".into(),
                generator: range(6, cores - 1),
                monitoring: "0".into(),
            },
        }
    }

    /// The plan for `cores`, with each part replaced by `lookup(var)` when that gives a
    /// non-empty value; every cpuset is checked against the host.
    pub fn resolve(
        cores: usize,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CpusetError> {
        let mut plan = Self::for_cores(cores);
        for (var, slot) in [
            (VAR_TARGET, &mut plan.target),
            (VAR_MOCK, &mut plan.mock),
            (VAR_GENERATOR, &mut plan.generator),
            (VAR_MONITORING, &mut plan.monitoring),
        ] {
            if let Some(v) = lookup(var).filter(|v| !v.trim().is_empty()) {
                *slot = v.trim().to_string();
            }
            validate(var, slot, cores)?;
        }
        Ok(plan)
    }

    /// The (variable, value) pairs to feed to compose interpolation.
    pub fn vars(&self) -> [(&'static str, String); 4] {
        [
            (VAR_TARGET, self.target.clone()),
            (VAR_MOCK, self.mock.clone()),
            (VAR_GENERATOR, self.generator.clone()),
            (VAR_MONITORING, self.monitoring.clone()),
        ]
    }
}

/// Parses a cpuset (`0`, `1-3`, `0,2-3`) into its cores.
pub fn parse_cpuset(s: &str) -> Option<BTreeSet<usize>> {
    let mut set = BTreeSet::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let a: usize = a.trim().parse().ok()?;
            let b: usize = b.trim().parse().ok()?;
            if b < a {
                return None;
            }
            set.extend(a..=b);
        } else {
            set.insert(part.parse().ok()?);
        }
    }
    (!set.is_empty()).then_some(set)
}

/// Checks that `value` is a cpuset of this host's cores.
pub fn validate(var: &str, value: &str, cores: usize) -> Result<BTreeSet<usize>, CpusetError> {
    let set = parse_cpuset(value).ok_or_else(|| CpusetError::Syntax {
        var: var.into(),
        value: value.into(),
    })?;
    if let Some(&core) = set.iter().find(|&&c| c >= cores.max(1)) {
        return Err(CpusetError::BeyondHost {
            var: var.into(),
            value: value.into(),
            core,
            cores: cores.max(1),
        });
    }
    Ok(set)
}

/// Number of cores in a cpuset (0 when it does not parse).
pub fn count(cpuset: &str) -> usize {
    parse_cpuset(cpuset).map_or(0, |s| s.len())
}

/// Cores of this host the process may run on.
pub fn host_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins the calling process (all its future threads) to `cpuset`.
#[allow(unsafe_code)]
pub fn pin_self(cpuset: &str) -> std::io::Result<()> {
    let cores = parse_cpuset(cpuset).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid cpuset `{cpuset}`"),
        )
    })?;
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it, and
    // sched_setaffinity reads it for the given size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for c in cores {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn disjoint(a: &str, b: &str) -> bool {
        parse_cpuset(a)
            .unwrap()
            .is_disjoint(&parse_cpuset(b).unwrap())
    }

    #[test]
    fn two_cores() {
        let p = CpusetPlan::for_cores(2);
        assert_eq!(p.target, "1");
        assert_eq!(p.mock, "0");
        assert_eq!(p.generator, "0");
        assert_eq!(p.monitoring, "0");
    }

    #[test]
    fn eight_and_more_give_the_target_four_cores_of_its_own() {
        for cores in [8, 12, 64] {
            let p = CpusetPlan::for_cores(cores);
            assert_eq!(count(&p.target), 4);
            assert!(disjoint(&p.target, &p.mock));
            assert!(disjoint(&p.target, &p.generator));
            assert!(disjoint(&p.generator, &p.mock));
            assert!(validate("g", &p.generator, cores).is_ok());
        }
        assert_eq!(CpusetPlan::for_cores(8).generator, "6-7");
    }

    #[test]
    fn in_between_the_target_never_shares() {
        for cores in 3..8 {
            let p = CpusetPlan::for_cores(cores);
            assert!(disjoint(&p.target, &p.mock), "{cores}: {p:?}");
            assert!(disjoint(&p.target, &p.generator), "{cores}: {p:?}");
            assert!(count(&p.generator) >= count(&p.target), "{cores}: {p:?}");
            for s in [&p.target, &p.mock, &p.generator, &p.monitoring] {
                validate("x", s, cores).unwrap();
            }
        }
        assert_eq!(CpusetPlan::for_cores(4).target, "3");
        assert_eq!(CpusetPlan::for_cores(4).generator, "1-2");
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let p = CpusetPlan::resolve(4, |v| (v == VAR_TARGET).then(|| "2-3".to_string())).unwrap();
        assert_eq!(p.target, "2-3");
        let empty = CpusetPlan::resolve(2, |_| Some(String::new())).unwrap();
        assert_eq!(empty, CpusetPlan::for_cores(2));
        let err =
            CpusetPlan::resolve(2, |v| (v == VAR_TARGET).then(|| "1-3".to_string())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "LAB_CPUSET_TARGET: cpuset `1-3` names core 2, but this host has 2 cores (0-1)"
        );
        let err =
            CpusetPlan::resolve(2, |v| (v == VAR_MOCK).then(|| "one".to_string())).unwrap_err();
        assert!(err.to_string().contains("LAB_CPUSET_MOCK: invalid cpuset"));
    }

    #[test]
    fn cpuset_syntax() {
        assert_eq!(parse_cpuset("0,2-3").unwrap().len(), 3);
        assert!(parse_cpuset("3-1").is_none());
        assert!(parse_cpuset("").is_none());
        assert_eq!(count("4-7"), 4);
    }
}
