//! Config errors: every problem is a `Diagnostic` that names the file, line,
//! column and key path, so `weir check` can print them all at once.

use std::fmt;
use std::path::PathBuf;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in the file.
    pub line: usize,
    pub column: usize,
    /// Key path such as `routes[1].backends[0].service`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {} has an unsupported extension: use .toml, .yaml or .yml", path.display())]
    Extension { path: PathBuf },
    #[error("{}", Invalid(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// Each problem as one line, the way `weir check` prints them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(all) => all.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

struct Invalid<'a>(&'a [Diagnostic]);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
