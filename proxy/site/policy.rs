//! The caching and isolation headers a site sends when no rule says
//! otherwise.
//!
//! `serve` applies, in this order: [`cross_origin_isolate`] (when the site
//! asks for it), the site's header rules (which may override or remove
//! what isolation set), then [`cache_control`] if no rule set a
//! Cache-Control. A rule that removes Cache-Control therefore gets the
//! default back; a rule that sets it always wins.

use http::header::{HeaderMap, HeaderName, HeaderValue};

pub const NO_CACHE: &str = "no-cache";
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const ONE_HOUR: &str = "public, max-age=3600";

// `http` has no constants for these three.
const COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
const COEP: HeaderName = HeaderName::from_static("cross-origin-embedder-policy");
const CORP: HeaderName = HeaderName::from_static("cross-origin-resource-policy");
const SERVICE_WORKER_ALLOWED: HeaderName = HeaderName::from_static("service-worker-allowed");

/// Cache-Control when no rule sets one.
///
/// - HTML, service workers (file name `sw.js` or `service-worker.js`, or
///   any response carrying `Service-Worker-Allowed`) and web app manifests
///   (`.webmanifest`, `application/manifest+json`): `no-cache`, so that a
///   deploy is seen on the next load. This wins over the two rules below:
///   HTML kept for a year is a site stuck on an old version, while an asset
///   revalidated for nothing costs one round trip.
/// - A file name carrying a content hash ([`is_hashed_name`]) or a path
///   under one of the `immutable` prefixes: one year, immutable.
/// - Anything else: one hour.
///
/// An `immutable` prefix ending in `/` matches what starts with it; one
/// without (`/assets`) matches on segment boundaries: `/assets` and
/// `/assets/x`, not `/assetsx`.
pub fn cache_control(
    path: &str,
    content_type: &str,
    headers: &HeaderMap,
    immutable: &[String],
) -> &'static str {
    let file_name = path.rsplit('/').next().unwrap_or(path);
    if must_revalidate(file_name, content_type, headers) {
        NO_CACHE
    } else if is_hashed_name(file_name) || immutable.iter().any(|prefix| is_under(path, prefix)) {
        IMMUTABLE
    } else {
        ONE_HOUR
    }
}

/// Whether a file name carries a content hash, as bundlers write them:
/// `app.3f9a1c2b.js` (Parcel, webpack `[name].[contenthash]`),
/// `main.8a7b6c5d.chunk.js`, `index-BxK3_9aZ.js` (Vite/Rollup), or a name
/// that is a hash (`3f9a1c2b4d5e6f708192.png`, webpack asset modules).
///
/// The name is split on `.` and `-`; a part after the first one is a hash
/// when it is 8 or more characters of `[0-9A-Za-z_]` with letters and
/// digits mixed (at least two changes between a letter and a digit) and
/// either only lowercase hex, or upper and lower case letters. The first
/// part counts only as 16 or more lowercase hex characters.
///
/// Wrongly calling a file hashed caches it for a year under a name that may
/// be reused, so the test leans towards "no": `readme-20240101.txt` (only
/// digits, a date), `og-1200x630.png` (one letter between digits),
/// `build-ckeditor5.js` (a word and a number) and `Roboto-BoldItalic.ttf`
/// (no digit) are not hashed. The price is that some real hashes are
/// missed (a Vite hash without a digit, or with a `-` inside); those files
/// get one hour, or a year through an `immutable` prefix such as
/// `/assets/`.
pub fn is_hashed_name(file_name: &str) -> bool {
    let stem = match file_name.rsplit_once('.') {
        Some((stem, _extension)) if !stem.is_empty() => stem,
        _ => file_name,
    };
    let mut parts = stem.split(['.', '-']);
    let first = parts.next().unwrap_or("");
    (first.len() >= 16 && is_lower_hex(first) && looks_random(first)) || parts.any(is_hash)
}

