//! SPEC "Static sites and PWAs" and "Compression", end to end over real
//! HTTP: MIME types, conditional and range requests, representations
//! (precompressed sidecars and on-the-fly compression), the default cache
//! policy, header rules and `_headers`, cross-origin isolation, SPA
//! fallback, cache invalidation, large files, the bytes-by-encoding metric
//! and path safety.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use async_compression::Level;
use async_compression::tokio::bufread::{
    BrotliDecoder, BrotliEncoder, GzipDecoder, GzipEncoder, ZstdDecoder,
};
use tokio::io::AsyncReadExt;

use support::{Reply, config, eventually, get, request, send, weir};

/// A config with one catch-all route to site `www` (root `www/`); `site`
/// is appended to `[sites.www]`, `extra` after it.
fn site_config(site: &str, extra: &str) -> String {
    config(&format!(
        "[[routes]]\npath = \"/\"\nbackends = [{{ site = \"www\" }}]\n\n[sites.www]\nroot = \"www\"\n{site}\n{extra}"
    ))
}

async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, request("GET", path, headers)).await
}

async fn decode(coding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let result = match coding {
        "br" => BrotliDecoder::new(data).read_to_end(&mut out).await,
        "gzip" => GzipDecoder::new(data).read_to_end(&mut out).await,
        "zstd" => ZstdDecoder::new(data).read_to_end(&mut out).await,
        other => panic!("no decoder for {other:?}"),
    };
    if let Err(e) = result {
        panic!("{coding} body does not decode: {e}");
    }
    out
}

/// Brotli at the best quality: weir compresses on the fly at 4–5, so a
/// body equal to this one came from the sidecar.
async fn brotli_sidecar(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    BrotliEncoder::with_quality(data, Level::Best)
        .read_to_end(&mut out)
        .await
        .expect("brotli encode");
    out
}

/// Gzip with a non-zero MTIME in its header, so that the sidecar can never
/// be mistaken for weir's own on-the-fly output (decoders ignore MTIME).
async fn gzip_sidecar(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzipEncoder::with_quality(data, Level::Best)
        .read_to_end(&mut out)
        .await
        .expect("gzip encode");
    assert_eq!(&out[..3], &[0x1f, 0x8b, 8], "gzip header");
    out[4..8].copy_from_slice(&0x5f5e_1000u32.to_le_bytes());
    out
}

/// A few KiB of JavaScript.
fn javascript() -> String {
    (0..150)
        .map(|i| format!("export function f{i}(a, b) {{ return a * {i} + b; }}\n"))
        .collect()
}

/// At least `len` bytes of JSON.
fn json(len: usize) -> String {
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < len {
        out.push_str(&format!(
            "{{\"id\":{i},\"name\":\"item number {i}\",\"tags\":[\"alpha\",\"beta\"],\"ok\":true}},"
        ));
        i += 1;
    }
    out.push_str("{}]");
    out
}

