//! Number formatting shared by the tables, the charts and the comparison. Every figure the
//! reports show goes through here, so a value and its formatted cell can be checked in tests.

/// What the reports print for a figure that was not measured. Never `0`.
pub const MISSING: &str = "—";

/// Rounds to `sig` significant figures and prints without a trailing exponent.
fn sig(v: f64, sig: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let mag = v.abs().log10().floor() as i32;
    let decimals = (sig - 1 - mag).max(0);
    // Rounding may carry into the next power of ten (0.9998 -> 1.000): one decimal fewer.
    let scale = 10f64.powi(decimals);
    let rounded = (v * scale).round() / scale;
    let decimals = if rounded.abs().log10().floor() as i32 > mag {
        (decimals - 1).max(0)
    } else {
        decimals
    } as usize;
    format!("{v:.decimals$}")
}

/// A latency given in milliseconds: `412 µs`, `4.12 ms`, `41.2 ms`, `412 ms`, `1.23 s`.
pub fn latency_ms(ms: f64) -> String {
    if ms < 0.0 {
        return format!("-{}", latency_ms(-ms));
    }
    if ms < 1.0 {
        format!("{} µs", sig(ms * 1000.0, 3))
    } else if ms < 1000.0 {
        format!("{} ms", sig(ms, 3))
    } else {
        format!("{} s", sig(ms / 1000.0, 3))
    }
}

/// A latency difference in microseconds with its sign: `+41 µs`, `-1.2 ms`.
pub fn added_us(us: f64) -> String {
    let sign = if us < 0.0 { "-" } else { "+" };
    let a = us.abs();
    if a < 1000.0 {
        format!("{sign}{} µs", a.round())
    } else {
        format!("{sign}{}", latency_ms(a / 1000.0))
    }
}

/// A rate per second: `97.4`, `1,234`, `48,312`.
pub fn rate(v: f64) -> String {
    if v.abs() < 1000.0 {
        sig(v, 3)
    } else {
        thousands(v.round() as i64)
    }
}

/// An integer count with thousands separators.
pub fn thousands(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A percentage: `0.25 %`, `97.5 %`, `183 %`.
pub fn percent(v: f64) -> String {
    if v == 0.0 {
        "0 %".to_string()
    } else {
        format!("{} %", sig(v, 3))
    }
}

/// A byte count in binary units: `512 B`, `12.3 MiB`, `1.50 GiB`.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{} {}", sig(v, 3), UNITS[unit])
    }
}

/// A ratio `a / b`: `48.3x`, `0.0295x`.
pub fn ratio(r: f64) -> String {
    format!("{}x", sig(r, 3))
}

/// A relative change in percent with its sign: `+12.3 %`, `-4.0 %`, `±0 %`.
pub fn change(pct: f64) -> String {
    if pct == 0.0 {
        "±0 %".to_string()
    } else if pct > 0.0 {
        format!("+{} %", sig(pct, 3))
    } else {
        format!("-{} %", sig(-pct, 3))
    }
}

/// Formats an optional figure, or [`MISSING`].
/// A length of time as people say it: `1 h 5 min`, `12 min 30 s`, `45 s`.
pub fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

pub fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| MISSING.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_spoken() {
        let d = std::time::Duration::from_secs;
        assert_eq!(duration(d(750)), "12 min 30 s");
        assert_eq!(duration(d(3900)), "1 h 5 min");
        assert_eq!(duration(d(45)), "45 s");
        assert_eq!(duration(d(120)), "2 min");
    }

    #[test]
    fn latencies_pick_a_unit() {
        assert_eq!(latency_ms(0.412), "412 µs");
        assert_eq!(latency_ms(4.123), "4.12 ms");
        assert_eq!(latency_ms(12.14), "12.1 ms");
        assert_eq!(latency_ms(410.0), "410 ms");
        assert_eq!(latency_ms(1234.0), "1.23 s");
        assert_eq!(latency_ms(0.0), "0 µs");
    }

    #[test]
    fn rates_counts_and_sizes() {
        assert_eq!(rate(97.43), "97.4");
        assert_eq!(rate(48312.4), "48,312");
        assert_eq!(thousands(-1234567), "-1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12 * 1024 * 1024 + 300 * 1024), "12.3 MiB");
        assert_eq!(ratio(48.312), "48.3x");
        assert_eq!(ratio(0.02951), "0.0295x");
        assert_eq!(ratio(0.99981), "1.00x");
        assert_eq!(latency_ms(999.9), "1000 ms");
        assert_eq!(added_us(41.2), "+41 µs");
        assert_eq!(added_us(-1500.0), "-1.50 ms");
        assert_eq!(change(12.34), "+12.3 %");
        assert_eq!(change(-4.0), "-4.00 %");
        assert_eq!(percent(0.25), "0.250 %");
        assert_eq!(opt(None::<f64>, rate), MISSING);
    }
}
