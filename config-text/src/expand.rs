//! `${VAR}` expansion (semantics in the crate docs).

/// Which `$` forms a text uses, and what an unset variable without a default gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Compose and env files, as docker-compose reads them: `$VAR` expands too, a `$`
    /// before anything else is an error, an unset `${VAR}` becomes empty.
    Compose,
    /// Single config values (keys, URLs): only `${…}` and `$$` are special, so a lone `$`
    /// in a secret stays as written, and an unset `${VAR}` without a default is an error
    /// (a missing secret should stop the start, not become an empty key).
    Values,
}

/// Why a text could not be expanded. `context` is the line of the text holding the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated `${{` in `{context}`")]
    Unterminated { context: String },
    #[error("invalid variable name in `${{{expr}}}`")]
    BadName { expr: String },
    #[error(
        "unsupported substitution `${{{expr}}}` (supported: ${{VAR}}, ${{VAR:-default}}, ${{VAR-default}})"
    )]
    Unsupported { expr: String },
    #[error("invalid `$` in `{context}` (write `$$` for a literal `$`)")]
    LoneDollar { context: String },
    #[error("variable {name} is not set and has no default (write ${{{name}:-default}})")]
    Unset { name: String },
}

/// Expands the variables of `text`, looking each name up with `lookup` (`None`: unset).
pub fn expand(
    text: &str,
    dialect: Dialect,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let at = text.len() - rest.len() + pos;
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| ExpandError::Unterminated {
                context: line_of(text, at).to_string(),
            })?;
            out.push_str(&substitute(&body[..end], dialect, &lookup)?);
            rest = &body[end + 1..];
        } else if dialect == Dialect::Values {
            out.push('$');
            rest = after;
        } else {
            let len = name_len(after);
            if !valid_name(&after[..len]) {
                return Err(ExpandError::LoneDollar {
                    context: line_of(text, at).to_string(),
                });
            }
            out.push_str(&lookup(&after[..len]).unwrap_or_default());
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one `${expr}`.
fn substitute(
    expr: &str,
    dialect: Dialect,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let (name, op) = expr.split_at(name_len(expr));
    if !valid_name(name) {
        return Err(ExpandError::BadName { expr: expr.into() });
    }
    let value = lookup(name);
    if let Some(default) = op.strip_prefix(":-") {
        return Ok(value
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.into()));
    }
    if let Some(default) = op.strip_prefix('-') {
        return Ok(value.unwrap_or_else(|| default.into()));
    }
    if [":?", "?", ":+", "+"].iter().any(|o| op.starts_with(o)) {
        return Err(ExpandError::Unsupported { expr: expr.into() });
    }
    if !op.is_empty() {
        return Err(ExpandError::BadName { expr: expr.into() });
    }
    match (value, dialect) {
        (Some(v), _) => Ok(v),
        (None, Dialect::Compose) => Ok(String::new()),
        (None, Dialect::Values) => Err(ExpandError::Unset { name: name.into() }),
    }
}

fn name_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
}

/// The trimmed line of `text` around byte `pos`, to show where a fault is.
fn line_of(text: &str, pos: usize) -> &str {
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
    text[start..end].trim()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `A=1`, `E` set but empty, everything else unset.
    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("1".into()),
            "E" => Some(String::new()),
            _ => None,
        }
    }

    fn compose(text: &str) -> Result<String, ExpandError> {
        expand(text, Dialect::Compose, vars)
    }

    fn values(text: &str) -> Result<String, ExpandError> {
        expand(text, Dialect::Values, vars)
    }

    #[test]
    fn defaults_follow_compose_for_unset_and_empty() {
        for f in [compose, values] {
            assert_eq!(f("${A}").unwrap(), "1");
            assert_eq!(f("${A:-d}").unwrap(), "1");
            assert_eq!(f("${A-d}").unwrap(), "1");
            assert_eq!(f("${U:-d}").unwrap(), "d");
            assert_eq!(f("${U-d}").unwrap(), "d");
            // Set but empty: `:-` takes the default, `-` keeps the empty value.
            assert_eq!(f("${E:-d}").unwrap(), "d");
            assert_eq!(f("${E-d}").unwrap(), "");
            assert_eq!(f("${E}").unwrap(), "");
            assert_eq!(f("${U:-}").unwrap(), "");
            assert_eq!(f("a${A}b${U:-c}d").unwrap(), "a1bcd");
            assert_eq!(f("${U:-http://x:1/y-z}").unwrap(), "http://x:1/y-z");
        }
    }

    #[test]
    fn unset_without_default_depends_on_the_dialect() {
        assert_eq!(compose("x${U}y").unwrap(), "xy");
        let err = values("x${U}y").unwrap_err();
        assert_eq!(err, ExpandError::Unset { name: "U".into() });
        assert!(err.to_string().contains("U is not set"), "{err}");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        for f in [compose, values] {
            assert_eq!(f("$${A}").unwrap(), "${A}");
            assert_eq!(f("a $$ b").unwrap(), "a $ b");
            assert_eq!(f("$$$$").unwrap(), "$$");
        }
    }

    #[test]
    fn bare_dollar_names_expand_only_in_compose() {
        assert_eq!(compose("$A-x").unwrap(), "1-x");
        assert_eq!(compose("$U.").unwrap(), ".");
        assert_eq!(values("sk-$A$").unwrap(), "sk-$A$");
        assert_eq!(values("a $ b").unwrap(), "a $ b");
        for lone in ["x: $ y", "x$", "$1"] {
            let err = compose(lone).unwrap_err();
            assert!(
                matches!(err, ExpandError::LoneDollar { .. }),
                "{lone}: {err}"
            );
            assert!(err.to_string().contains("$$"), "{err}");
        }
    }

    #[test]
    fn malformed_substitutions_are_named() {
        for f in [compose, values] {
            let err = f("a: 1\nb: ${A\nc: 2").unwrap_err();
            assert_eq!(
                err,
                ExpandError::Unterminated {
                    context: "b: ${A".into()
                }
            );
            assert!(matches!(f("${}"), Err(ExpandError::BadName { .. })));
            assert!(matches!(f("${1A}"), Err(ExpandError::BadName { .. })));
            assert!(matches!(f("${A B}"), Err(ExpandError::BadName { .. })));
            assert!(matches!(f("${:-d}"), Err(ExpandError::BadName { .. })));
            let err = f("${A:?must be set}").unwrap_err();
            assert!(
                err.to_string().contains("unsupported substitution"),
                "{err}"
            );
            assert!(matches!(f("${A:+x}"), Err(ExpandError::Unsupported { .. })));
        }
    }

    #[test]
    fn text_without_variables_is_unchanged() {
        assert_eq!(compose("").unwrap(), "");
        assert_eq!(values("plain µ text {}").unwrap(), "plain µ text {}");
    }
}
