//! GET and HEAD of one file: status, headers, and a body that streams.
//!
//! All filesystem work for a request (resolve, SPA fallback, open, and the
//! read of a small file) runs in one blocking task, so a request costs one
//! hop to the blocking pool. Larger files then stream in bounded chunks.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, ReadBuf};

use super::Site;
use super::mime;
use super::resolve::{self, Located, ResolveError, SafePath};
use crate::http::body::{self, Body};
use crate::http::error::Reject;

/// Files up to this size are read in one go; larger ones stream in chunks
/// of this size, so a response holds at most about one chunk in memory.
const CHUNK: usize = 64 * 1024;

/// `httpdate` panics on times from the year 10000 on (1 Jan 10000, UTC).
const YEAR_10000: u64 = 253_402_300_800;

/// What the blocking lookup found.
enum Found {
    File(Opened),
    AddSlash(String),
}

/// An open regular file, with what the response headers need.
struct Opened {
    /// Canonical path: the MIME type comes from its extension.
    path: PathBuf,
    file: File,
    len: u64,
    modified: Option<SystemTime>,
    /// The whole content, for small files on GET.
    content: Option<Bytes>,
}

/// A file body read in chunks of at most [`CHUNK`] bytes, never more than
/// the `len` announced in Content-Length.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: BytesMut,
}

