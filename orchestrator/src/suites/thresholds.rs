//! Pass/fail thresholds of a suite (`thresholds:` in `suites.yaml`): k6-like expressions
//! such as `p99 < 5ms`, `errors < 0.1%`, `added_p99 < 5ms`, `rps > 1000` or
//! `peak_memory < 100MB` on the figures the report shows for that suite. They are parsed
//! strictly when the file is loaded (so a typo fails before any load is sent) and judged
//! per target once the suite has run.

use crate::lab::compose::parse_bytes;
use crate::load::result::ThresholdCheck;
use crate::report::data::Entry;
use crate::report::figures::KeyFigures;
use crate::report::format;
use crate::report::thresholds::verdict;
use crate::suites::def::{SuiteDef, SuiteKind};
use config_text::parse_duration;

/// Exit code of `orchestrator run --fail-on-thresholds` when a threshold was missed:
/// distinct from errors (1), `compare`'s regression (2), usage (64) and Ctrl-C (130).
pub const EXIT_THRESHOLDS: i32 = 3;

/// The target that is the upstream itself: figures measured against it (added latency)
/// have no meaning there.
const CONTROL: &str = "direct";

/// How a figure's value is written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Milliseconds; written with a duration unit (`800us`, `5ms`, `1.5s`).
    Latency,
    /// Microseconds added over direct; written with a duration unit.
    Added,
    /// Per second; a bare number (`/s` allowed).
    Rate,
    /// Percent; written with `%`.
    Percent,
    /// Bytes; written `20MB`, `1.5GiB` (MB = MiB, as Docker's memory limits read it).
    Bytes,
}

/// Where a figure exists: the report shows it only for some suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Any,
    /// Streaming suites (`request.stream: true`).
    Stream,
    /// The `overhead` suite; never on the control target.
    Overhead,
    /// Ramps: closed stages or frontier steps.
    Ramp,
}

/// A figure a threshold may name: the names match the report's row keys.
struct FigureSpec {
    names: &'static [&'static str],
    unit: Unit,
    scope: Scope,
    get: fn(&KeyFigures) -> Option<f64>,
}

const FIGURES: &[FigureSpec] = &[
    FigureSpec {
        names: &["requests_per_s", "rps"],
        unit: Unit::Rate,
        scope: Scope::Any,
        get: |k| k.requests_per_s,
    },
    FigureSpec {
        names: &["ok_per_s"],
        unit: Unit::Rate,
        scope: Scope::Any,
        get: |k| k.ok_per_s,
    },
    FigureSpec {
        names: &["peak_requests_per_s", "peak_rps"],
        unit: Unit::Rate,
        scope: Scope::Ramp,
        get: |k| k.peak_requests_per_s,
    },
    FigureSpec {
        names: &["p50"],
        unit: Unit::Latency,
        scope: Scope::Any,
        get: |k| k.p50_ms,
    },
    FigureSpec {
        names: &["p90"],
        unit: Unit::Latency,
        scope: Scope::Any,
        get: |k| k.p90_ms,
    },
    FigureSpec {
        names: &["p95"],
        unit: Unit::Latency,
        scope: Scope::Any,
        get: |k| k.p95_ms,
    },
    FigureSpec {
        names: &["p99"],
        unit: Unit::Latency,
        scope: Scope::Any,
        get: |k| k.p99_ms,
    },
    FigureSpec {
        names: &["p99_9"],
        unit: Unit::Latency,
        scope: Scope::Any,
        get: |k| k.p99_9_ms,
    },
    FigureSpec {
        names: &["max"],
        unit: Unit::Latency,
        scope: Scope::Any,
        get: |k| k.max_ms,
    },
    FigureSpec {
        names: &["errors"],
        unit: Unit::Percent,
        scope: Scope::Any,
        get: |k| k.error_percent,
    },
    FigureSpec {
        names: &["ttft_p50"],
        unit: Unit::Latency,
        scope: Scope::Stream,
        get: |k| k.ttft_p50_ms,
    },
    FigureSpec {
        names: &["ttft_p99"],
        unit: Unit::Latency,
        scope: Scope::Stream,
        get: |k| k.ttft_p99_ms,
    },
    FigureSpec {
        names: &["itl_p50"],
        unit: Unit::Latency,
        scope: Scope::Stream,
        get: |k| k.itl_p50_ms,
    },
    FigureSpec {
        names: &["itl_p99"],
        unit: Unit::Latency,
        scope: Scope::Stream,
        get: |k| k.itl_p99_ms,
    },
    FigureSpec {
        names: &["output_tokens_per_s"],
        unit: Unit::Rate,
        scope: Scope::Stream,
        get: |k| k.output_tokens_per_s,
    },
    FigureSpec {
        names: &["added_p50"],
        unit: Unit::Added,
        scope: Scope::Overhead,
        get: |k| k.added_p50_us,
    },
    FigureSpec {
        names: &["added_p99"],
        unit: Unit::Added,
        scope: Scope::Overhead,
        get: |k| k.added_p99_us,
    },
    FigureSpec {
        names: &["cpu"],
        unit: Unit::Percent,
        scope: Scope::Any,
        get: |k| k.cpu_percent,
    },
    FigureSpec {
        names: &["peak_memory", "memory"],
        unit: Unit::Bytes,
        scope: Scope::Any,
        get: |k| k.peak_memory_bytes.map(|b| b as f64),
    },
    FigureSpec {
        names: &["generator_cpu"],
        unit: Unit::Percent,
        scope: Scope::Any,
        get: |k| k.generator_cpu_percent,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    fn holds(self, measured: f64, bound: f64) -> bool {
        match self {
            Op::Lt => measured < bound,
            Op::Le => measured <= bound,
            Op::Gt => measured > bound,
            Op::Ge => measured >= bound,
        }
    }
}

/// One parsed threshold: `figure op bound`, the bound in the figure's own unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written in the suites file.
    pub expression: String,
    /// The figure's canonical name (the report's row key).
    pub figure: &'static str,
    op: Op,
    bound: f64,
    /// Index into [`FIGURES`] (an index, not the spec: its getter cannot be compared).
    spec: usize,
}