/// `len` bytes nothing can compress (xorshift64).
fn random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The status code of a raw HTTP/1.1 response.
fn raw_status(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------- MIME

#[tokio::test]
async fn mime_types_by_extension() {
    let w = weir()
        .file("www/index.html", "<!doctype html><p>hi</p>")
        .file("www/style.css", "body { color: red }")
        .file("www/app.js", "console.log(1)")
        .file("www/mod.mjs", "export const x = 1;")
        .file("www/mod.wasm", b"\0asm\x01\0\0\0")
        .file("www/app.webmanifest", "{\"name\":\"app\"}")
        .file(
            "www/logo.svg",
            "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        )
        .file("www/data.json", "{\"a\":1}")
        .file("www/blob.qqqzz", "???")
        .file("www/README", "no extension")
        .start(&site_config("", ""))
        .await;
    let addr = w.addr("web");
    let cases = [
        ("/index.html", "text/html; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/mod.mjs", "text/javascript; charset=utf-8"),
        ("/mod.wasm", "application/wasm"),
        ("/app.webmanifest", "application/manifest+json"),
        ("/logo.svg", "image/svg+xml"),
        ("/data.json", "application/json"),
        ("/blob.qqqzz", "application/octet-stream"),
        ("/README", "application/octet-stream"),
    ];
    for (path, want) in cases {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 200, "GET {path}");
        assert_eq!(
            reply.header("content-type"),
            Some(want),
            "Content-Type of {path}"
        );
    }
}

// ---------------------------------------------------------------- conditionals

const DIGITS: &str = "0123456789abcdef";

async fn digits_site() -> support::Weir {
    weir()
        .file("www/page.txt", DIGITS)
        .start(&site_config("", ""))
        .await
}

#[tokio::test]
async fn etag_is_strong_and_if_none_match_gives_304() {
    let w = digits_site().await;
    let addr = w.addr("web");
    let first = get(addr, "/page.txt").await;
    assert_eq!(first.status, 200, "plain GET");
    assert_eq!(first.text(), DIGITS, "plain GET body");
    let etag = first.header("etag").expect("ETag on a file").to_owned();
    assert!(!etag.starts_with("W/"), "ETag {etag} must be strong");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "ETag {etag} is a quoted opaque tag"
    );
    assert!(first.header("last-modified").is_some(), "Last-Modified set");

    let again = get_with(addr, "/page.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304, "If-None-Match with the current ETag");
    assert!(again.body.is_empty(), "304 has no body");
    assert_eq!(
        again.header("etag"),
        Some(etag.as_str()),
        "304 repeats the ETag"
    );

    let listed = format!("\"nope\", {etag}");
    let again = get_with(addr, "/page.txt", &[("if-none-match", &listed)]).await;
    assert_eq!(again.status, 304, "If-None-Match with a list containing it");

    let star = get_with(addr, "/page.txt", &[("if-none-match", "*")]).await;
    assert_eq!(star.status, 304, "If-None-Match: *");
    assert!(star.body.is_empty(), "304 (star) has no body");

    let other = get_with(addr, "/page.txt", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(other.status, 200, "If-None-Match with another ETag");
    assert_eq!(other.text(), DIGITS, "full body for a non-matching ETag");
}

#[tokio::test]
async fn if_modified_since() {
    let w = digits_site().await;
    let addr = w.addr("web");
    let first = get(addr, "/page.txt").await;
    let modified = first
        .header("last-modified")
        .expect("Last-Modified on a file")
        .to_owned();
    assert!(
        modified.ends_with(" GMT"),
        "Last-Modified {modified:?} is an HTTP date"
    );

    let same = get_with(addr, "/page.txt", &[("if-modified-since", &modified)]).await;
    assert_eq!(same.status, 304, "If-Modified-Since = Last-Modified");
    assert!(same.body.is_empty(), "304 has no body");

    let old = get_with(
        addr,
        "/page.txt",
        &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
    )
    .await;
    assert_eq!(old.status, 200, "If-Modified-Since an older date");
    assert_eq!(old.text(), DIGITS, "full body after an older date");
}

#[tokio::test]
async fn ranges() {
    let w = digits_site().await;
    let addr = w.addr("web");
    let len = DIGITS.len();

    let full = get(addr, "/page.txt").await;
    assert_eq!(
        full.header("accept-ranges"),
        Some("bytes"),
        "Accept-Ranges: bytes"
    );

    let part = get_with(addr, "/page.txt", &[("range", "bytes=2-5")]).await;
    assert_eq!(part.status, 206, "Range bytes=2-5");
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 2-5/{len}").as_str()),
        "Content-Range of bytes=2-5"
    );
    assert_eq!(part.text(), "2345", "bytes 2..=5");
    assert_eq!(part.header("content-length"), Some("4"), "206 length");

    let suffix = get_with(addr, "/page.txt", &[("range", "bytes=-3")]).await;
    assert_eq!(suffix.status, 206, "Range bytes=-3");
    assert_eq!(
        suffix.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 3, len - 1).as_str()),
        "Content-Range of a suffix range"
    );
    assert_eq!(suffix.text(), "def", "the last 3 bytes");

    let open = get_with(addr, "/page.txt", &[("range", "bytes=10-")]).await;
    assert_eq!(open.status, 206, "Range bytes=10-");
    assert_eq!(open.text(), "abcdef", "open-ended range");

    let beyond = get_with(addr, "/page.txt", &[("range", "bytes=999999-")]).await;
    assert_eq!(beyond.status, 416, "Range past the end");
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{len}").as_str()),
        "416 names the length"
    );

    let etag = full.header("etag").expect("ETag").to_owned();
    let stale = get_with(
        addr,
        "/page.txt",
        &[("range", "bytes=2-5"), ("if-range", "\"stale\"")],
    )
    .await;
    assert_eq!(stale.status, 200, "If-Range with a stale ETag");
    assert_eq!(stale.text(), DIGITS, "full body after a stale If-Range");

    let current = get_with(
        addr,
        "/page.txt",
        &[("range", "bytes=2-5"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(current.status, 206, "If-Range with the current ETag");
    assert_eq!(current.text(), "2345", "range after a current If-Range");
}

#[tokio::test]
async fn head_has_the_headers_of_get_and_no_body() {
    let w = digits_site().await;
    let addr = w.addr("web");
    let got = get(addr, "/page.txt").await;
    let head = send(addr, request("HEAD", "/page.txt", &[])).await;
    assert_eq!(head.status, 200, "HEAD status");
    assert!(head.body.is_empty(), "HEAD has no body");
    for name in [
        "content-type",
        "content-length",
        "etag",
        "last-modified",
        "cache-control",
        "accept-ranges",
    ] {
        assert!(got.header(name).is_some(), "GET has {name}");
        assert_eq!(head.header(name), got.header(name), "HEAD {name} = GET's");
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let w = digits_site().await;
    let addr = w.addr("web");
    for method in ["POST", "PUT", "DELETE"] {
        let reply = send(addr, request(method, "/page.txt", &[])).await;
        assert_eq!(reply.status, 405, "{method} on a site");
        let allow = reply.header("allow").unwrap_or_default();
        assert!(
            allow.contains("GET") && allow.contains("HEAD"),
            "{method}: Allow {allow:?} names GET and HEAD"
        );
    }
}

// ---------------------------------------------------------------- representations

#[tokio::test]
async fn precompressed_sidecars_are_negotiated() {
    let js = javascript();
    assert!(js.len() > 4096, "a few KiB of JS");
    let br = brotli_sidecar(js.as_bytes()).await;
    let gz = gzip_sidecar(js.as_bytes()).await;
    let w = weir()
        .file("www/app.js", &js)
        .file("www/app.js.br", &br)
        .file("www/app.js.gz", &gz)
        .start(&site_config("precompressed = [\"br\", \"gzip\"]", ""))
        .await;
    let addr = w.addr("web");

    let as_br = get_with(addr, "/app.js", &[("accept-encoding", "br")]).await;
    assert_eq!(as_br.status, 200, "br request");
    assert_eq!(as_br.header("content-encoding"), Some("br"), "br chosen");
    assert_eq!(
        as_br.body.as_ref(),
        br.as_slice(),
        "body is the .br sidecar"
    );
    assert_eq!(
        as_br.header("content-type"),
        Some("text/javascript; charset=utf-8"),
        "type of the file, not of the sidecar"
    );
    assert_eq!(
        as_br.header("content-length"),
        Some(br.len().to_string().as_str()),
        "length of the sidecar"
    );

    let as_gz = get_with(addr, "/app.js", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        as_gz.header("content-encoding"),
        Some("gzip"),
        "gzip chosen"
    );
    assert_eq!(
        as_gz.body.as_ref(),
        gz.as_slice(),
        "body is the .gz sidecar"
    );

    let plain = get(addr, "/app.js").await;
    assert_eq!(plain.header("content-encoding"), None, "no Accept-Encoding");
    assert_eq!(plain.text(), js, "identity body");

    let weighted = get_with(
        addr,
        "/app.js",
        &[("accept-encoding", "br;q=0.5, gzip;q=1")],
    )
    .await;
    assert_eq!(
        weighted.header("content-encoding"),
        Some("gzip"),
        "the client's higher q-value wins"
    );
    assert_eq!(
        weighted.body.as_ref(),
        gz.as_slice(),
        "q-value: .gz sidecar"
    );

    let refused = get_with(addr, "/app.js", &[("accept-encoding", "br;q=0, gzip;q=0")]).await;
    assert_eq!(refused.header("content-encoding"), None, "q=0 refuses");

    let etags = [&plain, &as_br, &as_gz].map(|r| r.header("etag").expect("ETag").to_owned());
    for etag in &etags {
        assert!(!etag.starts_with("W/"), "ETag {etag} is strong");
    }
    assert_ne!(etags[0], etags[1], "identity and br ETags differ");
    assert_ne!(etags[0], etags[2], "identity and gzip ETags differ");
    assert_ne!(etags[1], etags[2], "br and gzip ETags differ");

    for (name, reply) in [
        ("identity", &plain),
        ("br", &as_br),
        ("gzip", &as_gz),
        ("q-values", &weighted),
    ] {
        let vary = reply
            .header("vary")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(
            vary.contains("accept-encoding"),
            "{name}: Vary {vary:?} names Accept-Encoding"
        );
    }

    // Conditionals are per representation.
    let br_again = get_with(
        addr,
        "/app.js",
        &[("accept-encoding", "br"), ("if-none-match", &etags[1])],
    )
    .await;
    assert_eq!(br_again.status, 304, "br ETag revalidates the br variant");
    let vary = br_again
        .header("vary")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(vary.contains("accept-encoding"), "304 keeps Vary: {vary:?}");
    let crossed = get_with(
        addr,
        "/app.js",
        &[("accept-encoding", "br"), ("if-none-match", &etags[0])],
    )
    .await;
    assert_eq!(
        crossed.status, 200,
        "identity ETag does not match the br variant"
    );

    // A range is served from identity whatever the client accepts.
    let range = get_with(
        addr,
        "/app.js",
        &[("accept-encoding", "br"), ("range", "bytes=0-99")],
    )
    .await;
    assert_eq!(range.status, 206, "range with Accept-Encoding: br");
    assert_eq!(range.header("content-encoding"), None, "range is identity");
    assert_eq!(range.body.as_ref(), &js.as_bytes()[..100], "range bytes");

    // zstd has no sidecar here: compressed on the fly by the defaults.
    let zstd = get_with(addr, "/app.js", &[("accept-encoding", "zstd")]).await;
    assert_eq!(
        zstd.header("content-encoding"),
        Some("zstd"),
        "zstd on the fly (default [compression])"
    );
    assert_eq!(
        decode("zstd", &zstd.body).await,
        js.as_bytes(),
        "zstd decodes"
    );
}

// ---------------------------------------------------------------- on the fly

#[tokio::test]
async fn compresses_on_the_fly() {
    let data = json(20 * 1024);
    let compression =
        "[compression]\nalgorithms = [\"br\", \"zstd\", \"gzip\"]\nmin_size = \"1KiB\"\n";
    let rules = "[[sites.www.headers]]\npath = \"/nt/*\"\nset = { \"Cache-Control\" = \"public, max-age=60, no-transform\" }\n";
    let w = weir()
        .file("www/data.json", &data)
        .file("www/nt/data.json", &data)
        .file(
            "www/small.css",
            &"a{color:red}".repeat(17).as_bytes()[..200],
        )
        .file("www/photo.png", vec![0u8; 20 * 1024])
        .start(&site_config(rules, compression))
        .await;
    let addr = w.addr("web");

    for coding in ["br", "zstd", "gzip"] {
        let reply = get_with(addr, "/data.json", &[("accept-encoding", coding)]).await;
        assert_eq!(reply.status, 200, "{coding}: status");
        assert_eq!(
            reply.header("content-encoding"),
            Some(coding),
            "{coding}: compressed on the fly"
        );
        assert!(
            reply.body.len() < data.len(),
            "{coding}: {} bytes is smaller than {}",
            reply.body.len(),
            data.len()
        );
        assert_eq!(
            decode(coding, &reply.body).await,
            data.as_bytes(),
            "{coding}: decodes to the original"
        );
        let vary = reply
            .header("vary")
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert!(vary.contains("accept-encoding"), "{coding}: Vary {vary:?}");
    }

    let preferred = get_with(addr, "/data.json", &[("accept-encoding", "gzip, zstd, br")]).await;
    assert_eq!(
        preferred.header("content-encoding"),
        Some("br"),
        "equal q-values: the server's preference (br first)"
    );
    let star = get_with(addr, "/data.json", &[("accept-encoding", "*")]).await;
    assert_eq!(
        star.header("content-encoding"),
        Some("br"),
        "`*`: the server's first choice"
    );

    let small = get_with(addr, "/small.css", &[("accept-encoding", "br, gzip, zstd")]).await;
    assert_eq!(small.status, 200, "small.css status");
    assert_eq!(small.body.len(), 200, "small.css is 200 bytes");
    assert_eq!(
        small.header("content-encoding"),
        None,
        "below min_size: identity"
    );

    let png = get_with(addr, "/photo.png", &[("accept-encoding", "br, gzip, zstd")]).await;
    assert_eq!(png.status, 200, "photo.png status");
    assert_eq!(png.header("content-encoding"), None, "images stay identity");
    assert_eq!(png.body.len(), 20 * 1024, "photo.png whole");

    let nt = get_with(
        addr,
        "/nt/data.json",
        &[("accept-encoding", "br, gzip, zstd")],
    )
    .await;
    assert_eq!(nt.status, 200, "no-transform status");
    assert!(
        nt.header("cache-control")
            .unwrap_or_default()
            .contains("no-transform"),
        "the rule set no-transform"
    );
    assert_eq!(
        nt.header("content-encoding"),
        None,
        "Cache-Control: no-transform is never compressed"
    );
    assert_eq!(nt.text(), data, "no-transform body untouched");
}

// ---------------------------------------------------------------- cache policy

#[tokio::test]
async fn default_cache_policy() {
    let w = weir()
        .file("www/index.html", "<!doctype html>")
        .file("www/about.html", "<!doctype html>")
        .file("www/sw.js", "self.addEventListener('fetch', () => {})")
        .file("www/service-worker.js", "self.skipWaiting()")
        .file("www/app.webmanifest", "{}")
        .file("www/assets/app.3f9a1c2b.js", "console.log('hashed')")
        .file("www/static/x.js", "console.log('static')")
        .file("www/plain.js", "console.log('plain')")
        .file("www/plain.css", "body{}")
        .start(&site_config("immutable = [\"/static/\"]", ""))
        .await;
    let addr = w.addr("web");
    const YEAR: &str = "public, max-age=31536000, immutable";
    const HOUR: &str = "public, max-age=3600";
    let cases = [
        ("/", "no-cache"),
        ("/index.html", "no-cache"),
        ("/about.html", "no-cache"),
        ("/sw.js", "no-cache"),
        ("/service-worker.js", "no-cache"),
        ("/app.webmanifest", "no-cache"),
        ("/assets/app.3f9a1c2b.js", YEAR),
        ("/static/x.js", YEAR),
        ("/plain.js", HOUR),
        ("/plain.css", HOUR),
    ];
    for (path, want) in cases {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 200, "GET {path}");
        assert_eq!(
            reply.header("cache-control"),
            Some(want),
            "Cache-Control of {path}"
        );
    }
}

// ---------------------------------------------------------------- header rules

#[tokio::test]
async fn header_rules_and_headers_file() {
    let rules = r#"headers_file = "_headers"
[[sites.www.headers]]
path = "/assets/*"
set = { "X-Asset" = "yes", "X-Override" = "config", "X-Remove-Me" = "present" }
[[sites.www.headers]]
path = "/*.wasm"
set = { "Cross-Origin-Embedder-Policy" = "require-corp" }
"#;
    let headers_file = "# weir _headers\n\
        /assets/*\n\
        \x20 # an indented comment\n\
        \x20 X-Override: file\n\
        \x20 X-Frame-Options: DENY\n\
        \x20 ! X-Remove-Me\n\
        \n\
        # another comment\n\
        /only-file.js\n\
        \x20 X-File-Only: 1\n";
    let w = weir()
        .file("_headers", headers_file)
        .file("www/assets/app.js", "console.log('a')")
        .file("www/mod.wasm", b"\0asm\x01\0\0\0")
        .file("www/only-file.js", "1")
        .file("www/other.js", "2")
        .start(&site_config(rules, ""))
        .await;
    let addr = w.addr("web");

    let asset = get(addr, "/assets/app.js").await;
    assert_eq!(asset.status, 200, "asset status");
    assert_eq!(
        asset.header("x-asset"),
        Some("yes"),
        "config rule sets X-Asset"
    );
    assert_eq!(
        asset.header("x-override"),
        Some("file"),
        "the later _headers rule overrides the config rule"
    );
    assert_eq!(
        asset.header("x-frame-options"),
        Some("DENY"),
        "_headers adds X-Frame-Options"
    );
    assert_eq!(
        asset.header("x-remove-me"),
        None,
        "`! X-Remove-Me` removes what the config rule set"
    );

    let wasm = get(addr, "/mod.wasm").await;
    assert_eq!(
        wasm.header("cross-origin-embedder-policy"),
        Some("require-corp"),
        "`/*.wasm` rule sets COEP"
    );
    assert_eq!(
        wasm.header("x-asset"),
        None,
        "`/assets/*` does not match wasm"
    );

    let only = get(addr, "/only-file.js").await;
    assert_eq!(
        only.header("x-file-only"),
        Some("1"),
        "second _headers block"
    );

    let other = get(addr, "/other.js").await;
    assert_eq!(other.status, 200, "other.js status");
    for name in [
        "x-asset",
        "x-override",
        "x-frame-options",
        "x-file-only",
        "cross-origin-embedder-policy",
    ] {
        assert_eq!(
            other.header(name),
            None,
            "no rule matches /other.js: {name}"
        );
    }
}

#[tokio::test]
async fn headers_file_in_the_root_is_not_served() {
    let rules = "/*.js\n  X-Rule: applied\n";
    let br = brotli_sidecar(rules.as_bytes()).await;
    let gz = gzip_sidecar(rules.as_bytes()).await;
    let w = weir()
        .file("www/_headers", rules)
        .file("www/_headers.br", &br)
        .file("www/_headers.gz", &gz)
        .file("www/app.js", "console.log(1)")
        .start(&site_config(
            "headers_file = \"_headers\"\nprecompressed = [\"br\", \"gzip\"]",
            "",
        ))
        .await;
    let addr = w.addr("web");

    let js = get(addr, "/app.js").await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("x-rule"), Some("applied"), "the rules apply");

    let compressed = [("accept-encoding", "br, gzip")];
    for (method, path, headers) in [
        ("GET", "/_headers", &[][..]),
        ("GET", "/_headers?x", &[]),
        ("HEAD", "/_headers", &[]),
        ("GET", "/%5Fheaders", &[]),
        ("GET", "/%5fheaders", &[]),
        ("GET", "//_headers", &[]),
        ("GET", "/_headers", &compressed),
        ("HEAD", "/_headers", &compressed),
        ("GET", "/_headers.br", &[]),
        ("GET", "/_headers.gz", &[]),
    ] {
        let reply = send(addr, request(method, path, headers)).await;
        assert_eq!(reply.status, 404, "{method} {path} {headers:?}");
        assert_eq!(
            reply.header("weir-error"),
            Some("not-found"),
            "{method} {path}"
        );
        assert!(
            !reply.text().contains("X-Rule") && reply.body != br && reply.body != gz,
            "{method} {path} {headers:?}: the rules leaked"
        );
    }
}

// ---------------------------------------------------------------- isolation

#[tokio::test]
async fn cross_origin_isolated_headers() {
    let w = weir()
        .file("www/index.html", "<!doctype html>")
        .file("www/app.js", "console.log(1)")
        .file("www/mod.wasm", b"\0asm\x01\0\0\0")
        .start(&site_config("cross_origin_isolated = true", ""))
        .await;
    let addr = w.addr("web");
    for path in ["/", "/index.html", "/app.js", "/mod.wasm"] {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 200, "GET {path}");
        assert_eq!(
            reply.header("cross-origin-opener-policy"),
            Some("same-origin"),
            "COOP on {path}"
        );
        assert_eq!(
            reply.header("cross-origin-embedder-policy"),
            Some("require-corp"),
            "COEP on {path}"
        );
        assert_eq!(
            reply.header("cross-origin-resource-policy"),
            Some("same-origin"),
            "CORP on {path}"
        );
    }
}

