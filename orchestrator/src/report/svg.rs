//! Inline SVG line charts, generated here so the HTML report needs nothing from the network.
//! Axes may be linear, log10 or "nines" (percentiles spread like an HDR plot: 50, 90, 99, 99.9).

use std::fmt::Write;

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// Only positive values are drawn.
    Log10,
    /// Percentiles in 0..100, placed at `-log10(1 - p/100)`; 100 is clamped to 99.9999.
    Nines,
}

impl Scale {
    fn map(self, v: f64) -> Option<f64> {
        let out = match self {
            Scale::Linear => v,
            Scale::Log10 if v > 0.0 => v.log10(),
            Scale::Log10 => return None,
            Scale::Nines => -(1.0 - v.clamp(0.0, 99.9999) / 100.0).log10(),
        };
        out.is_finite().then_some(out)
    }

    fn unmap(self, t: f64) -> f64 {
        match self {
            Scale::Linear => t,
            Scale::Log10 => 10f64.powf(t),
            Scale::Nines => 100.0 * (1.0 - 10f64.powf(-t)),
        }
    }

    /// Tick positions (in mapped space) covering `lo..=hi`.
    fn ticks(self, lo: f64, hi: f64) -> Vec<f64> {
        match self {
            Scale::Linear => linear_ticks(lo, hi),
            Scale::Log10 => {
                let mut out = Vec::new();
                let (a, b) = (lo.floor() as i32, hi.ceil() as i32);
                let few_decades = b - a <= 2;
                for e in a..=b {
                    for m in [1.0, 2.0, 5.0] {
                        if m != 1.0 && !few_decades {
                            continue;
                        }
                        let t = (m * 10f64.powi(e)).log10();
                        if t >= lo - 1e-9 && t <= hi + 1e-9 {
                            out.push(t);
                        }
                    }
                }
                out
            }
            Scale::Nines => {
                let mut out = Vec::new();
                // 0 (the minimum) sits too close to 50 to label both.
                let half = 2f64.log10();
                if lo <= half + 1e-9 && hi >= half - 1e-9 {
                    out.push(half);
                } else if lo <= 1e-9 {
                    out.push(0.0);
                }
                for n in 1..=6 {
                    let t = n as f64;
                    if t >= lo - 1e-9 && t <= hi + 1e-9 {
                        out.push(t);
                    }
                }
                out
            }
        }
    }
}

fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// One axis: its scale, label and how tick values are printed.
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    pub format: fn(f64) -> String,
    /// Linear axes: include zero in the range.
    pub from_zero: bool,
}

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub color: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart with a legend.
pub struct LineChart {
    pub title: String,
    /// Shaded x ranges (e.g. a fault window), in data units, drawn under the lines.
    pub bands: Vec<(f64, f64)>,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
}

const W: f64 = 560.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 26.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 46.0;

/// Escapes text for SVG/XML content and attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn range(vals: impl Iterator<Item = f64>, from_zero: bool, scale: Scale) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if !lo.is_finite() {
        return None;
    }
    if from_zero && scale == Scale::Linear {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if (hi - lo).abs() < 1e-12 {
        let pad = if scale == Scale::Linear {
            (hi.abs() * 0.1).max(1.0)
        } else {
            0.5
        };
        lo -= pad;
        hi += pad;
        if from_zero && scale == Scale::Linear && lo < 0.0 && hi > 0.0 {
            lo = 0.0;
        }
    } else if scale == Scale::Log10 {
        lo = lo.floor().min(lo - 0.05);
        hi = hi.ceil().max(hi + 0.05);
        lo = lo.max(hi - 12.0);
    } else if scale == Scale::Linear {
        hi += (hi - lo) * 0.05;
    }
    Some((lo, hi))
}

impl LineChart {
    /// The chart as an `<svg>` element, or `None` when no series has a drawable point.
    pub fn to_svg(&self) -> Option<String> {
        let mapped: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|s| {
                s.points
                    .iter()
                    .filter_map(|&(x, y)| Some((self.x.scale.map(x)?, self.y.scale.map(y)?)))
                    .collect()
            })
            .collect();
        let all = || mapped.iter().flatten();
        let (x0, x1) = range(all().map(|p| p.0), self.x.from_zero, self.x.scale)?;
        let (y0, y1) = range(all().map(|p| p.1), self.y.from_zero, self.y.scale)?;
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let py = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;

