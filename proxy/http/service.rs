//! Answering one request: load the snapshot once, apply the limits, redirect
//! or route, pick a backend, let the site (or, later, the upstream) answer,
//! and wrap the response so it is measured when it ends.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Response, Version, header};

use super::body::{Body, RequestBody};
use super::conn::{ConnInfo, InFlight};
use super::error::Reject;
use super::observe::{Finish, LogFields, Observed, Picked, RefusedWith, Unanswered};
use super::raw::Beside;
use crate::app::App;
use crate::balancer::{Target, affinity};
use crate::http::rate_limit::Decision;
use crate::router;
use crate::snapshot::{AccessLog, Snapshot};

use crate::upstream::proxy::{Known, REQUEST_ID};

/// The response to the request of head `req` and body `body`. For an
/// HTTP/1.1 client, a proxied response's own fields and the request id come
/// beside its map (see [`Beside`]); for the other protocols they are all in
/// the map.
///
/// The head is borrowed, here and below: an async fn keeps what it is
/// given by value twice over, so a head passed down by value made each
/// level's state larger, and was moved at each.
pub async fn handle<B: RequestBody>(
    req: &mut Parts,
    body: B,
    conn: Arc<ConnInfo>,
    app: &App,
) -> (Response<Observed>, Beside) {
    let started = Instant::now();
    // Counted in flight until the response ends, or this future is dropped.
    let conn = InFlight::start(conn);
    conn.count_open(protocol(req.version), app);
    let snapshot = app.snapshot();
    // Upstreams see the same id the client gets back.
    let (request_id, made) = request_id(&mut req.headers);
    // Cheap copies of where the host is, so that the head can be lent on
    // while the host is borrowed from them.
    let authority = req.uri.authority().cloned();
    let host_field = match authority {
        Some(_) => None,
        None => req.headers.get(header::HOST).cloned(),
    };
    let host = request_host(authority.as_ref(), host_field.as_ref());
    let log = (snapshot.access_log != AccessLog::Off).then(|| {
        Box::new(LogFields {
            combined: snapshot.access_log == AccessLog::Combined,
            method: req.method.clone(),
            host: host.as_deref().unwrap_or_default().to_owned(),
            path: req.uri.path().to_owned(),
            protocol: protocol(req.version),
            request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
            user_agent: header_text(&req.headers, header::USER_AGENT),
            referer: header_text(&req.headers, header::REFERER),
        })
    });

    let head = req.method == http::Method::HEAD;
    let http1 = req.version <= Version::HTTP_11;
    let made = made.then_some(&request_id);
    // Logged as unanswered if this future is dropped in the dispatch.
    let refused = req.extensions.get::<RefusedWith>().cloned();
    let mut unanswered = Unanswered::new(log, conn.peer.ip(), started, refused);
    let known = Known {
        started,
        made_id: made,
        host_field: host_field.as_ref(),
    };
    let (mut response, answered) = dispatch(
        req,
        body,
        known,
        &conn,
        (&snapshot, host.as_deref()),
        &mut unanswered.route,
    )
    .await;
    let (log, route) = unanswered.answered();
    let (upstream, mut fields) = match answered {
        Some((upstream, fields)) => (Some(upstream), fields),
        None => (None, None),
    };
    // A proxied response's own fields stay as they came for HTTP/1.1; the
    // other protocols write from the map.
    if !http1 && let Some(fields) = fields.take() {
        fields.into_map(response.headers_mut());
    }
    if head {
        // Same headers as GET (Content-Length included), never a body.
        *response.body_mut() = super::body::empty();
    }
    // Fields weir sets replace the upstream's own; with no value, the
    // upstream's go and weir writes its own beside the map.
    let mut set = |name: header::HeaderName, value: Option<HeaderValue>| {
        if let Some(fields) = &mut fields {
            fields.remove(name.as_str());
        }
        match value {
            Some(value) => response.headers_mut().insert(name, value),
            None => response.headers_mut().remove(name),
        };
    };
    if conn.tls
        && let Some(hsts) = snapshot
            .listener(&conn.listener)
            .and_then(|l| l.tls.as_ref()?.hsts_header.clone())
    {
        set(header::STRICT_TRANSPORT_SECURITY, Some(hsts));
    }
    if let Some(alt_svc) = &conn.alt_svc {
        set(header::ALT_SVC, Some(alt_svc.clone()));
    }
    set(REQUEST_ID, (!http1).then(|| request_id.clone()));
    let encoding = match &fields {
        Some(fields) => fields.content_encoding(),
        None => response
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.as_bytes()),
    };
    let finish = Finish {
        upstream,
        bytes_sent: app.metrics.bytes_sent(encoding),
        unrouted: route.is_none().then(|| app.metrics.unrouted().clone()),
        started,
        status: response.status().as_u16(),
        conn,
        route,
        log,
    };
    let beside = Beside {
        fields,
        request_id: http1.then_some(request_id),
    };
    (response.map(|body| Observed::new(body, finish)), beside)
}

/// A response and what the upstream side was, if any.
type Dispatched = (Response<Body>, Option<crate::upstream::proxy::Answered>);