/// COOP same-origin, COEP require-corp, CORP same-origin (inserted, not
/// appended): together they make the site's documents cross-origin
/// isolated (`self.crossOriginIsolated`, `SharedArrayBuffer`).
pub fn cross_origin_isolate(headers: &mut HeaderMap) {
    let same_origin = HeaderValue::from_static("same-origin");
    headers.insert(COOP, same_origin.clone());
    headers.insert(COEP, HeaderValue::from_static("require-corp"));
    headers.insert(CORP, same_origin);
}

/// HTML, service workers and manifests: what decides which version of
/// the app a browser runs.
fn must_revalidate(file_name: &str, content_type: &str, headers: &HeaderMap) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let is = |wanted: &str| essence.eq_ignore_ascii_case(wanted);
    is("text/html")
        || is("application/xhtml+xml")
        || is("application/manifest+json")
        || file_name == "sw.js"
        || file_name == "service-worker.js"
        || ends_with_ignore_case(file_name, ".webmanifest")
        || headers.contains_key(SERVICE_WORKER_ALLOWED)
}

fn is_under(path: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return false;
    }
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn is_hash(part: &str) -> bool {
    if part.len() < 8 || !looks_random(part) {
        return false;
    }
    let bytes = part.as_bytes();
    let mixed_case =
        bytes.iter().any(u8::is_ascii_uppercase) && bytes.iter().any(u8::is_ascii_lowercase);
    is_lower_hex(part) || mixed_case
}