        let mut s = String::new();
        let title = esc(&self.title);
        let _ = write!(
            s,
            r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="system-ui, sans-serif" role="img" aria-label="{title}"><title>{title}</title>"#
        );
        let _ = write!(
            s,
            r##"<rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/><text x="{LEFT}" y="16" font-size="13" font-weight="bold">{title}</text>"##
        );
        // Grid and ticks.
        for t in self.x.scale.ticks(x0, x1) {
            let x = px(t);
            let label = esc(&(self.x.format)(self.x.scale.unmap(t)));
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e5e7eb"/><text x="{x:.1}" y="{:.1}" font-size="10" text-anchor="middle">{label}</text>"##,
                TOP + ph,
                TOP + ph + 14.0
            );
        }
        for t in self.y.scale.ticks(y0, y1) {
            let y = py(t);
            let label = esc(&(self.y.format)(self.y.scale.unmap(t)));
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{label}</text>"##,
                LEFT + pw,
                LEFT - 4.0,
                y + 3.0
            );
        }
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#9ca3af"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text><text x="14" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"##,
            LEFT + pw / 2.0,
            H - 8.0,
            esc(&self.x.label),
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(&self.y.label)
        );
        for &(a, b) in &self.bands {
            let (Some(a), Some(b)) = (self.x.scale.map(a), self.x.scale.map(b)) else {
                continue;
            };
            let (a, b) = (px(a.clamp(x0, x1)), px(b.clamp(x0, x1)));
            if b > a {
                let _ = write!(
                    s,
                    r##"<rect class="band" x="{a:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="#fde68a" fill-opacity="0.5"/>"##,
                    b - a
                );
            }
        }
        // Lines, then a legend along the top.
        let mut legend_x = LEFT;
        for (series, pts) in self.series.iter().zip(&mapped) {
            let color = esc(&series.color);
            if !pts.is_empty() {
                let path: Vec<String> = pts
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                    .collect();
                let _ = write!(
                    s,
                    r#"<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                    path.join(" ")
                );
                if pts.len() <= 24 {
                    for &(x, y) in pts {
                        let _ = write!(
                            s,
                            r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{color}"/>"#,
                            px(x),
                            py(y)
                        );
                    }
                }
            }
            let name = if pts.is_empty() {
                esc(&format!("{} (no data)", series.name))
            } else {
                esc(&series.name)
            };
            let _ = write!(
                s,
                r#"<rect x="{legend_x:.1}" y="24" width="10" height="10" fill="{color}"/><text x="{:.1}" y="33" font-size="11">{name}</text>"#,
                legend_x + 14.0
            );
            legend_x += 24.0 + 7.0 * name.chars().count() as f64;
        }
        s.push_str("</svg>");
        Some(s)
    }
}

/// One bar: a target's figure and, when it has one, its 95 % interval (drawn as a whisker).
pub struct Bar {
    pub name: String,
    pub color: String,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// Bars side by side on a linear axis from zero, with error bars: a suite's headline figure
/// per target and its interval, so overlapping intervals can be seen at a glance.
pub struct BarChart {
    pub title: String,
    pub y: Axis,
    pub bars: Vec<Bar>,
}

impl BarChart {
    /// The chart as an `<svg>` element, or `None` without a bar.
    pub fn to_svg(&self) -> Option<String> {
        let tops = self
            .bars
            .iter()
            .flat_map(|b| [Some(b.value), b.interval.map(|i| i.1)])
            .flatten();
        let (y0, y1) = range(tops, true, Scale::Linear)?;
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let py = |y: f64| TOP + ph - (y.clamp(y0, y1) - y0) / (y1 - y0) * ph;
        let title = esc(&self.title);
        let mut s = String::new();
        let _ = write!(
            s,
            r##"<svg class="chart bars" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="system-ui, sans-serif" role="img" aria-label="{title}"><title>{title}</title><rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/><text x="{LEFT}" y="16" font-size="13" font-weight="bold">{title}</text>"##
        );
        for t in Scale::Linear.ticks(y0, y1) {
            let y = py(t);
            let label = esc(&(self.y.format)(t));
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{label}</text>"##,
                LEFT + pw,
                LEFT - 4.0,
                y + 3.0
            );
        }
        let slot = pw / self.bars.len() as f64;
        for (i, b) in self.bars.iter().enumerate() {
            let (color, name) = (esc(&b.color), esc(&b.name));
            let mid = LEFT + slot * (i as f64 + 0.5);
            let (w, top) = (slot * 0.5, py(b.value));
            let _ = write!(
                s,
                r#"<rect class="bar" x="{:.1}" y="{top:.1}" width="{w:.1}" height="{:.1}" fill="{color}" fill-opacity="0.8"/><text x="{mid:.1}" y="{:.1}" font-size="11" text-anchor="middle">{name}</text>"#,
                mid - w / 2.0,
                TOP + ph - top,
                TOP + ph + 14.0
            );
            if let Some((lo, hi)) = b.interval {
                let (a, z, cap) = (py(lo), py(hi), w / 4.0);
                let _ = write!(
                    s,
                    r##"<path class="whisker" d="M{mid:.1},{a:.1}V{z:.1}M{:.1},{a:.1}H{:.1}M{:.1},{z:.1}H{:.1}" stroke="#111827" stroke-width="1.5" fill="none"/>"##,
                    mid - cap,
                    mid + cap,
                    mid - cap,
                    mid + cap
                );
            }
        }
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#9ca3af"/><text x="14" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text></svg>"##,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(&self.y.label)
        );
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> String {
        format!("{v}")
    }

