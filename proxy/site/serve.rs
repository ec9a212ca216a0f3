//! GET and HEAD of a site's file: pick the representation (identity, a
//! precompressed sidecar, or compressed on the fly), answer conditionals
//! and ranges, and set the headers a web app needs.
//!
//! Small files come from the cache without leaving the runtime thread; a
//! miss, a revalidation or a large file costs one hop to the blocking pool.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;

use super::body::FileBody;
use super::cache::{Cached, Entry, Representation};
use super::conditional::{self, Outcome, Validators};
use super::load::{self, Found, Large};
use super::resolve::{self, ResolveError, SafePath};
use super::{Site, policy};
use crate::http::body::{self, Body};
use crate::http::compression::{self, Coding};
use crate::http::error::Reject;
use crate::http::sendfile::FileSlice;

/// `httpdate` panics on times from the year 10000 on (1 Jan 10000, UTC).
const YEAR_10000: u64 = 253_402_300_800;

/// Serve `path` (the request's URL path, still percent-encoded, without
/// query; any route prefix already stripped) from `site`.
pub async fn serve(
    site: &Arc<Site>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return Reject::MethodNotAllowed.response();
    }
    let key = match resolve::sanitize(path) {
        Ok(key) => key,
        Err(e) => return error_response(site, &e),
    };
    let spa = site.spa && !key.has_extension() && accepts_html(headers);
    let found = match lookup(site, key).await {
        Err(ResolveError::NotFound) if spa => lookup(site, SafePath::root()).await,
        other => other,
    };
    match found {
        Ok(Found::Entry(entry)) => from_entry(site, &entry, headers).await,
        Ok(Found::Large(large)) => from_disk(site, large, headers).await,
        Ok(Found::AddSlash(location)) => redirect(site, &location),
        Err(e) => error_response(site, &e),
    }
}

/// A fresh cache entry, else the blocking lookup.
async fn lookup(site: &Arc<Site>, key: SafePath) -> Result<Found, ResolveError> {
    let _loading = match site.cache.lookup(&key) {
        Cached::Fresh(entry) => return Ok(Found::Entry(entry)),
        Cached::Revalidate => None,
        Cached::Miss => {
            let guard = site.cache.loading(&key).await;
            // Whoever held the lock before may have loaded it.
            if let Cached::Fresh(entry) = site.cache.lookup(&key) {
                return Ok(Found::Entry(entry));
            }
            Some(guard)
        }
    };
    let site = site.clone();
    let root = site.root.clone();
    tokio::task::spawn_blocking(move || load::find(&site, &key))
        .await
        .map_err(|join| ResolveError::Io {
            path: root,
            source: std::io::Error::other(join),
        })?
}