/// Answers `req`. The route and the index of the backend that answers go
/// in `picked` as soon as they are known (for metrics and the rollout
/// window), so that a request dropped while it waits is counted there too.
async fn dispatch<B: RequestBody>(
    req: &mut Parts,
    body: B,
    known: Known<'_>,
    conn: &ConnInfo,
    (snapshot, host): (&Snapshot, Option<&str>),
    picked: &mut Option<Picked>,
) -> Dispatched {
    // weir tunnels nothing: a CONNECT (HTTP/1.1's authority form, or
    // HTTP/2's and HTTP/3's) names no resource a route could take.
    if req.method == http::Method::CONNECT {
        return (Reject::MethodNotImplemented.response(), None);
    }
    // A body known to be empty has no length to look at.
    let too_large = !body.is_end_stream()
        && req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|len| len > snapshot.limits.max_body_bytes);
    if too_large {
        return (Reject::BodyTooLarge.response(), None);
    }
    let listener = snapshot.listener(&conn.listener);
    if let Some(redirect) = listener.and_then(|l| l.redirect_https.as_ref())
        && !req.uri.path().starts_with("/.well-known/acme-challenge/")
    {
        return (
            crate::listener::redirect::to_https(&req.uri, host, redirect.port()),
            None,
        );
    }
    // Repeated slashes count as one, as nginx merges them: `//admin/x` is
    // routed, stripped and sent on as `/admin/x`, so that it cannot pass
    // the `/admin/` route by the catch-all to an upstream that merges them.
    if let Some(merged) = router::path::merge_slashes(req.uri.path()) {
        match with_path(&req.uri, &merged) {
            Some(uri) => req.uri = uri,
            None => return (Reject::BadRequest.response(), None),
        }
    }
    let path = req.uri.path();
    // A dot segment would choose a route by how the path is written, and
    // could mean another path upstream: clients resolve them before
    // sending, so one that did not is refused rather than guessed at.
    if router::path::has_dot_segment(path) {
        return (Reject::BadRequest.response(), None);
    }
    let Some(route) = snapshot
        .router
        .find(&conn.listener, host.unwrap_or(""), path)
    else {
        return (Reject::NoRoute.response(), None);
    };
    if let Some(limiter) = &route.options.rate_limit
        && let Decision::Deny { retry_after } =
            limiter.check(conn.peer.ip(), std::time::Instant::now())
    {
        let seconds = retry_after.as_secs().max(1);
        *picked = Some((route.clone(), usize::MAX));
        return (Reject::RateLimited(seconds).response(), None);
    }
    let Some(choice) = affinity::choose(
        &route.name,
        &route.split,
        route.options.affinity.as_ref(),
        route.options.override_header.as_ref(),
        &req.headers,
    ) else {
        *picked = Some((route.clone(), usize::MAX));
        return (no_backend(&route.split), None);
    };
    let backend = choice.backend();
    // Only the split's pick (re)pins a client; a forced or pinned choice
    // leaves the cookie it has.
    let pin = match (choice, &route.options.affinity) {
        (affinity::Choice::Picked(_), Some(affinity)) => {
            affinity.set_cookie(&route.name, &backend.name, conn.tls)
        }
        _ => None,
    };
    let index = route.split.index_of(backend).unwrap_or(usize::MAX);
    *picked = Some((route.clone(), index));
    let (mut response, upstream) = match &backend.target {
        Target::Site(site) => {
            let path = if route.strip_prefix {
                router::path::strip(&route.prefix, path)
            } else {
                path.into()
            };
            let response = crate::site::serve(site, &req.method, &path, &req.headers).await;
            (response, None)
        }
        Target::Service(service) => {
            let compression = &snapshot.compression;
            let to = crate::upstream::proxy::To {
                route,
                service,
                conn,
                compression,
            };
            crate::upstream::proxy::proxy(req, body, known, to).await
        }
    };
    if let Some(cookie) = pin {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    (response, upstream)
}

/// The 503 of a route none of whose backends can take the request, with
/// the seconds until a weighted one is expected to have an endpoint back.
#[cold]
fn no_backend(split: &crate::balancer::split::Split) -> Response<Body> {
    let weighted = split
        .backends()
        .iter()
        .enumerate()
        .filter_map(|(i, b)| match &b.target {
            Target::Service(service) if split.weight(i) > 0 => Some(&**service),
            _ => None,
        });
    let seconds = crate::upstream::failover::retry_after(weighted, Instant::now());
    Reject::NoBackend(seconds).response()
}

/// `uri` with its path replaced by `path` (the query kept).
fn with_path(uri: &http::Uri, path: &str) -> Option<http::Uri> {
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(target.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// `X-Request-Id` from the client when it is sane (false), else a new
/// random one (true), with any insane one removed from `headers`.
fn request_id(headers: &mut HeaderMap) -> (HeaderValue, bool) {
    // Most requests carry none, and a few names: comparing them is cheaper
    // than hashing this one for a lookup.
    let sent = if headers.keys().any(|name| *name == REQUEST_ID) {
        headers.get(&REQUEST_ID)
    } else {
        None
    };
    match sent {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id.as_bytes().iter().all(|b| b.is_ascii_graphic()) =>
        {
            return (id.clone(), false);
        }
        Some(_) => {
            headers.remove(&REQUEST_ID);
        }
        None => {}
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = [0u8; 32];
    let random = fastrand::u128(..).to_le_bytes();
    for (pair, byte) in id.chunks_exact_mut(2).zip(random) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    let id = HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    (id, true)
}

/// The host the client asked for: the URI authority (HTTP/2, absolute
/// form) or the Host header, lowercased and without port.
fn request_host<'a>(
    authority: Option<&'a Authority>,
    field: Option<&'a HeaderValue>,
) -> Option<Cow<'a, str>> {
    let raw = match authority {
        Some(authority) => authority.as_str(),
        None => field?.to_str().ok()?,
    };
    router::host::normalize(raw)
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_2 => "h2",
        Version::HTTP_3 => "h3",
        _ => "h1",
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}