// ---------------------------------------------------------------- SPA

#[tokio::test]
async fn spa_fallback() {
    let index = "<!doctype html><div id=app></div>";
    let w = weir()
        .file("www/index.html", index)
        .file("www/app.js", "console.log(1)")
        .start(&site_config("spa = true", ""))
        .await;
    let addr = w.addr("web");
    let html = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    let deep = get_with(addr, "/deep/link", &[("accept", html)]).await;
    assert_eq!(deep.status, 200, "deep link gets the app shell");
    assert_eq!(deep.text(), index, "deep link body is index.html");
    assert_eq!(
        deep.header("content-type"),
        Some("text/html; charset=utf-8"),
        "deep link is HTML"
    );

    let missing = get_with(addr, "/missing.js", &[("accept", "*/*")]).await;
    assert_eq!(missing.status, 404, "an asset miss stays 404");
    let missing = get_with(addr, "/missing.js", &[("accept", html)]).await;
    assert_eq!(
        missing.status, 404,
        "an asset miss stays 404 even for text/html"
    );
    assert_ne!(missing.text(), index, "never the shell for an asset");

    let real = get_with(addr, "/app.js", &[("accept", html)]).await;
    assert_eq!(real.text(), "console.log(1)", "real files still win");
}

// ---------------------------------------------------------------- invalidation

