//! Static sites: a URL path becomes a file under the site's root, sent with
//! the headers a modern web app needs.
//!
//! - `resolve`: path -> file, never leaving the root.
//! - `cache`: small files and their encodings in memory, re-checked against
//!   the disk at most once a second.
//! - `serve`: GET/HEAD, content negotiation (precompressed sidecars or
//!   on-the-fly compression), conditional and range requests.
//! - `mime`, `policy` (default Cache-Control, cross-origin isolation),
//!   `rules` and `netlify` (header rules from the config and `_headers`),
//!   `conditional` (ETag, dates, ranges).
//!
//! A site's `headers_file`, when it lies under the root, is not served
//! (404, as Netlify keeps `_headers` unpublished), nor are its
//! precompressed sidecars.
//!
//! A directory is served through its `index.html`. Asked for without the
//! trailing slash (`/docs`), it answers `308` with `Location: ./docs/`, so
//! that the page's relative links resolve against the directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod body;
pub mod cache;
pub mod conditional;
mod load;
pub mod mime;
pub mod netlify;
pub mod policy;
pub mod resolve;
pub mod rules;
mod serve;

pub use serve::serve;

#[cfg(test)]
mod tests;

use crate::http::compression::Coding;

/// One `[sites.NAME]` of the config, ready to serve.
#[derive(Debug)]
pub struct Site {
    pub name: String,
    /// Canonical (absolute, symlinks resolved) by the config compiler:
    /// `resolve` relies on it to tell inside from outside.
    pub root: PathBuf,
    /// Unknown extension-less paths that accept `text/html` get `/index.html`.
    pub spa: bool,
    /// Sidecar encodings to look for (`app.js.br`, ...).
    pub precompressed: Vec<Coding>,
    /// On-the-fly encodings, in server preference order (`[compression]`).
    pub compress: Vec<Coding>,
    /// Smaller bodies are not compressed on the fly.
    pub min_size: u64,
    pub cross_origin_isolated: bool,
    /// Path prefixes cached for a year as immutable.
    pub immutable: Vec<String>,
    pub rules: rules::Rules,
    /// Files under the root that are never served, canonical as
    /// `resolve::locate` names them: the rules file and its sidecars.
    pub hidden: Vec<PathBuf>,
    /// Shared with the same site of the next snapshot (`reload::carry`).
    pub cache: Arc<cache::FileCache>,
    /// A hash of everything configured for the site (rules included), so a
    /// reload keeps the cache only when nothing that shapes entries changed.
    pub identity: u64,
}

impl Site {
    /// A site with the defaults of `weir serve`-less configs: no
    /// compression, no rules, the default cache size.
    pub fn new(name: String, root: PathBuf, spa: bool) -> Site {
        Site {
            name,
            root,
            spa,
            precompressed: Vec::new(),
            compress: Vec::new(),
            min_size: 1024,
            cross_origin_isolated: false,
            immutable: Vec::new(),
            rules: rules::Rules::empty(),
            hidden: Vec::new(),
            cache: Arc::new(cache::FileCache::new(cache::DEFAULT_CAPACITY)),
            identity: 0,
        }
    }

    /// Never serves the rules file at `path` (one place `headers_file` may
    /// be), nor its sidecars (`_headers.br`, ...), when they lie under the
    /// root: they would publish the site's own configuration.
    pub fn hide_rules_file(&mut self, path: &Path) {
        let mut names = vec![path.as_os_str().to_owned()];
        for coding in [Coding::Brotli, Coding::Zstd, Coding::Gzip] {
            if let Some(suffix) = coding.sidecar_suffix() {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                names.push(name);
            }
        }
        for name in names {
            if let Some(hidden) = resolve::canonical_under(&self.root, Path::new(&name))
                && !self.hidden.contains(&hidden)
            {
                self.hidden.push(hidden);
            }
        }
    }

    /// Codings this site may send, in server preference: the on-the-fly
    /// list first, then sidecar-only encodings.
    pub fn preference(&self) -> impl Iterator<Item = Coding> + '_ {
        self.compress.iter().copied().chain(
            self.precompressed
                .iter()
                .copied()
                .filter(|c| !self.compress.contains(c)),
        )
    }
}