/// Splits `p99 < 5ms` into figure, operator and value text.
fn split(expr: &str) -> Result<(&str, Op, &str), String> {
    let at = expr
        .find(['<', '>'])
        .ok_or("expected `figure < value` or `figure > value` (also <=, >=)")?;
    let (figure, rest) = expr.split_at(at);
    let (op, value) = match rest.as_bytes() {
        [b'<', b'=', ..] => (Op::Le, &rest[2..]),
        [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
        [b'<', ..] => (Op::Lt, &rest[1..]),
        _ => (Op::Gt, &rest[1..]),
    };
    Ok((figure.trim(), op, value.trim()))
}

/// The value text in the figure's unit (ms, µs, per second, percent or bytes).
fn bound_of(unit: Unit, text: &str) -> Result<f64, String> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let suffix = text[number_end..].trim();
    let number = || -> Result<f64, String> {
        text[..number_end]
            .parse::<f64>()
            .map_err(|_| format!("`{text}` is not a number"))
    };
    match unit {
        Unit::Latency | Unit::Added => {
            if suffix.is_empty() {
                return Err(format!("`{text}` needs a unit (us, ms or s)"));
            }
            let d = parse_duration(text).map_err(|e| e.to_string())?;
            let scale = if unit == Unit::Latency { 1e3 } else { 1e6 };
            Ok(d.as_secs_f64() * scale)
        }
        Unit::Rate if suffix.is_empty() || suffix == "/s" => number(),
        Unit::Rate => Err(format!(
            "`{text}`: a rate is a number per second (1000 or 1000/s)"
        )),
        Unit::Percent if suffix == "%" => number(),
        Unit::Percent => Err(format!("`{text}` needs `%` (e.g. 0.1%)")),
        // Docker's reading: MB = MiB. parse_bytes takes k/m/g with an optional b.
        Unit::Bytes if suffix.is_empty() => Err(format!("`{text}` needs a unit (KB, MB, GB)")),
        Unit::Bytes => parse_bytes(&text.replace(' ', "").replace("iB", "B").replace("ib", "b"))
            .map(|b| b as f64)
            .map_err(|_| format!("`{text}`: unknown size unit (use KB, MB or GB)")),
    }
}