    #[test]
    fn nines_scale_spreads_the_tail() {
        let n = Scale::Nines;
        assert!((n.map(90.0).unwrap_or(0.0) - 1.0).abs() < 1e-9);
        assert!((n.map(99.9).unwrap_or(0.0) - 3.0).abs() < 1e-9);
        assert!((n.unmap(2.0) - 99.0).abs() < 1e-9);
        assert_eq!(n.ticks(0.3, 3.0).len(), 4);
        assert_eq!(n.ticks(0.0, 2.0).len(), 3);
        assert_eq!(Scale::Log10.map(0.0), None);
    }

    #[test]
    fn chart_draws_one_polyline_per_series() {
        let chart = LineChart {
            title: "a <b>".into(),
            bands: vec![(60.0, 90.0)],
            x: Axis {
                label: "percentile".into(),
                scale: Scale::Nines,
                format: ms,
                from_zero: false,
            },
            y: Axis {
                label: "ms".into(),
                scale: Scale::Log10,
                format: ms,
                from_zero: false,
            },
            series: vec![
                Series {
                    name: "gateway".into(),
                    color: "#2563eb".into(),
                    points: vec![(50.0, 1.0), (99.0, 3.0), (99.9, 7.0)],
                },
                Series {
                    name: "empty".into(),
                    color: "#000".into(),
                    points: vec![(50.0, 0.0)],
                },
            ],
        };
        let svg = chart.to_svg().unwrap_or_default();
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("class=\"band\"").count(), 1);
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(svg.contains(">empty (no data)</text>"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let empty = LineChart {
            series: vec![],
            ..chart
        };
        assert!(empty.to_svg().is_none());
    }

    #[test]
    fn linear_ticks_are_round() {
        assert_eq!(
            linear_ticks(0.0, 100.0),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
    }

    #[test]
    fn bars_carry_their_whiskers_and_none_without_bars() {
        let axis = || Axis {
            label: "requests/s".into(),
            scale: Scale::Linear,
            format: ms,
            from_zero: true,
        };
        let bar = |name: &str, value: f64, interval| Bar {
            name: name.into(),
            color: "#123456".into(),
            value,
            interval,
        };
        let chart = BarChart {
            title: "baseline <x>".into(),
            y: axis(),
            bars: vec![
                bar("gateway", 100.0, Some((90.0, 110.0))),
                bar("litellm", 5.0, None),
            ],
        };
        let svg = chart.to_svg().unwrap_or_default();
        assert_eq!(svg.matches(r#"class="bar""#).count(), 2);
        assert_eq!(svg.matches(r#"class="whisker""#).count(), 1);
        assert!(svg.contains("baseline &lt;x&gt;") && svg.ends_with("</svg>"));
        let empty = BarChart {
            title: String::new(),
            y: axis(),
            bars: Vec::new(),
        };
        assert!(empty.to_svg().is_none());
    }
}