/// The headers every representation of a file shares: type, date, cache
/// policy, isolation, the site's header rules, and Vary when negotiated.
pub fn base_headers(
    site: &Site,
    url_path: &str,
    content_type: &'static str,
    modified: Option<SystemTime>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(date) = modified.and_then(http_date) {
        headers.insert(header::LAST_MODIFIED, date);
    }
    if site.cross_origin_isolated {
        policy::cross_origin_isolate(&mut headers);
    }
    site.rules.apply(url_path, &mut headers);
    if !headers.contains_key(header::CACHE_CONTROL) {
        let policy = policy::cache_control(url_path, content_type, &headers, &site.immutable);
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    headers
}

/// The coding to answer with: identity for ranges and when nothing else is offered.
fn choose(offered: &[Coding], req: &HeaderMap) -> Coding {
    if offered.is_empty() || req.contains_key(header::RANGE) {
        return Coding::Identity;
    }
    compression::negotiate(req.get_all(header::ACCEPT_ENCODING).iter(), offered)
        .unwrap_or(Coding::Identity)
}

async fn from_entry(site: &Arc<Site>, entry: &Arc<Entry>, req: &HeaderMap) -> Response<Body> {
    let coding = choose(&entry.offered, req);
    let rep = representation(site, entry, coding).await;
    let mut headers = entry.base.clone();
    if !entry.offered.is_empty() {
        compression::add_vary_accept_encoding(&mut headers);
    }
    respond(headers, rep, entry.stamp.modified, req)
}

/// The representation of `entry` in `coding`, made (read from its sidecar
/// or compressed) on first use and kept; identity when that fails or does
/// not pay.
async fn representation(site: &Arc<Site>, entry: &Arc<Entry>, coding: Coding) -> Representation {
    if coding == Coding::Identity {
        return entry.identity.clone();
    }
    if let Some(made) = entry.variant(coding) {
        return made.clone().unwrap_or_else(|| entry.identity.clone());
    }
    // Requests that want it together wait for one of them to make it.
    let _making = entry.making().await;
    if let Some(made) = entry.variant(coding) {
        return made.clone().unwrap_or_else(|| entry.identity.clone());
    }
    let source = entry.clone();
    let made = tokio::task::spawn_blocking(move || make_variant(&source, coding))
        .await
        .ok()
        .flatten();
    let kept = entry.set_variant(coding, made).cloned();
    site.cache.grew();
    kept.unwrap_or_else(|| entry.identity.clone())
}

fn make_variant(entry: &Entry, coding: Coding) -> Option<Representation> {
    let sidecar = entry.sidecars.iter().find(|(c, ..)| *c == coding);
    let (body, file) = match sidecar {
        Some((_, path, _)) => load::read_small(path)?,
        None => (
            compression::compress(&entry.identity.body, coding).ok()?,
            None,
        ),
    };
    // Compressing that does not shrink the file is not worth a variant.
    (body.len() < entry.identity.body.len()).then(|| Representation {
        coding,
        etag: entry.stamp.etag(&format!("-{}", coding.token())),
        body,
        file,
    })
}

/// Builds the response for one in-memory representation: 200, 206, 304 or 416.
fn respond(
    mut headers: HeaderMap,
    rep: Representation,
    modified: Option<SystemTime>,
    req: &HeaderMap,
) -> Response<Body> {
    let len = rep.body.len() as u64;
    let outcome = evaluate(req, &rep.etag, modified, len);
    headers.insert(header::ETAG, rep.etag);
    if rep.coding != Coding::Identity {
        compression::mark(&mut headers, rep.coding, false);
    }
    let (status, offset, bytes) = match outcome {
        Outcome::Full => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            (StatusCode::OK, 0, rep.body)
        }
        Outcome::NotModified => return not_modified(headers),
        Outcome::Partial { start, end } => {
            headers.insert(
                header::CONTENT_RANGE,
                conditional::content_range(start, end, len),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            let slice = rep.body.slice(start as usize..=end as usize);
            (StatusCode::PARTIAL_CONTENT, start, slice)
        }
        Outcome::Unsatisfiable => return unsatisfiable(headers, len),
    };
    let from_file = rep.file.map(|file| FileSlice::new(file, offset, &bytes));
    let mut response = with(status, headers, body::full(bytes));
    if let Some(slice) = from_file {
        response.extensions_mut().insert(slice);
    }
    response
}

fn evaluate(
    req: &HeaderMap,
    etag: &HeaderValue,
    modified: Option<SystemTime>,
    len: u64,
) -> Outcome {
    let Ok(etag) = etag.to_str() else {
        return Outcome::Full;
    };
    conditional::evaluate(
        req,
        &Validators {
            etag,
            last_modified: modified,
        },
        len,
    )
}

/// A file too large for the cache: streamed, from its sidecar, compressed
/// on the fly, or as a byte range.
async fn from_disk(site: &Arc<Site>, large: Large, req: &HeaderMap) -> Response<Body> {
    let Large {
        file,
        stamp,
        mut base,
        offered,
        sidecars,
    } = large;
    if !offered.is_empty() {
        compression::add_vary_accept_encoding(&mut base);
    }
    let coding = choose(&offered, req);
    let etag = if coding == Coding::Identity {
        stamp.etag("")
    } else {
        stamp.etag(&format!("-{}", coding.token()))
    };
    let sidecar = sidecars.iter().find(|(c, ..)| *c == coding);
    // Conditionals are judged on the representation sent; a range only
    // ever applies to identity (`choose` never compresses a range).
    let len_known = coding == Coding::Identity || sidecar.is_some();
    let len = match sidecar {
        Some((_, _, sidecar_stamp)) => sidecar_stamp.len,
        None => stamp.len,
    };
    let outcome = if len_known {
        evaluate(req, &etag, stamp.modified, len)
    } else {
        // Without a length only validators apply, never a range.
        match evaluate(req, &etag, stamp.modified, u64::MAX) {
            Outcome::NotModified => Outcome::NotModified,
            _ => Outcome::Full,
        }
    };
    base.insert(header::ETAG, etag);
    if coding != Coding::Identity {
        compression::mark(&mut base, coding, sidecar.is_none());
    }
    match outcome {
        Outcome::NotModified => not_modified(base),
        Outcome::Unsatisfiable => unsatisfiable(base, len),
        Outcome::Partial { start, end } => {
            let file = match tokio::task::spawn_blocking(move || load::seek(file, start)).await {
                Ok(Ok(file)) => file,
                _ => return Reject::Internal.response(),
            };
            base.insert(
                header::CONTENT_RANGE,
                conditional::content_range(start, end, len),
            );
            base.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            with(
                StatusCode::PARTIAL_CONTENT,
                base,
                FileBody::new(file, end - start + 1).boxed(),
            )
        }
        Outcome::Full => {
            let body = match (coding, sidecar) {
                (Coding::Identity, _) => FileBody::new(file, len).boxed(),
                (_, Some((_, path, _))) => match tokio::fs::File::open(path).await {
                    Ok(sidecar) => FileBody::new(sidecar.into_std().await, len).boxed(),
                    Err(e) => return error_response(site, &ResolveError::from_io(path, e)),
                },
                (coding, None) => {
                    compression::compress_stream(FileBody::new(file, len).boxed(), coding)
                }
            };
            if len_known {
                base.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            with(StatusCode::OK, base, body)
        }
    }
}

fn with(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// 304: the validators and caching headers, no body.
fn not_modified(mut headers: HeaderMap) -> Response<Body> {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::CONTENT_TYPE);
    with(StatusCode::NOT_MODIFIED, headers, body::empty())
}

fn unsatisfiable(mut headers: HeaderMap, len: u64) -> Response<Body> {
    headers.insert(header::CONTENT_RANGE, conditional::unsatisfiable_range(len));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
    headers.remove(header::CONTENT_ENCODING);
    with(StatusCode::RANGE_NOT_SATISFIABLE, headers, body::empty())
}

/// A directory asked for without its slash. Permanent and method-keeping.
fn redirect(site: &Site, location: &str) -> Response<Body> {
    let Ok(location) = HeaderValue::from_str(location) else {
        // Cannot happen: resolve percent-encodes the Location.
        return error_response(site, &ResolveError::BadPath("unencodable redirect"));
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
    let mut response = reject.response();
    if site.cross_origin_isolated {
        // An error page is a document too: keep the whole site isolated.
        policy::cross_origin_isolate(response.headers_mut());
    }
    response
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

/// Last-Modified, or nothing for a time `httpdate` cannot format.
pub fn http_date(time: SystemTime) -> Option<HeaderValue> {
    let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    if secs >= YEAR_10000 {
        return None;
    }
    HeaderValue::from_str(&httpdate::fmt_http_date(time)).ok()
}