fn is_lower_hex(part: &str) -> bool {
    part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Only `[0-9A-Za-z_]`, with letters and digits alternating at least twice
/// (`_` ignored): a word followed by a number is not random.
fn looks_random(part: &str) -> bool {
    let mut changes = 0;
    let mut previous: Option<bool> = None;
    for b in part.bytes() {
        let is_digit = match b {
            b'0'..=b'9' => true,
            b'a'..=b'z' | b'A'..=b'Z' => false,
            b'_' => continue,
            _ => return false,
        };
        if previous.is_some_and(|p| p != is_digit) {
            changes += 1;
        }
        previous = Some(is_digit);
    }
    changes >= 2
}

fn ends_with_ignore_case(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len()
        && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTML: &str = "text/html; charset=utf-8";
    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";
    const PNG: &str = "image/png";

    /// (path, content type, immutable prefixes, with Service-Worker-Allowed, expected).
    #[test]
    fn cache_control_table() {
        let assets = &["/assets/".to_owned()][..];
        let bare = &["/static".to_owned()][..];
        let none: &[String] = &[];
        let table: &[(&str, &str, &[String], bool, &str)] = &[
            ("/", HTML, none, false, NO_CACHE),
            ("/index.html", HTML, none, false, NO_CACHE),
            ("/docs/", "TEXT/HTML", none, false, NO_CACHE),
            (
                "/page.xhtml",
                "application/xhtml+xml",
                none,
                false,
                NO_CACHE,
            ),
            // HTML stays no-cache under an immutable prefix or with a hash.
            ("/assets/embed.html", HTML, assets, false, NO_CACHE),
            ("/index.3f9a1c2b.html", HTML, none, false, NO_CACHE),
            ("/sw.js", JS, none, false, NO_CACHE),
            ("/app/service-worker.js", JS, none, false, NO_CACHE),
            ("/assets/sw.js", JS, assets, false, NO_CACHE),
            ("/worker.js", JS, none, true, NO_CACHE),
            (
                "/manifest.webmanifest",
                "application/manifest+json",
                none,
                false,
                NO_CACHE,
            ),
            (
                "/site.WEBMANIFEST",
                "application/octet-stream",
                none,
                false,
                NO_CACHE,
            ),
            (
                "/manifest.json",
                "application/manifest+json",
                none,
                false,
                NO_CACHE,
            ),
            ("/app.3f9a1c2b.js", JS, none, false, IMMUTABLE),
            (
                "/static/js/main.8a7b6c5d.chunk.js",
                JS,
                none,
                false,
                IMMUTABLE,
            ),
            ("/chunk-5f3e1a9b.css", CSS, none, false, IMMUTABLE),
            ("/assets/index-BxK3_9aZ.js", JS, none, false, IMMUTABLE),
            ("/img/3f9a1c2b4d5e6f708192.png", PNG, none, false, IMMUTABLE),
            ("/assets/logo.png", PNG, assets, false, IMMUTABLE),
            (
                "/assets/deep/er/font.woff2",
                "font/woff2",
                assets,
                false,
                IMMUTABLE,
            ),
            ("/static/logo.png", PNG, bare, false, IMMUTABLE),
            ("/static", PNG, bare, false, IMMUTABLE),
            ("/staticky/logo.png", PNG, bare, false, ONE_HOUR),
            ("/assetsx/logo.png", PNG, assets, false, ONE_HOUR),
            ("/other/assets/logo.png", PNG, assets, false, ONE_HOUR),
            ("/logo.png", PNG, none, false, ONE_HOUR),
            ("/jquery-3.7.1.min.js", JS, none, false, ONE_HOUR),
            ("/favicon.ico", "image/x-icon", none, false, ONE_HOUR),
            (
                "/readme-20240101.txt",
                "text/plain; charset=utf-8",
                none,
                false,
                ONE_HOUR,
            ),
            ("/main.js", JS, none, false, ONE_HOUR),
            ("/mysw.js", JS, none, false, ONE_HOUR),
            (
                "/pkg/app_bg.wasm",
                "application/wasm",
                none,
                false,
                ONE_HOUR,
            ),
        ];
        for (path, content_type, immutable, sw_allowed, want) in table {
            let mut headers = HeaderMap::new();
            if *sw_allowed {
                headers.insert(SERVICE_WORKER_ALLOWED, HeaderValue::from_static("/"));
            }
            assert_eq!(
                cache_control(path, content_type, &headers, immutable),
                *want,
                "{path} ({content_type})"
            );
        }
    }

    #[test]
    fn hashed_names() {
        let table: &[(&str, bool)] = &[
            ("app.3f9a1c2b.js", true),
            ("chunk-5f3e1a9b.css", true),
            ("index-BxK3_9aZ.js", true),
            ("index-C9pZ0wNq.css", true),
            ("main.8a7b6c5d.chunk.js", true),
            ("app.3f9a1c2b.js.map", true),
            ("style.3f9a1c2b.min.css", true),
            ("vendors~main.2d3c4b5a.js", true),
            ("main.8a7b6c5d4e3f2a1b9c0d.js", true),
            ("3f9a1c2b4d5e6f708192.png", true),
            ("LICENSE-3f9a1c2b", true),
            ("font-Ab1cD2eF.woff2", true),
            // Not hashes: versions, dates, words, sizes.
            ("jquery-3.7.1.min.js", false),
            ("favicon.ico", false),
            ("index.html", false),
            ("readme-20240101.txt", false),
            ("backup-1700000000.tar", false),
            ("og-image-1200x630.png", false),
            ("hero-1920x1080.jpg", false),
            ("build-ckeditor5.js", false),
            ("chapter-chapter10.html", false),
            ("Roboto-BoldItalic.ttf", false),
            ("react-dom.production.min.js", false),
            ("bootstrap-datepicker.js", false),
            ("app.deadbeefcafe.js", false),
            ("polyfills-es2015.js", false),
            ("html5shiv-printshiv.js", false),
            ("html2canvas.min.js", false),
            ("3f9a1c2b.js", false),
            ("snake_case_file_v2.js", false),
            ("index-abcdefgh.js", false),
            ("", false),
            (".", false),
            // A hash in the extension place is an extension.
            ("app.3f9a1c2b", false),
        ];
        for (name, want) in table {
            assert_eq!(is_hashed_name(name), *want, "{name}");
        }
    }

    #[test]
    fn isolation_replaces_what_was_there() {
        let mut headers = HeaderMap::new();
        headers.append(COEP, HeaderValue::from_static("unsafe-none"));
        headers.append(COEP, HeaderValue::from_static("credentialless"));
        cross_origin_isolate(&mut headers);
        assert_eq!(
            headers.get_all(COEP).iter().collect::<Vec<_>>(),
            ["require-corp"]
        );
        assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
        assert_eq!(headers["cross-origin-resource-policy"], "same-origin");
        assert_eq!(headers.len(), 3);
    }
}
