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
//! A directory is served through its `index.html`. Asked for without the
//! trailing slash (`/docs`), it answers `308` with `Location: ./docs/`, so
//! that the page's relative links resolve against the directory.

use std::path::PathBuf;
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
            cache: Arc::new(cache::FileCache::new(cache::DEFAULT_CAPACITY)),
            identity: 0,
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