#[tokio::test]
async fn changed_file_is_served_fresh() {
    let w = weir()
        .file("www/live.txt", "one")
        .start(&site_config("", ""))
        .await;
    let addr = w.addr("web");
    let first = get(addr, "/live.txt").await;
    assert_eq!(first.text(), "one", "first version");
    let old = first.header("etag").expect("ETag").to_owned();
    // Cached now; a second hit comes from memory.
    assert_eq!(get(addr, "/live.txt").await.text(), "one", "cached version");

    std::fs::write(w.path("www/live.txt"), "two, longer").expect("overwrite");
    let fresh = eventually(Duration::from_secs(5), || async {
        get(addr, "/live.txt").await.text() == "two, longer"
    })
    .await;
    assert!(fresh, "the new content is served within 5 s");
    let second = get(addr, "/live.txt").await;
    assert_eq!(second.text(), "two, longer", "still the new version");
    assert_eq!(second.header("content-length"), Some("11"), "new length");
    let new = second.header("etag").expect("ETag").to_owned();
    assert_ne!(old, new, "a changed file has a new ETag");
}

// ---------------------------------------------------------------- large files

#[tokio::test]
async fn large_files_stream() {
    const LEN: usize = 3 * 1024 * 1024;
    let random = random_bytes(LEN);
    let mut text = String::with_capacity(LEN + 100);
    let mut i = 0;
    while text.len() < LEN {
        text.push_str(&format!(
            "line {i}: the quick brown fox jumps over the lazy dog\n"
        ));
        i += 1;
    }
    text.truncate(LEN);
    let w = weir()
        .file("www/blob.bin", &random)
        .file("www/big.txt", &text)
        .start(&site_config("", ""))
        .await;
    let addr = w.addr("web");

    let full = get(addr, "/blob.bin").await;
    assert_eq!(full.status, 200, "large file status");
    assert_eq!(
        full.header("content-length"),
        Some(LEN.to_string().as_str()),
        "large file Content-Length"
    );
    assert!(
        full.body.len() == LEN,
        "large file length {}",
        full.body.len()
    );
    assert!(full.body.as_ref() == random.as_slice(), "large file bytes");
    assert!(full.header("etag").is_some(), "large file has an ETag");

    let (start, end) = (1_500_000usize, 1_500_999usize);
    let range = format!("bytes={start}-{end}");
    let part = get_with(addr, "/blob.bin", &[("range", &range)]).await;
    assert_eq!(part.status, 206, "range of a large file");
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes {start}-{end}/{LEN}").as_str()),
        "Content-Range of a large file"
    );
    assert!(
        part.body.as_ref() == &random[start..=end],
        "range bytes of a large file"
    );

    let gz = get_with(addr, "/big.txt", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.status, 200, "large text status");
    assert_eq!(
        gz.header("content-encoding"),
        Some("gzip"),
        "large text compressed on the fly"
    );
    assert_eq!(
        gz.header("content-length"),
        None,
        "streamed compression has no Content-Length"
    );
    assert!(gz.body.len() < LEN / 4, "gzip shrank repetitive text");
    let decoded = decode("gzip", &gz.body).await;
    assert!(decoded.len() == LEN, "decoded length {}", decoded.len());
    assert!(
        decoded == text.as_bytes(),
        "gzip stream decodes to the original"
    );
}

