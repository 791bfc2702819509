//! The text syntax the workspace's config files share, implemented once so the gateway's
//! config and the lab's compose, env and suites files read the same way.
//!
//! **Variables** ([`expand`]), with Docker Compose's semantics:
//!
//! | form | gives |
//! |---|---|
//! | `${VAR}` | the value of `VAR`; unset: empty ([`Dialect::Compose`]) or an error ([`Dialect::Values`]) |
//! | `${VAR:-default}` | `default` when `VAR` is unset **or empty** |
//! | `${VAR-default}` | `default` only when `VAR` is unset (an empty value stays empty) |
//! | `$$` | a literal `$` (so `$${VAR}` is the text `${VAR}`) |
//! | `$VAR` | like `${VAR}` in [`Dialect::Compose`]; left as written in [`Dialect::Values`] |
//!
//! Names are `[A-Za-z_][A-Za-z0-9_]*`; defaults are literal text (no nesting) and end at
//! the first `}`. `${VAR:?err}` and `${VAR:+alt}` are refused as unsupported.
//!
//! **Durations** ([`parse_duration`]): a number with a unit (`ns`, `us`/`µs`, `ms`, `s`,
//! `m`/`min`, `h`), decimals allowed (`1.5m`), terms summed (`1m30s`, `1h 30m`), or a bare
//! number of seconds (`30`, `0.5`).

mod duration;
mod expand;

pub use duration::{parse_duration, DurationError};
pub use expand::{expand, Dialect, ExpandError};
