//! URL path -> file under the site root, without ever leaving the root.
//!
//! Two steps, so that the hard part is testable without a runtime:
//! - [`sanitize`] is pure. It splits the raw path on `/`, percent-decodes
//!   each segment exactly once, and refuses anything that could climb out of
//!   the root or that another decoder might still turn into a separator or a
//!   dot (`..`, `\`, NUL, encoded `/`, double-encoded `%2e`). Dotfiles are
//!   hidden (404) except the `/.well-known/` directory itself.
//! - [`locate`] touches the filesystem (call it off the async runtime). It
//!   canonicalizes the candidate and checks the result is still under the
//!   root and still not hidden, which catches symlinks that point elsewhere.
//!   A directory means its `index.html`; there are no directory listings.
//!   (Files a site hides, such as its rules file, are refused by the
//!   caller, which knows the site: see `load::find`.)

use std::io;
use std::path::{Component, Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The file served for a directory.
pub const INDEX: &str = "index.html";

/// The one dot-directory that may be served (RFC 8615).
const WELL_KNOWN: &str = ".well-known";

/// What we put back into a `Location`: everything but unreserved characters
/// is encoded, so any decoded segment becomes a valid relative reference.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A request path that passed [`sanitize`]: decoded, non-empty segments,
/// none of them `.`/`..`, hidden, or carrying a separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SafePath {
    segments: Vec<String>,
    trailing_slash: bool,
}