/// Splits raw HTTP/1.1 responses that each carry a Content-Length into
/// (head, body) pairs.
fn split_responses(mut raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
        let body_at = end + 4;
        assert!(raw.len() >= body_at + len, "body of {len} bytes cut short");
        out.push((head, raw[body_at..body_at + len].to_vec()));
        raw = &raw[body_at + len..];
    }
    assert!(
        raw.is_empty(),
        "{} stray bytes after the responses",
        raw.len()
    );
    out
}

/// Writes `request` on a new connection and reads until the server closes.
async fn raw_exchange(addr: SocketAddr, request: &str) -> Vec<u8> {
    let (raw, closed) = support::raw_bytes(addr, request.as_bytes(), Duration::from_secs(10)).await;
    assert!(closed, "the server ends the exchange in time");
    raw
}

/// Cached files above 16 KiB go out with sendfile(2) on plain HTTP/1.1:
/// whole, as a range, as a sidecar, pipelined on one connection, and the
/// same bytes over HTTP/2. A file cut short in place after it was cached
/// never yields a complete-looking wrong body, and the server goes on.
#[tokio::test]
async fn cached_files_sent_by_the_kernel() {
    const LEN: usize = 200 * 1024;
    let random = random_bytes(LEN);
    // Hex of random bytes: text that brotli halves, not more.
    let hex: String = random_bytes(60 * 1024)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let js = format!("{}const data = \"{hex}\";\n", javascript());
    let br = brotli_sidecar(js.as_bytes()).await;
    assert!(br.len() > 16 * 1024, "sidecar large enough: {}", br.len());
    let w = weir()
        .file("www/blob.bin", &random)
        .file("www/app.js", &js)
        .file("www/app.js.br", &br)
        .start(&site_config("precompressed = [\"br\"]", ""))
        .await;
    let addr = w.addr("web");
    // Loaded into the cache by the first request; the rest are hits.
    assert!(
        get(addr, "/blob.bin").await.body.as_ref() == random.as_slice(),
        "first load"
    );
    assert_eq!(
        get_with(addr, "/app.js", &[("accept-encoding", "br")])
            .await
            .status,
        200
    );

    let pipelined = "GET /blob.bin HTTP/1.1\r\nhost: a\r\n\r\n\
        GET /blob.bin HTTP/1.1\r\nhost: a\r\nrange: bytes=70000-150000\r\n\r\n\
        GET /app.js HTTP/1.1\r\nhost: a\r\naccept-encoding: br\r\n\r\n\
        GET /blob.bin HTTP/1.1\r\nhost: a\r\nrange: bytes=-5\r\nconnection: close\r\n\r\n";
    let raw = raw_exchange(addr, pipelined).await;
    let responses = split_responses(&raw);
    assert_eq!(responses.len(), 4, "four responses on one connection");
    assert!(
        responses[0].0.starts_with("HTTP/1.1 200"),
        "{}",
        responses[0].0
    );
    assert!(responses[0].1 == random, "whole file");
    assert!(
        responses[1].0.starts_with("HTTP/1.1 206"),
        "{}",
        responses[1].0
    );
    assert!(
        responses[1].1 == random[70000..=150000],
        "range from the middle"
    );
    assert!(
        responses[2].0.contains("content-encoding: br"),
        "{}",
        responses[2].0
    );
    assert!(responses[2].1 == br, "the sidecar's bytes");
    assert!(responses[3].1 == random[LEN - 5..], "suffix range");

    let h2 = support::send_h2(addr, request("GET", "/blob.bin", &[])).await;
    assert!(
        h2.body.as_ref() == random.as_slice(),
        "the same bytes over HTTP/2"
    );

    // Cut short in place: until the cache notices, a response may end
    // early (the connection closes), but never passes as complete.
    std::fs::OpenOptions::new()
        .write(true)
        .open(w.path("www/blob.bin"))
        .and_then(|f| f.set_len(1000))
        .expect("truncate");
    let raw = raw_exchange(
        addr,
        "GET /blob.bin HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let body = &raw[end + 4..];
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    if head.contains(&format!("content-length: {LEN}")) && body.len() == LEN {
        assert!(
            body == random.as_slice(),
            "a complete body is the cached one"
        );
    } else if body.len() == 1000 {
        assert!(body == &random[..1000], "a complete body is the new one");
    } else {
        assert!(body.len() < LEN, "a cut response is shorter than announced");
    }
    let fresh = eventually(Duration::from_secs(5), || async {
        let raw = raw_exchange(
            addr,
            "GET /blob.bin HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await;
        raw.starts_with(b"HTTP/1.1 200") && raw.ends_with(&random[990..1000]) && raw.len() < 2000
    })
    .await;
    assert!(fresh, "the truncated file is served within 5 s");
}

// ---------------------------------------------------------------- metrics

#[tokio::test]
async fn bytes_by_encoding_metric() {
    let w = weir()
        .file("www/data.json", json(20 * 1024))
        .start(&site_config("", ""))
        .await;
    let addr = w.addr("web");
    let reply = get_with(addr, "/data.json", &[("accept-encoding", "br")]).await;
    assert_eq!(reply.header("content-encoding"), Some("br"), "br response");

    let metric = "weir_response_bytes_total{encoding=\"br\"}";
    let counted = eventually(Duration::from_secs(5), || async {
        let text = get(w.admin, "/metrics").await.text();
        text.lines().any(|line| {
            line.strip_prefix(metric)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<f64>().ok())
                .is_some_and(|value| value > 0.0)
        })
    })
    .await;
    let text = get(w.admin, "/metrics").await.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("weir_response_bytes"))
        .collect();
    assert!(counted, "{metric} > 0 after a br response; saw {lines:?}");
}

