//! Lanes: which variant of each target a run measures. `plain` is each target as the lab
//! has always run it; `governed` swaps in its governed variant (a compose service with
//! `x-lab-governed: {of: <plain target>}`: per-key auth, rpm/tpm limits well above the
//! load, metrics on); `both` measures each plain target and, right after it, its governed
//! variant, so the two are measured in the same run and the report can show the feature
//! tax. Targets without a governed variant (`direct`, the `nginx` floor) have nothing to
//! govern: they run as they are in every lane, as the control and the floor.

use std::collections::BTreeMap;

/// `--lane` of `orchestrator run` (`LAB_LANE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lane {
    Plain,
    Governed,
    Both,
}

impl Lane {
    pub fn name(self) -> &'static str {
        match self {
            Lane::Plain => "plain",
            Lane::Governed => "governed",
            Lane::Both => "both",
        }
    }

    /// Parses a lane name (`LAB_LANE`, `--lane`), case-insensitively.
    pub fn parse(s: &str) -> Result<Self, LaneError> {
        <Self as clap::ValueEnum>::from_str(s.trim(), true)
            .map_err(|_| LaneError::Unknown(s.trim().to_string()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LaneError {
    #[error("unknown lane `{0}` (plain, governed or both)")]
    Unknown(String),
    #[error("--lane governed: none of the targets ({0}) has a governed variant (x-lab-governed)")]
    NothingGoverned(String),
}

/// The targets a lane measures, in order, and a line for each target the lane could not
/// govern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub targets: Vec<String>,
    pub notes: Vec<String>,
}

/// Expands the requested targets for `lane`. `variants` maps a plain target to its governed
/// variant. A governed variant named explicitly is kept in every lane; duplicates go.
pub fn select(
    requested: &[String],
    lane: Lane,
    variants: &BTreeMap<String, String>,
) -> Result<Selection, LaneError> {
    let mut targets: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    let mut push = |t: &str| {
        if !targets.iter().any(|x| x == t) {
            targets.push(t.to_string());
        }
    };
    let is_variant = |t: &str| variants.values().any(|v| v == t);
    for t in requested {
        match (lane, variants.get(t)) {
            (Lane::Plain, _) => push(t),
            (Lane::Governed, Some(g)) => push(g),
            (Lane::Both, Some(g)) => {
                push(t);
                push(g);
            }
            (_, None) => {
                if !is_variant(t) {
                    notes.push(format!(
                        "{t}: no governed variant (nothing to govern); it runs plain in every lane"
                    ));
                }
                push(t);
            }
        }
    }
    if lane == Lane::Governed && !targets.iter().any(|t| is_variant(t)) {
        return Err(LaneError::NothingGoverned(requested.join(",")));
    }
    Ok(Selection { targets, notes })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn variants() -> BTreeMap<String, String> {
        [
            ("gateway", "gateway-governed"),
            ("litellm", "litellm-governed"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    fn names(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn lane_names_parse_and_others_are_named() {
        assert_eq!(Lane::parse("plain").unwrap(), Lane::Plain);
        assert_eq!(Lane::parse(" Governed ").unwrap(), Lane::Governed);
        assert_eq!(Lane::parse("both").unwrap(), Lane::Both);
        assert_eq!(
            Lane::parse("all").unwrap_err().to_string(),
            "unknown lane `all` (plain, governed or both)"
        );
        for l in [Lane::Plain, Lane::Governed, Lane::Both] {
            assert_eq!(Lane::parse(l.name()).unwrap(), l);
        }
    }

    #[test]
    fn plain_keeps_the_targets_as_given() {
        let s = select(
            &names("direct,nginx,gateway,litellm"),
            Lane::Plain,
            &variants(),
        )
        .unwrap();
        assert_eq!(s.targets, names("direct,nginx,gateway,litellm"));
        assert!(s.notes.is_empty());
    }

    #[test]
    fn governed_swaps_in_variants_and_says_what_it_cannot_govern() {
        let s = select(
            &names("direct,nginx,gateway,litellm"),
            Lane::Governed,
            &variants(),
        )
        .unwrap();
        assert_eq!(
            s.targets,
            names("direct,nginx,gateway-governed,litellm-governed")
        );
        assert_eq!(s.notes.len(), 2);
        assert!(
            s.notes[0].starts_with("direct: no governed variant"),
            "{:?}",
            s.notes
        );
        assert!(
            s.notes[1].starts_with("nginx: no governed variant"),
            "{:?}",
            s.notes
        );
    }

    #[test]
    fn both_puts_each_variant_right_after_its_plain_target() {
        let s = select(&names("direct,gateway,litellm"), Lane::Both, &variants()).unwrap();
        assert_eq!(
            s.targets,
            names("direct,gateway,gateway-governed,litellm,litellm-governed")
        );
        assert_eq!(s.notes.len(), 1);
    }

    #[test]
    fn explicit_variants_are_kept_once_and_unnoted() {
        let s = select(&names("gateway-governed,gateway"), Lane::Both, &variants()).unwrap();
        assert_eq!(s.targets, names("gateway-governed,gateway"));
        assert!(s.notes.is_empty());
        let s = select(&names("gateway-governed"), Lane::Plain, &variants()).unwrap();
        assert_eq!(s.targets, names("gateway-governed"));
    }

    #[test]
    fn governed_with_nothing_to_govern_is_an_error() {
        let e = select(&names("direct,nginx"), Lane::Governed, &variants()).unwrap_err();
        assert_eq!(e, LaneError::NothingGoverned("direct,nginx".into()));
        // `both` without variants is simply the plain run.
        let s = select(&names("direct,nginx"), Lane::Both, &variants()).unwrap();
        assert_eq!(s.targets, names("direct,nginx"));
    }
}
