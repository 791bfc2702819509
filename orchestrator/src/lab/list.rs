//! `orchestrator list`: what `run` can measure and how long it takes, read from the same
//! files `run` reads (the compose file's target services, the suites file), no Docker.

use std::fmt;
use std::path::PathBuf;

use crate::lab::compose::Role;
use crate::lab::run::DIRECT;
use crate::lab::stack::{Lab, LabOpts};
use crate::suites::{Profile, SuitesFile};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub lab: LabOpts,
    /// Suites file (default: the built-in one, as `run` uses).
    #[arg(long)]
    pub suites_file: Option<PathBuf>,
}

/// One line of the listing: a name and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub about: String,
}

/// Everything `run` accepts as a target, suite or profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub targets: Vec<Entry>,
    pub suites: Vec<Entry>,
    pub profiles: Vec<Entry>,
}

impl Catalog {
    pub fn new(lab: &Lab, suites: &SuitesFile) -> Self {
        Self {
            targets: targets(lab),
            suites: suites
                .suites
                .iter()
                .map(|s| match s.repeats {
                    1 => entry(&s.name, &s.description),
                    n => entry(&s.name, &format!("{} Repeated {n} times.", s.description)),
                })
                .collect(),
            profiles: profiles(suites),
        }
    }
}

fn entry(name: &str, about: &str) -> Entry {
    Entry {
        name: name.to_string(),
        about: about.to_string(),
    }
}

/// `direct` (the control), then every service with `x-lab-role: target`.
pub fn targets(lab: &Lab) -> Vec<Entry> {
    let mock = lab
        .by_role(Role::Mock)
        .first()
        .map_or("the mock", |(n, _)| *n);
    let direct = entry(
        DIRECT,
        &format!("{mock} called directly: the control, no gateway in between"),
    );
    let services = lab.by_role(Role::Target).into_iter().map(|(n, s)| {
        let lane = s.governed.as_ref().map_or(String::new(), |g| {
            format!("; governed variant of {} (--lane governed|both)", g.of)
        });
        entry(n, &format!("{} on cpuset {}{lane}", s.image, s.cpuset))
    });
    std::iter::once(direct).chain(services).collect()
}

/// Each profile with the scheduled time of every suite under it, per target.
pub fn profiles(suites: &SuitesFile) -> Vec<Entry> {
    [Profile::Quick, Profile::Full]
        .into_iter()
        .map(|p| {
            let secs: f64 = suites
                .suites
                .iter()
                .map(|s| s.estimated_duration(p).as_secs_f64())
                .sum();
            let what = match p {
                Profile::Quick => "first tries and CI",
                Profile::Full => "the real measurement",
            };
            let about = format!(
                "{what}: all suites take about {:.1} min per target",
                secs / 60.0
            );
            entry(p.name(), &about)
        })
        .collect()
}

impl fmt::Display for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = [&self.targets, &self.suites, &self.profiles]
            .iter()
            .flat_map(|l| l.iter().map(|e| e.name.len()))
            .max()
            .unwrap_or(0);
        for (title, list) in [
            ("targets (--targets)", &self.targets),
            ("suites (run <suite|all>)", &self.suites),
            ("profiles (--profile)", &self.profiles),
        ] {
            writeln!(f, "{title}:")?;
            for e in list {
                writeln!(f, "  {:<width$}  {}", e.name, e.about)?;
            }
        }
        Ok(())
    }
}

/// `orchestrator list`.
pub fn list(a: ListArgs) -> anyhow::Result<i32> {
    let lab = Lab::load(&a.lab)?;
    let suites = match &a.suites_file {
        Some(p) => SuitesFile::load(p)?,
        None => SuitesFile::builtin()?,
    };
    print!("{}", Catalog::new(&lab, &suites));
    Ok(0)
}