// ---------------------------------------------------------------- safety

#[tokio::test]
async fn paths_never_escape_the_root() {
    let secret = "TOP-SECRET-OUTSIDE-ROOT";
    let dotenv = "DOTENV-SECRET=hunter2";
    let w = weir()
        .file("secret.txt", secret)
        .file("www/index.html", "<!doctype html>")
        .file("www/sub/page.txt", "page")
        .file("www/.env", dotenv)
        .start(&site_config("", ""))
        .await;
    let addr = w.addr("web");
    let leaked =
        |text: &str| text.contains(secret) || text.contains(dotenv) || text.contains("root:");

    let paths = [
        "/..%2f..%2fetc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
        "/..%2fsecret.txt",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/%252e%252e/secret.txt",
        "/..%5csecret.txt",
        "/..%255csecret.txt",
        "/secret.txt%00.html",
        "/.env",
        "/%2eenv",
        "/sub/../.env",
    ];
    for path in paths {
        let reply = get(addr, path).await;
        let status = reply.status.as_u16();
        assert!(
            status == 400 || status == 404,
            "{path}: status {status} must be 400 or 404"
        );
        assert!(!leaked(&reply.text()), "{path}: leaked {:?}", reply.text());
    }

    for target in ["/../secret.txt", "/..\\secret.txt", "/sub/../../secret.txt"] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let (response, _) = support::raw(addr, req.as_bytes(), Duration::from_secs(5)).await;
        let status = raw_status(&response);
        assert!(
            matches!(status, Some(400 | 404)),
            "raw {target:?}: status {status:?} must be 400 or 404: {response:?}"
        );
        assert!(!leaked(&response), "raw {target:?}: leaked {response:?}");
    }

    assert_eq!(
        get(addr, "/sub/page.txt").await.text(),
        "page",
        "normal files still work"
    );
}