/// Why `spec` is not a figure of `suite`, if it is not.
fn out_of_scope(spec: &FigureSpec, suite: &SuiteDef) -> Option<&'static str> {
    let ramp = match &suite.kind {
        SuiteKind::Closed(c) => c.stages.is_some(),
        SuiteKind::Frontier(_) => true,
        SuiteKind::Phases(ph) => ph
            .iter()
            .any(|p| p.def.closed.as_ref().is_some_and(|c| c.stages.is_some())),
        _ => false,
    };
    match spec.scope {
        Scope::Any => None,
        Scope::Stream if !suite.streams() => Some("only streaming suites report it"),
        Scope::Overhead if !matches!(suite.kind, SuiteKind::Overhead(_)) => {
            Some("only the `overhead` suite reports it")
        }
        Scope::Ramp if !ramp => Some("only ramps (closed stages, frontier) report it"),
        _ => None,
    }
}

/// Parses one expression for `suite`; the error says what is wrong with it.
pub fn parse(expr: &str, suite: &SuiteDef) -> Result<Threshold, String> {
    let (figure, op, value) = split(expr)?;
    let index = FIGURES.iter().position(|f| f.names.contains(&figure));
    let (spec, index) = index.map(|i| (&FIGURES[i], i)).ok_or_else(|| {
        let known: Vec<&str> = FIGURES.iter().map(|f| f.names[0]).collect();
        format!("unknown figure `{figure}` (figures: {})", known.join(", "))
    })?;
    if let Some(why) = out_of_scope(spec, suite) {
        return Err(format!("`{figure}` is not a figure of this suite: {why}"));
    }
    let bound = bound_of(spec.unit, value)?;
    Ok(Threshold {
        expression: expr.trim().to_string(),
        figure: spec.names[0],
        op,
        bound,
        spec: index,
    })
}

fn show(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Latency => format::latency_ms(v),
        Unit::Added => format::added_us(v),
        Unit::Rate => format::rate(v),
        Unit::Percent => format::percent(v),
        Unit::Bytes => format::bytes(v as u64),
    }
}

impl Threshold {
    fn spec(&self) -> &'static FigureSpec {
        &FIGURES[self.spec]
    }

    /// Whether it means anything for `target`: added latency over direct is not a figure
    /// of direct itself.
    pub fn applies_to(&self, target: &str) -> bool {
        !(target == CONTROL && self.spec().unit == Unit::Added)
    }

    /// Judges the figure: `pass` is absent when the figure was not measured.
    pub fn check(&self, figures: &KeyFigures) -> ThresholdCheck {
        let unit = self.spec().unit;
        let measured = (self.spec().get)(figures);
        ThresholdCheck {
            name: self.figure.to_string(),
            expected: format!("{} {}", self.op.text(), show(unit, self.bound)),
            measured: measured.map_or_else(|| "not measured".into(), |v| show(unit, v)),
            pass: measured.map(|v| self.op.holds(v, self.bound)),
        }
    }
}

/// The checks of every threshold that applies to `target`, in the file's order.
pub fn judge(thresholds: &[Threshold], target: &str, figures: &KeyFigures) -> Vec<ThresholdCheck> {
    thresholds
        .iter()
        .filter(|t| t.applies_to(target))
        .map(|t| t.check(figures))
        .collect()
}

/// Judges `def`'s thresholds against `entry` (its result and container stats), stores the
/// checks in its result and returns them; `None` when the suite has no thresholds.
pub fn judge_entry(def: &SuiteDef, entry: &mut Entry) -> Option<Vec<ThresholdCheck>> {
    if def.thresholds.is_empty() {
        return None;
    }
    let checks = judge(&def.thresholds, &entry.target, &KeyFigures::of(entry));
    if let Some(r) = entry.result.as_mut() {
        r.thresholds = Some(checks.clone());
    }
    Some(checks)
}

