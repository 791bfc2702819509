//! Errors while reading a run directory or rendering its reports.

use std::path::PathBuf;

/// What went wrong, naming the file (and the field, line and column for a broken JSON file).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: invalid at `{field}` (line {line}, column {column}): {message}", path.display())]
    Parse {
        path: PathBuf,
        /// Path of the offending field inside the document (`phases[0].latency_ms.p99`).
        field: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
}

impl ReportError {
    /// A short, low-cardinality label for the error.
    pub fn label(&self) -> &'static str {
        match self {
            ReportError::Read { .. } => "read",
            ReportError::Parse { .. } => "parse",
            ReportError::Invalid { .. } => "invalid",
            ReportError::Write { .. } => "write",
            ReportError::Template { .. } => "template",
        }
    }

    pub(crate) fn template(name: &str, e: &minijinja::Error) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        ReportError::Template {
            name: name.to_string(),
            message,
        }
    }
}