impl FileBody {
    fn new(file: File, len: u64) -> FileBody {
        FileBody {
            file: tokio::fs::File::from_std(file),
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(CHUNK as u64) as usize;
        // Chunks are split off one allocation until it runs out; the
        // buffer is kept across `Pending` (tokio's File reads into its own
        // buffer and copies on the next poll).
        if this.buf.len() < want {
            this.buf = BytesMut::zeroed(CHUNK);
        }
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => {
                this.remaining = 0;
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    // The file shrank after Content-Length was sent: fail
                    // the body so the connection is cut, not left hanging.
                    this.remaining = 0;
                    let err = io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank");
                    return Poll::Ready(Some(Err(err)));
                }
                this.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(this.buf.split_to(n).freeze()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Serve `path` (the request's URL path, still percent-encoded, without
/// query; any route prefix handling already done by the caller) from `site`.
pub async fn serve(
    site: &Site,
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
) -> http::Response<Body> {
    let head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Reject::MethodNotAllowed.response(),
    };
    match lookup(site, path, headers, head).await {
        Ok(Found::File(file)) => file_response(file, head),
        Ok(Found::AddSlash(location)) => redirect(site, &location),
        Err(err) => error_response(site, &err),
    }
}

async fn lookup(
    site: &Site,
    path: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Found, ResolveError> {
    let path = resolve::sanitize(path)?;
    let spa = site.spa && !path.has_extension() && accepts_html(headers);
    let root = site.root.clone();
    tokio::task::spawn_blocking(move || find(&root, &path, spa, !head))
        .await
        .map_err(|join| ResolveError::Io {
            path: site.root.clone(),
            source: io::Error::other(join),
        })?
}

/// Blocking: locate the file (or the SPA's index when `spa` and nothing is
/// there), open it, and read it whole if it is small and `read`.
fn find(root: &Path, path: &SafePath, spa: bool, read: bool) -> Result<Found, ResolveError> {
    let located = match resolve::locate(root, path) {
        Err(ResolveError::NotFound) if spa => resolve::locate(root, &SafePath::root()),
        other => other,
    }?;
    match located {
        Located::File(file) => open(file, read).map(Found::File),
        Located::AddSlash(location) => Ok(Found::AddSlash(location)),
    }
}

fn open(path: PathBuf, read: bool) -> Result<Opened, ResolveError> {
    let mut file = File::open(&path).map_err(|e| ResolveError::from_io(&path, e))?;
    // Headers come from the open handle, not from the earlier stat: the
    // path may have been replaced in between.
    let meta = file
        .metadata()
        .map_err(|e| ResolveError::from_io(&path, e))?;
    if !meta.is_file() {
        return Err(ResolveError::NotFound);
    }
    let len = meta.len();
    let content = if read && len <= CHUNK as u64 {
        let mut buf = Vec::with_capacity(CHUNK.min(len as usize));
        (&mut file)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|e| ResolveError::from_io(&path, e))?;
        Some(Bytes::from(buf))
    } else {
        None
    };
    Ok(Opened {
        path,
        file,
        len,
        modified: meta.modified().ok(),
        content,
    })
}

fn file_response(opened: Opened, head: bool) -> Response<Body> {
    let Opened {
        path,
        file,
        len,
        modified,
        content,
    } = opened;
    let etag = etag(len, modified);
    // A small file is sent as read, so its length is what was read even if
    // the file changed since the stat.
    let (len, body) = match content {
        Some(bytes) => (bytes.len() as u64, body::full(bytes)),
        None if head => (len, body::empty()),
        None => (len, FileBody::new(file, len).boxed()),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(mime::for_path(&path)),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(date) = modified.and_then(http_date) {
        headers.insert(header::LAST_MODIFIED, date);
    }
    if let Some(etag) = etag {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// A directory asked for without its slash. Permanent and method-keeping.
fn redirect(site: &Site, location: &str) -> Response<Body> {
    let Ok(location) = HeaderValue::from_str(location) else {
        // Cannot happen: resolve percent-encodes the Location.
        let err = ResolveError::BadPath("unencodable redirect");
        return error_response(site, &err);
    };
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    response
}

/// Logs what the client must not see and names the refusal; the status
/// itself comes from `http::error`.
fn error_response(site: &Site, err: &ResolveError) -> Response<Body> {
    let reject = match err {
        ResolveError::BadPath(why) => {
            tracing::debug!(site = %site.name, why, "bad static path");
            Reject::BadPath
        }
        ResolveError::NotFound => Reject::NotFound,
        ResolveError::Io { .. } => {
            tracing::warn!(site = %site.name, error = %err, "static file I/O error");
            Reject::Internal
        }
    };
    reject.response()
}

/// Whether any `Accept` header mentions `text/html` (q-values ignored).
fn accepts_html(headers: &HeaderMap) -> bool {
    const HTML: &[u8] = b"text/html";
    headers.get_all(header::ACCEPT).iter().any(|value| {
        value
            .as_bytes()
            .windows(HTML.len())
            .any(|w| w.eq_ignore_ascii_case(HTML))
    })
}

/// A strong validator from size and modification time: `"<len>-<mtime ns>"`
/// in hex.
fn etag(len: u64, modified: Option<SystemTime>) -> Option<HeaderValue> {
    let nanos = modified
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos());
    HeaderValue::from_str(&format!("\"{len:x}-{nanos:x}\"")).ok()
}

/// Last-Modified, or nothing for a time `httpdate` cannot format.
fn http_date(time: SystemTime) -> Option<HeaderValue> {
    let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    if secs >= YEAR_10000 {
        return None;
    }
    HeaderValue::from_str(&httpdate::fmt_http_date(time)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

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

    async fn request(site: &Site, method: Method, path: &str, accept: Option<&str>) -> Reply {
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

    async fn get(site: &Site, path: &str) -> Reply {
        request(site, Method::GET, path, None).await
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn site(f: &Fixture, spa: bool) -> Site {
        Site::new("web".into(), f.root.clone(), spa)
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
            assert_eq!(head.status, StatusCode::OK);
            assert!(head.body.is_empty(), "{path}");
            assert_eq!(header(&head, "content-length"), len.to_string(), "{path}");
            assert_eq!(head.headers, get.headers, "{path}");
        }
    }

    #[tokio::test]
    async fn large_files_stream_whole() {
        let f = fixture();
        let big: Vec<u8> = (0..5 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        fs::write(f.root.join("big.bin"), &big).expect("write");
        let path = f.root.join("big.bin");
        let Ok(opened) = open(path, true) else {
            panic!("open");
        };
        assert!(
            opened.content.is_none(),
            "large files are not read up front"
        );
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
        let far = UNIX_EPOCH + std::time::Duration::from_secs(YEAR_10000);
        assert!(http_date(far).is_none());
        assert!(etag(1, Some(before)).is_some());
        assert!(http_date(UNIX_EPOCH).is_some());
    }
}
