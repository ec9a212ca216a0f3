//! The config: read (`source`), checked (`validate`) and compiled
//! (`compile`) into the runtime `Snapshot` that the request path reads.
//! `schema` mirrors the file; nothing outside this module and the admin API
//! looks at it.

pub mod compile;
pub mod error;
pub mod schema;
pub mod source;
pub mod units;
pub mod validate;

use std::path::{Path, PathBuf};

pub use compile::compile;
pub use error::{ConfigError, Diagnostic};
pub use source::Format;

use crate::tls::certs::MemoryCerts;

/// A parsed and validated config file, ready to compile.
#[derive(Debug)]
pub struct Document {
    /// The file it came from (for messages and reload); `None` when embedded.
    pub file: Option<PathBuf>,
    /// Directory that relative paths in the config are resolved against.
    pub base: PathBuf,
    pub config: schema::Config,
    /// Certificates served from memory beside those `config` names by file
    /// (`weir serve --tls`); empty for a config loaded from text or a file.
    pub memory_certs: MemoryCerts,
}

/// Reads, parses and validates a config file (TOML or YAML by extension).
pub fn load(path: &Path) -> Result<Document, ConfigError> {
    let format = Format::from_path(path).ok_or_else(|| ConfigError::Extension {
        path: path.to_owned(),
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    load_str(&text, path, format, base).map(|mut doc| {
        doc.file = Some(path.to_owned());
        doc
    })
}

/// Parses and validates config text; `file` only names it in messages.
pub fn load_str(
    text: &str,
    file: &Path,
    format: Format,
    base: PathBuf,
) -> Result<Document, ConfigError> {
    load_str_with_certs(text, file, format, base, MemoryCerts::default())
}

/// Like [`load_str`], with certificates that live only in memory for some
/// TLS listeners: a listener that has some there needs none in its
/// `tls.certs`, and every listener named there must have `[listeners.tls]`.
pub fn load_str_with_certs(
    text: &str,
    file: &Path,
    format: Format,
    base: PathBuf,
    memory_certs: MemoryCerts,
) -> Result<Document, ConfigError> {
    let (config, locator) =
        source::parse(file, text, format).map_err(|d| ConfigError::Invalid(vec![d]))?;
    let errors = validate::validate(&config, &locator, &base, &memory_certs);
    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors));
    }
    Ok(Document {
        file: None,
        base,
        config,
        memory_certs,
    })
}

/// The embedded default: the current directory as a static site on
/// 127.0.0.1:8080, admin on 127.0.0.1:9901.
pub const DEFAULT: &str = r#"
[admin]
listen = "127.0.0.1:9901"

[[listeners]]
name = "web"
bind = ["127.0.0.1:8080"]

[[routes]]
path = "/"
backends = [{ site = "default" }]

[sites.default]
root = "."
"#;

pub fn embedded_default() -> Result<Document, ConfigError> {
    load_str(
        DEFAULT,
        Path::new("<embedded default>"),
        Format::Toml,
        PathBuf::from("."),
    )
}
