//! Reload on file change: watches the config file's directory (so editor
//! renames and Kubernetes ConfigMap `..data` symlink swaps are seen) and the
//! directories of the files the config names (TLS certificates and keys,
//! site `headers_file`s, upstream CAs), debounces, and calls
//! `App::reload`. SIGHUP and `POST /reload` call the same function.
//!
//! A burst of events is one reload: the watcher waits for `DEBOUNCE` of
//! quiet, then looks at the disk. When the config there is the one already
//! serving and the files it names are unchanged, nothing is reloaded (a
//! `touch`, a comment edit, or a save already applied by `POST /reload`).
//!
//! `spawn` returns a `Watch`; dropping it stops the watcher.

pub mod carry;
mod diff;
mod watch;

pub use diff::{Changes, describe};

pub use watch::{Watch, spawn};

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::validate::resolve;

/// The name Kubernetes swaps atomically in a ConfigMap or Secret mount.
const K8S_DATA: &str = "..data";

/// What one config generation makes the watcher look at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Targets {
    /// Directories watched (non-recursively).
    pub dirs: BTreeSet<PathBuf>,
    /// File names whose events matter, in any watched directory.
    pub names: HashSet<OsString>,
    /// Files besides the config whose contents a snapshot was built from.
    pub files: Vec<PathBuf>,
}

impl Targets {
    /// The config `file` and what its effective config (`Snapshot::effective`)
    /// names. Relative paths resolve against the config file's directory,
    /// as `config::load` does. Touches the disk (to follow symlinks).
    pub fn of(file: &Path, effective: &Value) -> Targets {
        let base = config_dir(file);
        let mut targets = Targets::default();
        targets.names.insert(OsString::from(K8S_DATA));
        targets.add(file);
        let strings = |v: &Value| v.as_str().map(PathBuf::from);
        let mut files = Vec::new();
        for listener in array(&effective["listeners"]) {
            for pair in array(&listener["tls"]["certs"]) {
                files.extend(strings(&pair["cert"]).map(|p| resolve(&base, &p)));
                files.extend(strings(&pair["key"]).map(|p| resolve(&base, &p)));
            }
        }
        if let Some(sites) = effective["sites"].as_object() {
            for site in sites.values() {
                if let Some(file) = strings(&site["headers_file"]) {
                    // Like `compile::headers_file`: the config directory,
                    // else inside the site root.
                    files.push(resolve(&base, &file));
                    if let Some(root) = strings(&site["root"]) {
                        files.push(resolve(&resolve(&base, &root), &file));
                    }
                }
            }
        }
        if let Some(services) = effective["services"].as_object() {
            for service in services.values() {
                files.extend(strings(&service["tls"]["ca"]).map(|p| resolve(&base, &p)));
            }
        }
        for file in files {
            targets.add(&file);
            if !targets.files.contains(&file) {
                targets.files.push(file);
            }
        }
        targets
    }

    /// Watches `path`'s directory for its name (and the directory's own
    /// name); when it is a symlink, the directory and name of what it
    /// points to as well.
    fn add(&mut self, path: &Path) {
        let mut add_one = |path: &Path| {
            if let Some(name) = path.file_name() {
                self.names.insert(name.to_owned());
                let dir = config_dir(path);
                // A directory replaced by a rename shows up in its parent.
                if let Some(dir_name) = dir.file_name() {
                    self.names.insert(dir_name.to_owned());
                }
                self.dirs.insert(dir);
            }
        };
        add_one(path);
        if let Ok(real) = std::fs::canonicalize(path)
            && real != path
        {
            add_one(&real);
        }
    }
}

/// The directory relative paths in a config file resolve against.
pub(crate) fn config_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A hash of the contents of `files` (a missing file counts as missing),
/// to tell whether any changed.
pub(crate) fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(file).ok().hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_cover_certs_headers_and_cas() {
        let effective = serde_json::json!({
            "listeners": [
                { "name": "web", "bind": ["127.0.0.1:0"] },
                { "name": "tls", "bind": ["127.0.0.1:0"], "tls": { "certs": [
                    { "cert": "certs/site.pem", "key": "/etc/keys/site-key.pem" }
                ] } }
            ],
            "sites": {
                "www": { "root": "www", "headers_file": "_headers" },
                "plain": { "root": "/srv/plain" }
            },
            "services": {
                "api": { "tls": { "ca": "ca.pem" } },
                "open": { "tls": true }
            }
        });
        let t = Targets::of(Path::new("/nonexistent/conf/weir.toml"), &effective);
        let dirs: Vec<&str> = t.dirs.iter().map(|d| d.to_str().unwrap()).collect();
        assert_eq!(
            dirs,
            [
                "/etc/keys",
                "/nonexistent/conf",
                "/nonexistent/conf/certs",
                "/nonexistent/conf/www",
            ]
        );
        let mut names: Vec<&str> = t.names.iter().map(|n| n.to_str().unwrap()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "..data",
                "_headers",
                "ca.pem",
                "certs",
                "conf",
                "keys",
                "site-key.pem",
                "site.pem",
                "weir.toml",
                "www"
            ]
        );
        assert_eq!(
            t.files,
            [
                PathBuf::from("/nonexistent/conf/certs/site.pem"),
                PathBuf::from("/etc/keys/site-key.pem"),
                PathBuf::from("/nonexistent/conf/_headers"),
                PathBuf::from("/nonexistent/conf/www/_headers"),
                PathBuf::from("/nonexistent/conf/ca.pem"),
            ]
        );
    }

    #[test]
    fn a_bare_file_name_watches_the_current_directory() {
        let t = Targets::of(Path::new("weir.toml"), &Value::Null);
        assert_eq!(t.dirs.into_iter().collect::<Vec<_>>(), [PathBuf::from(".")]);
        assert!(t.files.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_add_the_target_directory() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("actual.toml"), "").unwrap();
        let link = dir.path().join("weir.toml");
        std::os::unix::fs::symlink(real.join("actual.toml"), &link).unwrap();
        let t = Targets::of(&link, &Value::Null);
        let real = std::fs::canonicalize(&real).unwrap();
        assert!(t.dirs.contains(dir.path()), "{t:?}");
        assert!(t.dirs.contains(&real), "{t:?}");
        assert!(t.names.contains(&OsString::from("actual.toml")), "{t:?}");
    }

    #[test]
    fn fingerprint_sees_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cert.pem");
        let files = [file.clone()];
        let missing = fingerprint(&files);
        std::fs::write(&file, "one").unwrap();
        let one = fingerprint(&files);
        assert_ne!(missing, one);
        assert_eq!(one, fingerprint(&files));
        std::fs::write(&file, "two").unwrap();
        assert_ne!(one, fingerprint(&files));
    }
}