/// One line per judged (target, suite): the verdict and what missed.
pub fn summary_line(target: &str, suite: &str, checks: &[ThresholdCheck]) -> String {
    let missed: Vec<String> = checks
        .iter()
        .filter(|c| c.pass == Some(false))
        .map(|c| format!("{} {} (want {})", c.name, c.measured, c.expected))
        .collect();
    let verdict = match verdict(checks) {
        Some(true) => "pass".to_string(),
        Some(false) => format!("FAIL: {}", missed.join(", ")),
        None => "not judged (figures not measured)".to_string(),
    };
    format!("{target}/{suite}: thresholds {verdict}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::suites::SuitesFile;

    fn suite(name: &str) -> SuiteDef {
        SuitesFile::builtin().unwrap().suite(name).unwrap()
    }

    #[test]
    fn parses_figures_operators_and_units() {
        let s = suite("baseline");
        let t = parse("p99 < 5ms", &s).unwrap();
        assert_eq!((t.figure, t.op, t.bound), ("p99", Op::Lt, 5.0));
        assert_eq!(parse("p50<=800us", &s).unwrap().bound, 0.8);
        assert_eq!(parse("p50 < 5 ms", &s).unwrap().bound, 5.0);
        assert_eq!(
            parse("memory < 20 MiB", &s).unwrap().bound,
            (20u64 << 20) as f64
        );
        assert_eq!(parse("max >= 1.5s", &s).unwrap().op, Op::Ge);
        let e = parse("errors < 0.1%", &s).unwrap();
        assert_eq!((e.figure, e.bound), ("errors", 0.1));
        let r = parse("rps > 1000", &s).unwrap();
        assert_eq!(
            (r.figure, r.op, r.bound),
            ("requests_per_s", Op::Gt, 1000.0)
        );
        assert_eq!(parse("rps > 1000/s", &s).unwrap().bound, 1000.0);
        let m = parse("peak_memory < 100MB", &s).unwrap();
        assert_eq!(m.bound, (100u64 << 20) as f64);
        assert_eq!(
            parse("memory < 1.5GiB", &s).unwrap().bound,
            1.5 * (1u64 << 30) as f64
        );
        let a = parse("added_p99 < 5ms", &suite("overhead")).unwrap();
        assert_eq!((a.figure, a.bound), ("added_p99", 5000.0));
        assert!(parse("ttft_p99 < 100ms", &suite("streaming")).is_ok());
        assert!(parse("peak_rps > 10", &suite("throughput")).is_ok());
    }

    #[test]
    fn rejects_unknown_figures_bad_units_and_other_suites_figures() {
        let s = suite("baseline");
        let err = |e: &str, s: &SuiteDef| parse(e, s).unwrap_err();
        assert!(err("p98 < 5ms", &s).contains("unknown figure `p98`"));
        assert!(err("p99 = 5ms", &s).contains("expected"));
        assert!(err("p99 < 5", &s).contains("needs a unit"));
        assert!(err("p99 < 5parsecs", &s).contains("parsecs"));
        assert!(err("errors < 0.1", &s).contains("%"));
        assert!(err("rps > 10k", &s).contains("rate"));
        assert!(err("peak_memory < 100", &s).contains("needs a unit"));
        assert!(err("peak_memory < 100XB", &s).contains("size unit"));
        assert!(err("added_p99 < 5ms", &s).contains("overhead"));
        assert!(err("ttft_p50 < 5ms", &s).contains("streaming"));
        assert!(err("peak_rps > 10", &s).contains("ramps"));
    }

    #[test]
    fn judges_per_target_and_leaves_added_latency_off_direct() {
        let o = suite("overhead");
        let ts = vec![
            parse("added_p99 < 5ms", &o).unwrap(),
            parse("p99 < 1ms", &o).unwrap(),
            parse("peak_memory < 20MB", &o).unwrap(),
        ];
        let figs = KeyFigures {
            added_p99_us: Some(91.0),
            p99_ms: Some(1.22),
            ..KeyFigures::default()
        };
        let checks = judge(&ts, "gateway", &figs);
        let pass: Vec<_> = checks.iter().map(|c| c.pass).collect();
        assert_eq!(pass, [Some(true), Some(false), None]);
        assert_eq!(checks[0].expected, "< +5.00 ms");
        assert_eq!(checks[0].measured, "+91 µs");
        assert_eq!(checks[1].measured, "1.22 ms");
        assert_eq!(checks[2].measured, "not measured");
        assert_eq!(verdict(&checks), Some(false));
        assert_eq!(verdict(&checks[..1]), Some(true));
        assert_eq!(verdict(&checks[2..]), None);

        let direct = judge(&ts, CONTROL, &figs);
        assert_eq!(direct.len(), 2);
        assert!(direct.iter().all(|c| c.name != "added_p99"));
    }

    #[test]
    fn bounds_are_strict_or_inclusive_as_written() {
        let s = suite("baseline");
        let figs = KeyFigures {
            p99_ms: Some(5.0),
            ..KeyFigures::default()
        };
        assert_eq!(
            parse("p99 < 5ms", &s).unwrap().check(&figs).pass,
            Some(false)
        );
        assert_eq!(
            parse("p99 <= 5ms", &s).unwrap().check(&figs).pass,
            Some(true)
        );
    }
}
