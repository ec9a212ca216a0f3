//! Content-Type by file extension.
//!
//! Our own table rather than `mime_guess`: that crate maps `.mjs` to
//! `application/javascript` and adds no charset, and SPEC wants
//! `text/javascript; charset=utf-8` (see CRATES.md).

use std::cmp::Ordering;
use std::path::Path;

/// What a file with an unknown or missing extension is served as.
pub const DEFAULT: &str = "application/octet-stream";

/// Lowercase extension -> Content-Type, sorted by extension so that lookup
/// is a binary search (a test keeps it sorted).
const TABLE: &[(&str, &str)] = &[
    ("avif", "image/avif"),
    ("css", "text/css; charset=utf-8"),
    ("gif", "image/gif"),
    ("gz", "application/gzip"),
    ("htm", "text/html; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("ico", "image/x-icon"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("ogg", "audio/ogg"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("svg", "image/svg+xml"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xml", "application/xml"),
    ("zip", "application/zip"),
];

/// The Content-Type for `path`, from its extension (case-insensitive).
pub fn for_path(path: &Path) -> &'static str {
    path.extension()
        .and_then(|ext| ext.to_str())
        .map_or(DEFAULT, for_extension)
}

/// The Content-Type for an extension given without the dot (case-insensitive).
pub fn for_extension(ext: &str) -> &'static str {
    TABLE
        .binary_search_by(|(key, _)| cmp_lowercase(key, ext))
        .map_or(DEFAULT, |i| TABLE[i].1)
}

/// Compares a lowercase table key with `ext` as if `ext` were lowercased,
/// without allocating.
fn cmp_lowercase(key: &str, ext: &str) -> Ordering {
    key.bytes().cmp(ext.bytes().map(|b| b.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_lowercase() {
        for pair in TABLE.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (ext, _) in TABLE {
            assert_eq!(*ext, ext.to_ascii_lowercase());
        }
    }

    #[test]
    fn spot_checks() {
        let cases = [
            ("index.html", "text/html; charset=utf-8"),
            ("INDEX.HTM", "text/html; charset=utf-8"),
            ("app.3f9a1c2b.js", "text/javascript; charset=utf-8"),
            ("mod.MJS", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("data.json", "application/json"),
            ("app.js.map", "application/json"),
            ("manifest.webmanifest", "application/manifest+json"),
            ("module.wasm", "application/wasm"),
            ("logo.svg", "image/svg+xml"),
            ("photo.JPEG", "image/jpeg"),
            ("favicon.ico", "image/x-icon"),
            ("robots.txt", "text/plain; charset=utf-8"),
            ("font.woff2", "font/woff2"),
            ("archive.tar.gz", "application/gzip"),
            ("README", DEFAULT),
            ("file.unknownext", DEFAULT),
            (".hidden", DEFAULT),
            ("dir.d/file", DEFAULT),
        ];
        for (path, want) in cases {
            assert_eq!(for_path(Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn non_utf8_extension_is_default() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(OsStr::from_bytes(b"file.\xff"));
        assert_eq!(for_path(path), DEFAULT);
    }
}
