//! Site tests on real files in a temporary directory.

use std::fs;
use std::fs::File;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use super::body::{CHUNK, FileBody};
use super::serve::http_date;
use super::{Site, serve};

const SECRET: &[u8] = b"SECRET";

struct Fixture {
    _base: tempfile::TempDir,
    root: PathBuf,
}

/// `base/root` is the site; `base/outside` and `base/x` hold the secret.
fn fixture() -> Fixture {
    let base = tempfile::tempdir().expect("tempdir");
    let base_path = fs::canonicalize(base.path()).expect("canonical base");
    let root = base_path.join("root");
    let outside = base_path.join("outside");
    for dir in [&root.join("sub"), &root.join("empty"), &root.join(".git")] {
        fs::create_dir_all(dir).expect("mkdir");
    }
    fs::create_dir_all(root.join(".well-known")).expect("mkdir");
    fs::create_dir_all(&outside).expect("mkdir");
    let files: [(&str, &[u8]); 8] = [
        ("index.html", b"<h1>home</h1>"),
        ("sub/index.html", b"<h1>sub</h1>"),
        ("app.js", b"console.log(1)"),
        ("sub/.hidden", SECRET),
        (".env", SECRET),
        (".git/config", SECRET),
        (".well-known/x", b"well known"),
        ("a", b"file a"),
    ];
    for (name, content) in files {
        fs::write(root.join(name), content).expect("write");
    }
    fs::write(outside.join("secret.txt"), SECRET).expect("write");
    fs::write(base_path.join("x"), SECRET).expect("write");
    symlink(outside.join("secret.txt"), root.join("link.txt")).expect("symlink");
    symlink(&outside, root.join("linkdir")).expect("symlink");
    Fixture { _base: base, root }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn request(site: &Arc<Site>, method: Method, path: &str, accept: Option<&str>) -> Reply {
    let mut headers = HeaderMap::new();
    if let Some(accept) = accept {
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(accept).expect("accept"),
        );
    }
    let response = serve(site, &method, path, &headers).await;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(site: &Arc<Site>, path: &str) -> Reply {
    request(site, Method::GET, path, None).await
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn site(f: &Fixture, spa: bool) -> Arc<Site> {
    Arc::new(Site::new("web".into(), f.root.clone(), spa))
}

#[tokio::test]
async fn traversal_attempts_never_serve_outside_files() {
    let f = fixture();
    for spa in [false, true] {
        let site = site(&f, spa);
        for path in [
            "/../etc/passwd",
            "/../x",
            "/../outside/secret.txt",
            "/%2e%2e/x",
            "/%2e%2e/outside/secret.txt",
            "/%252e%252e/x",
            "/a/..%2fb",
            "/sub/..%2f..%2fx",
            "/..\\x",
            "/%5c..",
            "/a%00b",
            "/.env",
            "/.git/config",
            "/sub/.hidden",
            "/link.txt",
            "/linkdir/secret.txt",
        ] {
            for accept in [None, Some("text/html")] {
                let reply = request(&site, Method::GET, path, accept).await;
                assert!(
                    matches!(reply.status.as_u16(), 400 | 404)
                        || (spa && reply.body.as_ref() == b"<h1>home</h1>"),
                    "{path} (spa {spa}): {}",
                    reply.status
                );
                assert_ne!(reply.body.as_ref(), SECRET, "{path}");
            }
        }
    }
}

#[tokio::test]
async fn error_responses_name_their_reason() {
    let f = fixture();
    let site = site(&f, false);
    let reply = get(&site, "/missing.txt").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(header(&reply, "weir-error"), "not-found");
    assert_eq!(reply.body.as_ref(), b"not found\n");
    assert_eq!(header(&reply, "content-length"), "10");

    let reply = get(&site, "/%2e%2e/x").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(header(&reply, "weir-error"), "bad-path");

    // HEAD bodies are dropped by `http::service`, for every response.
    let reply = request(&site, Method::HEAD, "/.env", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(header(&reply, "content-length"), "10");
}

#[tokio::test]
async fn well_known_is_served() {
    let f = fixture();
    let reply = get(&site(&f, false), "/.well-known/x").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.as_ref(), b"well known");
}

#[tokio::test]
async fn directories_serve_their_index() {
    let f = fixture();
    let site = site(&f, false);
    for (path, body) in [("/", "<h1>home</h1>"), ("/sub/", "<h1>sub</h1>")] {
        let reply = get(&site, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.body.as_ref(), body.as_bytes(), "{path}");
        assert_eq!(header(&reply, "content-type"), "text/html; charset=utf-8");
    }
    let reply = get(&site, "/sub").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(&reply, "location"), "./sub/");
    // No listings: a directory without an index is not found.
    for path in ["/empty", "/empty/"] {
        assert_eq!(
            get(&site, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let f = fixture();
    let site = site(&f, false);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let reply = request(&site, method.clone(), "/app.js", None).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(header(&reply, "allow"), "GET, HEAD");
        assert_eq!(header(&reply, "weir-error"), "method-not-allowed");
    }
}

#[tokio::test]
async fn file_headers() {
    let f = fixture();
    let reply = get(&site(&f, false), "/app.js").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.as_ref(), b"console.log(1)");
    assert_eq!(
        header(&reply, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(header(&reply, "content-length"), "14");
    let modified = fs::metadata(f.root.join("app.js"))
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(
        header(&reply, "last-modified"),
        httpdate::fmt_http_date(modified)
    );
    let etag = header(&reply, "etag");
    assert!(etag.starts_with("\"e-") && etag.ends_with('"'), "{etag}");
}

#[tokio::test]
async fn head_has_length_and_no_body() {
    let f = fixture();
    let big = vec![b'z'; 3 * CHUNK + 17];
    fs::write(f.root.join("big.bin"), &big).expect("write");
    let site = site(&f, false);
    for (path, len) in [("/app.js", 14), ("/big.bin", big.len())] {
        let get = get(&site, path).await;
        let head = request(&site, Method::HEAD, path, None).await;
        // The body itself is dropped for HEAD by `http::service`.
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(header(&head, "content-length"), len.to_string(), "{path}");
        assert_eq!(head.headers, get.headers, "{path}");
    }
}

#[tokio::test]
async fn misses_that_arrive_together_read_the_file_once() {
    let f = fixture();
    let site = site(&f, false);
    let replies: Vec<_> = (0..32)
        .map(|_| {
            let site = site.clone();
            tokio::spawn(async move { get(&site, "/app.js").await })
        })
        .collect();
    for reply in replies {
        let reply = reply.await.expect("request task");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(&reply.body[..], b"console.log(1)");
    }
    assert_eq!(
        site.cache.disk_lookups(),
        1,
        "32 misses together, one disk lookup"
    );
}

#[tokio::test]
async fn large_files_stream_whole() {
    let f = fixture();
    let big: Vec<u8> = (0..5 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
    fs::write(f.root.join("big.bin"), &big).expect("write");
    let reply = get(&site(&f, false), "/big.bin").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(header(&reply, "content-length"), big.len().to_string());
    assert_eq!(header(&reply, "content-type"), "application/octet-stream");
    assert_eq!(reply.body.as_ref(), big.as_slice());
}

#[tokio::test]
async fn file_body_stops_at_its_length_and_fails_if_short() {
    let f = fixture();
    let path = f.root.join("grow.bin");
    fs::write(&path, vec![1u8; CHUNK + 10]).expect("write");
    let file = File::open(&path).expect("open");
    // Announced shorter than the file: only that much is sent.
    let body = FileBody::new(file, 100).collect().await.expect("body");
    assert_eq!(body.to_bytes().len(), 100);
    // Announced longer than the file: the body ends in an error.
    let file = File::open(&path).expect("open");
    let result = FileBody::new(file, 3 * CHUNK as u64).collect().await;
    assert!(result.is_err());
}

#[tokio::test]
async fn spa_fallback() {
    let f = fixture();
    let spa = site(&f, true);
    let html = Some("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8");
    let reply = request(&spa, Method::GET, "/settings/profile", html).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.as_ref(), b"<h1>home</h1>");
    assert_eq!(header(&reply, "content-type"), "text/html; charset=utf-8");
    // Existing files are still themselves.
    let reply = request(&spa, Method::GET, "/a", html).await;
    assert_eq!(reply.body.as_ref(), b"file a");
    // A missing asset stays missing.
    let reply = request(&spa, Method::GET, "/missing.js", html).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Not a browser navigation: no fallback.
    for accept in [None, Some("application/json")] {
        let reply = request(&spa, Method::GET, "/settings", accept).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{accept:?}");
    }
    // Without spa, no fallback either.
    let reply = request(&site(&f, false), Method::GET, "/settings", html).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[test]
fn dates_out_of_httpdate_range_are_skipped() {
    let before = UNIX_EPOCH - std::time::Duration::from_secs(1);
    assert!(http_date(before).is_none());
    let far = UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_800);
    assert!(http_date(far).is_none());
    assert!(http_date(UNIX_EPOCH).is_some());
}

#[tokio::test]
async fn the_rules_file_and_its_sidecars_are_hidden_by_their_real_path() {
    let f = fixture();
    for name in ["_headers", "_headers.br", "_headers.gz"] {
        fs::write(f.root.join(name), SECRET).expect("write");
    }
    symlink(f.root.join("_headers"), f.root.join("alias")).expect("symlink");
    let mut site = Site::new("web".into(), f.root.clone(), false);
    site.hide_rules_file(&f.root.join("_headers"));
    // Not there when the config is compiled: hidden once it comes.
    site.hide_rules_file(&f.root.join("sub/_later"));
    // Outside the root: nothing the site could serve anyway.
    site.hide_rules_file(&f.root.join("../x"));
    assert_eq!(site.hidden.len(), 8, "{:?}", site.hidden);
    let site = Arc::new(site);
    fs::write(f.root.join("sub/_later"), SECRET).expect("write");
    for path in [
        "/_headers",
        "/%5Fheaders",
        "//_headers",
        "/_headers.br",
        "/_headers.gz",
        "/alias",
        "/sub/_later",
    ] {
        let reply = get(&site, path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_ne!(reply.body.as_ref(), SECRET, "{path}");
    }
    assert_eq!(get(&site, "/app.js").await.status, StatusCode::OK);
}