/// Where a request lands once the filesystem has been asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Located {
    /// Canonical path of a regular file under the root.
    File(PathBuf),
    /// A directory (with an index) asked for without its trailing slash.
    /// Holds a relative `Location` (`./name/`): relative, so it stays right
    /// whatever route prefix the caller stripped before calling us.
    AddSlash(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The path is malformed or tries to escape (400).
    #[error("bad path: {0}")]
    BadPath(&'static str),
    /// Nothing servable there, or something we choose not to show (404).
    #[error("not found")]
    NotFound,
    /// Any other filesystem failure (500; the detail is only logged).
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ResolveError {
    /// Classifies a filesystem error on `path`: whatever means "no such
    /// file" (including a file used as a directory, or a name too long) is
    /// `NotFound`, the rest is `Io`.
    pub fn from_io(path: &Path, source: io::Error) -> ResolveError {
        match source.kind() {
            io::ErrorKind::NotFound
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::InvalidFilename => ResolveError::NotFound,
            _ => ResolveError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

impl SafePath {
    /// The site's root directory, `/`.
    pub fn root() -> SafePath {
        SafePath {
            segments: Vec::new(),
            trailing_slash: true,
        }
    }

    /// The path relative to the site root (empty for `/`).
    pub fn relative(&self) -> PathBuf {
        self.segments.iter().collect()
    }

    /// Whether the last segment looks like a file name (`app.js`), as
    /// opposed to a client-side route (`/settings/profile`).
    /// The decoded path as the URL names it (`/assets/app.js`, `/docs/`),
    /// what header rules are matched against.
    pub fn url_path(&self) -> String {
        let mut path =
            String::with_capacity(1 + self.segments.iter().map(|s| s.len() + 1).sum::<usize>());
        for segment in &self.segments {
            path.push('/');
            path.push_str(segment);
        }
        if path.is_empty() || self.trailing_slash {
            path.push('/');
        }
        path
    }

    pub fn has_extension(&self) -> bool {
        self.segments
            .last()
            .is_some_and(|last| Path::new(last).extension().is_some())
    }
}

/// Checks and decodes `path`, the still percent-encoded URL path (no query).
/// An empty path is taken as `/`.
pub fn sanitize(path: &str) -> Result<SafePath, ResolveError> {
    let rest = match path {
        "" => return Ok(SafePath::root()),
        _ => path
            .strip_prefix('/')
            .ok_or(ResolveError::BadPath("not absolute"))?,
    };
    let mut segments = Vec::new();
    for raw in rest.split('/').filter(|raw| !raw.is_empty()) {
        let segment = decode_segment(raw)?;
        if is_hidden(&segment, segments.is_empty()) {
            return Err(ResolveError::NotFound);
        }
        segments.push(segment);
    }
    Ok(SafePath {
        segments,
        trailing_slash: path.ends_with('/'),
    })
}

/// Finds the file for `path` under `root`, which must be canonical. Blocking.
pub fn locate(root: &Path, path: &SafePath) -> Result<Located, ResolveError> {
    let (target, meta) = confine(root, &root.join(path.relative()))?;
    if meta.is_file() && !path.trailing_slash {
        return Ok(Located::File(target));
    }
    if !meta.is_dir() {
        // A file asked for as a directory (`/a.txt/`), or a fifo, socket,
        // device: nothing we serve.
        return Err(ResolveError::NotFound);
    }
    let (index, meta) = confine(root, &target.join(INDEX))?;
    if !meta.is_file() {
        return Err(ResolveError::NotFound);
    }
    match path.segments.last() {
        Some(last) if !path.trailing_slash => Ok(Located::AddSlash(format!(
            "./{}/",
            utf8_percent_encode(last, SEGMENT)
        ))),
        _ => Ok(Located::File(index)),
    }
}

/// `file` as [`locate`] would name it (canonical, symlinks followed) when
/// that is under `root`, which must be canonical. A file that does not
/// exist (yet) is named through its parent directory. Blocking.
pub fn canonical_under(root: &Path, file: &Path) -> Option<PathBuf> {
    let canonical = match std::fs::canonicalize(file) {
        Ok(canonical) => canonical,
        Err(_) => std::fs::canonicalize(file.parent()?)
            .ok()?
            .join(file.file_name()?),
    };
    canonical.starts_with(root).then_some(canonical)
}

/// Decodes one raw segment, refusing what could act as a separator or a dot
/// segment here or in anything that decodes the path again.
fn decode_segment(raw: &str) -> Result<String, ResolveError> {
    let bytes: Vec<u8> = percent_decode_str(raw).collect();
    if bytes.contains(&0) {
        return Err(ResolveError::BadPath("nul byte"));
    }
    if bytes.contains(&b'\\') {
        return Err(ResolveError::BadPath("backslash"));
    }
    if bytes.contains(&b'/') {
        return Err(ResolveError::BadPath("encoded slash"));
    }
    let segment = String::from_utf8(bytes).map_err(|_| ResolveError::BadPath("invalid utf-8"))?;
    if segment == "." || segment == ".." {
        return Err(ResolveError::BadPath("dot segment"));
    }
    if is_double_encoded(&segment) {
        return Err(ResolveError::BadPath("double-encoded"));
    }
    Ok(segment)
}

/// Whether a decoded segment still holds an escape for `.`, `/`, `\` or NUL.
fn is_double_encoded(segment: &str) -> bool {
    segment.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && [b"2e", b"2f", b"5c", b"00"]
                .iter()
                .any(|escape| w[1..].eq_ignore_ascii_case(*escape))
    })
}

/// Dotfiles and dot-directories are hidden, except `.well-known` at the top.
/// Anything inside `.well-known` that starts with a dot stays hidden.
fn is_hidden(segment: &str, first: bool) -> bool {
    segment.starts_with('.') && !(first && segment == WELL_KNOWN)
}

/// Canonicalizes `candidate` and checks it is still under `root` and not
/// hidden once symlinks are followed.
fn confine(root: &Path, candidate: &Path) -> Result<(PathBuf, std::fs::Metadata), ResolveError> {
    let canonical =
        std::fs::canonicalize(candidate).map_err(|e| ResolveError::from_io(candidate, e))?;
    let inside = canonical
        .strip_prefix(root)
        .map_err(|_| ResolveError::NotFound)?;
    let mut first = true;
    for component in inside.components() {
        let visible = match component {
            Component::Normal(name) => name.to_str().is_some_and(|n| !is_hidden(n, first)),
            _ => false,
        };
        if !visible {
            return Err(ResolveError::NotFound);
        }
        first = false;
    }
    let meta = std::fs::metadata(&canonical).map_err(|e| ResolveError::from_io(&canonical, e))?;
    Ok((canonical, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// `base/root` is the site; `base/outside` and `base/x` must never be served.
    struct Fixture {
        _base: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let base = tempfile::tempdir().expect("tempdir");
        let base_path = fs::canonicalize(base.path()).expect("canonical base");
        let root = base_path.join("root");
        let outside = base_path.join("outside");
        for dir in [
            "",
            "a",
            "sub",
            "empty",
            ".git",
            ".well-known",
            "sub/.hidden-dir",
        ] {
            fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        fs::create_dir_all(&outside).expect("mkdir outside");
        for file in [
            "index.html",
            "x.txt",
            "a/b",
            "sub/index.html",
            "sub/x.txt",
            "sub/.hidden",
            ".env",
            ".git/config",
            ".well-known/x",
            ".well-known/.secret",
        ] {
            fs::write(root.join(file), file).expect("write");
        }
        // Names the property test generates, so a leak would be found.
        fs::create_dir_all(outside.join("sub")).expect("mkdir outside/sub");
        for file in ["secret.txt", "x.txt", "a", "sub/x.txt", "sub/index.html"] {
            fs::write(outside.join(file), "SECRET").expect("write secret");
        }
        fs::write(base_path.join("x"), "SECRET").expect("write secret");
        symlink(outside.join("secret.txt"), root.join("link")).expect("symlink");
        symlink(&outside, root.join("linkdir")).expect("symlink");
        symlink(&outside, root.join("b")).expect("symlink");
        symlink(outside.join("secret.txt"), root.join("sub/a")).expect("symlink");
        symlink(root.join(".env"), root.join("env-link")).expect("symlink");
        symlink(root.join("x.txt"), root.join("inside-link.txt")).expect("symlink");
        Fixture {
            _base: base,
            root,
            outside,
        }
    }

    fn locate_str(root: &Path, path: &str) -> Result<Located, ResolveError> {
        locate(root, &sanitize(path)?)
    }

    #[test]
    fn sanitize_accepts_plain_paths() {
        let cases = [
            ("/", "", true),
            ("", "", true),
            ("/a/b", "a/b", false),
            ("//a///b/", "a/b", true),
            ("/caf%C3%A9.txt", "café.txt", false),
            ("/100%25.txt", "100%.txt", false),
            ("/a%20b", "a b", false),
            ("/.well-known/x", ".well-known/x", false),
            ("/a..b/c.", "a..b/c.", false),
        ];
        for (path, relative, trailing_slash) in cases {
            let safe = sanitize(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(safe.relative(), PathBuf::from(relative), "{path}");
            assert_eq!(safe.trailing_slash, trailing_slash, "{path}");
        }
    }

    #[test]
    fn sanitize_rejects_escapes() {
        let bad = [
            "/../etc/passwd",
            "/a/../../b",
            "/./a",
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/.%2e/x",
            "/%252e%252e/x",
            "/%252E/x",
            "/a/..%2fb",
            "/a%2fb",
            "/a%2Fb",
            "/..\\x",
            "/a\\b",
            "/%5c..",
            "/%255c",
            "/a%00b",
            "/a%2500b",
            "/a\0b",
            "/%ff",
            "/%c3",
            "relative",
            "*",
        ];
        for path in bad {
            assert!(
                matches!(sanitize(path), Err(ResolveError::BadPath(_))),
                "{path}: {:?}",
                sanitize(path)
            );
        }
    }

    #[test]
    fn sanitize_hides_dotfiles() {
        let hidden = [
            "/.env",
            "/.git/config",
            "/sub/.hidden",
            "/%2egit/config",
            "/.well-known/.secret",
            "/sub/.well-known/x",
        ];
        for path in hidden {
            assert!(
                matches!(sanitize(path), Err(ResolveError::NotFound)),
                "{path}: {:?}",
                sanitize(path)
            );
        }
    }

    #[test]
    fn has_extension_looks_at_the_last_segment() {
        let ext = |p: &str| sanitize(p).map(|s| s.has_extension()).unwrap_or(false);
        assert!(ext("/app.js"));
        assert!(ext("/a.b/app.js"));
        assert!(!ext("/a.b/settings"));
        assert!(!ext("/"));
    }

    #[test]
    fn locate_serves_files_and_indexes() {
        let f = fixture();
        let file = |rel: &str| Some(Located::File(f.root.join(rel)));
        assert_eq!(locate_str(&f.root, "/x.txt").ok(), file("x.txt"));
        assert_eq!(locate_str(&f.root, "/").ok(), file("index.html"));
        assert_eq!(locate_str(&f.root, "/sub/").ok(), file("sub/index.html"));
        assert_eq!(
            locate_str(&f.root, "/.well-known/x").ok(),
            file(".well-known/x")
        );
        // A symlink that stays inside the root is followed.
        assert_eq!(locate_str(&f.root, "/inside-link.txt").ok(), file("x.txt"));
        assert_eq!(
            locate_str(&f.root, "/sub").ok(),
            Some(Located::AddSlash("./sub/".into()))
        );
    }

    #[test]
    fn locate_finds_nothing_where_it_should_not() {
        let f = fixture();
        let not_found = [
            "/missing",
            "/x.txt/",
            "/x.txt/y",
            "/empty",
            "/empty/",
            "/a",
            "/link",
            "/linkdir/secret.txt",
            "/b/secret.txt",
            "/sub/a",
            "/env-link",
        ];
        for path in not_found {
            assert!(
                matches!(locate_str(&f.root, path), Err(ResolveError::NotFound)),
                "{path}: {:?}",
                locate_str(&f.root, path)
            );
        }
        let long = format!("/{}", "a".repeat(4096));
        assert!(matches!(
            locate_str(&f.root, &long),
            Err(ResolveError::NotFound)
        ));
    }

    #[test]
    fn redirect_location_is_encoded_and_relative() {
        let f = fixture();
        fs::create_dir_all(f.root.join("a b:c")).expect("mkdir");
        fs::write(f.root.join("a b:c/index.html"), "x").expect("write");
        assert_eq!(
            locate_str(&f.root, "/a%20b:c").ok(),
            Some(Located::AddSlash("./a%20b%3Ac/".into()))
        );
    }

    fn segments() -> impl Strategy<Value = String> {
        const SEGMENTS: &[&str] = &[
            "..", ".", "%2e%2e", "%252e", "a", "b", "%2f", "\\", "%00", "", "x.txt", "sub",
        ];
        prop::collection::vec(prop::sample::select(SEGMENTS), 0..8)
            .prop_map(|parts| format!("/{}", parts.join("/")))
    }

    #[test]
    fn resolver_never_leaves_root() {
        let f = fixture();
        let config = ProptestConfig::with_cases(2048);
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let served = std::cell::Cell::new(0);
        let result = runner.run(&segments(), |path| {
            let Ok(Located::File(file)) = locate_str(&f.root, &path) else {
                return Ok(());
            };
            served.set(served.get() + 1);
            let canonical = fs::canonicalize(&file).expect("served file exists");
            prop_assert!(canonical.starts_with(&f.root), "{path} -> {file:?}");
            prop_assert!(!canonical.starts_with(&f.outside), "{path} -> {file:?}");
            prop_assert_ne!(fs::read(&canonical).expect("read"), b"SECRET".to_vec());
            Ok(())
        });
        if let Err(err) = result {
            panic!("{err}");
        }
        // Guard against a generator that never reaches a real file.
        assert!(served.get() > 50, "only {} paths served", served.get());
    }

    proptest! {
        #[test]
        fn sanitize_never_panics_and_yields_plain_segments(path in any::<String>()) {
            check_plain(&path)?;
        }

        #[test]
        fn sanitize_handles_escape_soup(path in "/[%./\\\\a-f0-9]{0,24}") {
            check_plain(&path)?;
        }
    }

    fn check_plain(path: &str) -> Result<(), TestCaseError> {
        if let Ok(safe) = sanitize(path) {
            for (i, component) in safe.relative().components().enumerate() {
                let Component::Normal(name) = component else {
                    return Err(TestCaseError::fail(format!("{path}: {component:?}")));
                };
                let name = name.to_str().unwrap_or_default();
                prop_assert!(!name.contains(['\\', '\0']), "{path}");
                prop_assert!(
                    !name.starts_with('.') || (i == 0 && name == WELL_KNOWN),
                    "{path}"
                );
            }
        }
        Ok(())
    }
}
