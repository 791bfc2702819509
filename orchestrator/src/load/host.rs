//! The machine's own CPU accounting over a phase (`/proc/stat`): how busy all its cores
//! were, and how much time the hypervisor took from them (steal). A latency measured while
//! a VM's neighbours took its cores is the neighbours' figure as much as the target's; the
//! lab says so with a `host_steal` warning rather than leaving it to be guessed.

use serde::{Deserialize, Serialize};

/// Steal over this share of the phase's CPU time raises a `host_steal` warning.
pub const STEAL_WARN_PERCENT: f64 = 2.0;

/// The fewest ticks (1/100 s of one core each) a share is given for: 1 % resolution.
pub const MIN_TICKS: u64 = 100;

/// Cumulative CPU time of all cores, in ticks (the `cpu` line of `/proc/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTicks {
    busy: u64,
    idle: u64,
    steal: u64,
}

impl CpuTicks {
    /// The machine's counters now; `None` where `/proc/stat` is not there or not readable.
    pub fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the first (`cpu `) line: user nice system idle iowait irq softirq steal ...
    /// (guest time is already counted in user).
    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        Some(Self {
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            idle: at(3) + at(4),
            steal: at(7),
        })
    }

    /// The share of the time from `self` to `later`; `None` under [`MIN_TICKS`], too
    /// coarse to say (one tick of a 50 ms phase on 2 cores is 10 %).
    pub fn until(&self, later: &CpuTicks) -> Option<HostCpu> {
        let busy = later.busy.saturating_sub(self.busy) as f64;
        let idle = later.idle.saturating_sub(self.idle) as f64;
        let steal = later.steal.saturating_sub(self.steal) as f64;
        let total = busy + idle + steal;
        (total >= MIN_TICKS as f64).then(|| HostCpu {
            busy_percent: 100.0 * busy / total,
            steal_percent: 100.0 * steal / total,
        })
    }
}

/// The machine's CPU over a phase, in percent of all its cores' time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCpu {
    /// Time the cores ran anything (the target, the generator, the mock, monitoring, the
    /// rest of the machine).
    pub busy_percent: f64,
    /// Time the hypervisor ran something else on them (0 on bare metal).
    pub steal_percent: f64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_share_counts_busy_idle_and_steal_of_all_cores() {
        let a =
            CpuTicks::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n").unwrap();
        // 100 ticks later: 60 busy (user 40, system 10, softirq 10), 30 idle, 10 stolen.
        let b = CpuTicks::parse("cpu  140 0 60 825 55 0 10 10 0 0\n").unwrap();
        let s = a.until(&b).unwrap();
        assert!((s.busy_percent - 60.0).abs() < 1e-9, "{s:?}");
        assert!((s.steal_percent - 10.0).abs() < 1e-9, "{s:?}");
        // 99 ticks: too few to say.
        let c = CpuTicks::parse("cpu  139 0 60 825 55 0 10 10 0 0\n").unwrap();
        assert_eq!(a.until(&c), None);
        assert_eq!(CpuTicks::parse("intr 1 2 3\n"), None);
        assert_eq!(CpuTicks::parse("cpu  1 x 3\n"), None);
    }

    #[test]
    fn this_machine_has_a_proc_stat() {
        // Linux is the only platform the lab runs on.
        let a = CpuTicks::now().unwrap();
        assert!(a.busy + a.idle > 0);
    }
}
