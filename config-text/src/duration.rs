//! Durations such as `500ms`, `30s`, `1.5m`, `1m30s` (syntax in the crate docs).

use std::time::Duration;

/// Why a text is not a duration; each variant quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (write one like 500ms, 30s, 2m, 1h, 1m30s)")]
    Empty,
    #[error("`{text}` is not a duration (like 500ms, 30s, 2m, 1h, 1m30s)")]
    Invalid { text: String },
    #[error("unknown duration unit `{unit}` in `{text}` (use ns, us, ms, s, m or h)")]
    UnknownUnit { text: String, unit: String },
    #[error("`{text}` is too long a duration")]
    TooLong { text: String },
}

/// Parses a duration: number-unit terms summed (`1m30s`), or a bare number of seconds.
/// Exact to the nanosecond (no float rounding: `0.1s` is 100 ms).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(DurationError::Empty);
    }
    let too_long = || DurationError::TooLong { text: text.into() };
    let mut total: u128 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let nlen = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(nlen);
        let after = after.trim_start();
        let ulen = after
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(ulen);
        let unit_ns = match unit {
            // A bare number is seconds, but only as the whole text: `1m30` is a typo.
            "" if nlen == trimmed.len() => 1_000_000_000,
            _ if num.is_empty() || unit.is_empty() => return Err(invalid(text)),
            _ => unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
                text: text.into(),
                unit: unit.into(),
            })?,
        };
        let term = term_nanos(num, unit_ns, text)?;
        total = total.checked_add(term).ok_or_else(too_long)?;
        rest = next.trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

fn invalid(text: &str) -> DurationError {
    DurationError::Invalid { text: text.into() }
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// `num` (digits with at most one `.`) times `unit_ns`, in whole nanoseconds.
fn term_nanos(num: &str, unit_ns: u128, text: &str) -> Result<u128, DurationError> {
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(invalid(text));
    }
    let too_long = || DurationError::TooLong { text: text.into() };
    // Only digits are left, so a failed parse is an overflow.
    let int: u128 = match int {
        "" => 0,
        i => i.parse().map_err(|_| too_long())?,
    };
    // 18 digits of a unit are finer than a nanosecond, and keep the product in range.
    let frac = &frac[..frac.len().min(18)];
    let frac_ns = match frac {
        "" => 0,
        f => f.parse::<u128>().map_err(|_| invalid(text))? * unit_ns / 10u128.pow(f.len() as u32),
    };
    int.checked_mul(unit_ns)
        .and_then(|n| n.checked_add(frac_ns))
        .ok_or_else(too_long)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ms(text: &str) -> u128 {
        parse_duration(text).unwrap().as_millis()
    }

    #[test]
    fn single_terms() {
        assert_eq!(ms("500ms"), 500);
        assert_eq!(ms("30s"), 30_000);
        assert_eq!(ms("2m"), 120_000);
        assert_eq!(ms("2min"), 120_000);
        assert_eq!(ms("1h"), 3_600_000);
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("250µs").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(ms(" 5 s "), 5_000);
    }

    #[test]
    fn compound_terms_sum() {
        assert_eq!(ms("1m30s"), 90_000);
        assert_eq!(ms("1h 30m"), 5_400_000);
        assert_eq!(ms("1s500ms"), 1_500);
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(ms("1.5m"), 90_000);
        assert_eq!(parse_duration("0.1s").unwrap(), Duration::from_millis(100));
        assert_eq!(ms(".5s"), 500);
        assert_eq!(ms("2.s"), 2_000);
    }

    #[test]
    fn bare_numbers_are_seconds() {
        assert_eq!(ms("30"), 30_000);
        assert_eq!(ms("0.5"), 500);
        assert_eq!(ms("0"), 0);
    }

    #[test]
    fn errors_quote_the_text() {
        let err = parse_duration("5 parsecs").unwrap_err();
        assert_eq!(
            err,
            DurationError::UnknownUnit {
                text: "5 parsecs".into(),
                unit: "parsecs".into()
            }
        );
        assert!(err.to_string().contains("`parsecs`"), "{err}");
        assert_eq!(parse_duration("  ").unwrap_err(), DurationError::Empty);
        for bad in ["s", "-5s", "1.2.3s", "1m30", "ms5", "5s x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::TooLong { .. })
        ));
        assert!(matches!(
            parse_duration("999999999999999999999999999999999999999999s"),
            Err(DurationError::TooLong { .. })
        ));
    }
}
