//! Static sites: a URL path becomes a file under the site's root.
//!
//! `resolve` turns the path into a file without ever leaving the root,
//! `mime` names its type, and `serve` answers GET/HEAD with it.
//!
//! A directory is served through its `index.html`. Asked for without the
//! trailing slash (`/docs`), it answers `308` with `Location: ./docs/`, so
//! that the page's relative links resolve against the directory.

use std::path::PathBuf;

pub mod mime;
pub mod resolve;
mod serve;

pub use serve::serve;

/// One `[sites.NAME]` of the config, ready to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    /// Canonical (absolute, symlinks resolved) by the config compiler:
    /// `resolve` relies on it to tell inside from outside.
    pub root: PathBuf,
    /// Unknown extension-less paths that accept `text/html` get `/index.html`.
    pub spa: bool,
}

impl Site {
    pub fn new(name: String, root: PathBuf, spa: bool) -> Site {
        Site { name, root, spa }
    }
}
