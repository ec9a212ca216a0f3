//! One request through to an upstream: pick an endpoint, send, and on a
//! failure that is safe to repeat try another endpoint, within the route's
//! timeouts and the service's retry budget.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{Authority, PathAndQuery};
use http::{Response, Version};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::exchange::Outgoing;
use super::pool::Attempt;
use super::{Service, forward, retry, select, tunnel};
use crate::config::schema::Protocol;
use crate::http::body::{self, Body, BoxError, RequestBody};
use crate::http::compression::{self, Coding};
use crate::http::conn::ConnInfo;
use crate::http::error::Reject;
use crate::http::h1::upgrade::ClientUpgrade;
use crate::http::raw::RawFields;
use crate::router::{self, Route};
use crate::upstream::pool::UpstreamUpgrade;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Default whole-request timeout when a route sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the access log and metrics learn about the upstream side.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub region: Arc<str>,
    pub endpoint: SocketAddr,
    pub status: u16,
}

/// The upstream that answered, and the response's own fields when they
/// are not in its map: written as they came to an HTTP/1.1 client, or
/// moved into the map for another.
pub type Answered = (Upstream, Option<Box<RawFields>>);

/// Response compression settings (`[compression]`).
#[derive(Debug, Clone, Default)]
pub struct Compression {
    pub algorithms: Vec<Coding>,
    pub min_size: u64,
}

/// How an attempt ended, for metrics and for the retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    /// The connection closed or reset before any response: likely a pooled
    /// connection the upstream had just closed.
    Stale,
    Failed,
    Timeout,
}

impl Failure {
    fn reject(self) -> Reject {
        match self {
            Failure::Connect => Reject::UpstreamConnect,
            Failure::Failed | Failure::Stale => Reject::UpstreamFailed,
            Failure::Timeout => Reject::UpstreamTimeout,
        }
    }
}

/// Where a request goes: the route that matched and its service, and
/// what the proxying needs from the connection and the configuration.
#[derive(Clone, Copy)]
pub struct To<'a> {
    pub route: &'a Route,
    pub service: &'a Arc<Service>,
    pub conn: &'a ConnInfo,
    pub compression: &'a Compression,
}

/// What the request path learnt of a request before it was dispatched.
#[derive(Clone, Copy)]
pub struct Known<'a> {
    pub started: std::time::Instant,
    /// An id weir made, to be added (one the client sent is among its
    /// fields already).
    pub made_id: Option<&'a HeaderValue>,
    /// The Host field, when it was looked up already.
    pub host_field: Option<&'a HeaderValue>,
}

/// Sends the request of head `parts` and body `incoming` where `to` says.
/// The head is borrowed and changed as it goes upstream.
pub async fn proxy<B: RequestBody>(
    parts: &mut Parts,
    incoming: B,
    known: Known<'_>,
    to: To<'_>,
) -> (Response<Body>, Option<Answered>) {
    let To {
        route,
        service,
        conn,
        compression,
    } = to;
    let Known {
        started,
        made_id,
        host_field,
    } = known;
    service.budget.deposit();
    let _waiting = conn.state.wait_upstream();
    // An HTTP/1.1 connection that can be handed over carries its handle.
    let client_upgrade = parts.extensions.remove::<ClientUpgrade>();
    let upgrade = client_upgrade.is_some()
        && parts.version == Version::HTTP_11
        && forward::is_upgrade(&parts.headers);
    let accept_encoding: Vec<HeaderValue> = parts
        .headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .cloned()
        .collect();
    // The host that routed the request is the one the upstream hears of: a
    // target's authority (absolute form, or HTTP/2's and HTTP/3's
    // `:authority`) replaces a Host field that says otherwise (RFC 9112
    // 3.2.2).
    let host = match parts.uri.authority() {
        Some(authority) => {
            let host = authority_host(authority);
            if host.is_some() {
                parts.headers.remove(header::HOST);
            }
            host
        }
        None => host_field
            .or_else(|| parts.headers.get(header::HOST))
            .cloned(),
    };
    forward::strip_hop_by_hop(&mut parts.headers, upgrade);
    let mut added = forward::Added::new();
    forward::add_forwarding(
        &mut parts.headers,
        &mut added,
        conn.peer_ip(),
        conn.tls,
        host,
    );
    if let Some(id) = made_id {
        added.push((REQUEST_ID, id.clone()));
    }
    let target = match (route.strip_prefix, parts.uri.path_and_query()) {
        (false, Some(target)) => target.clone(),
        _ => {
            let path = if route.strip_prefix {
                router::path::strip(&route.prefix, parts.uri.path())
            } else {
                parts.uri.path().into()
            };
            let target = match parts.uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path.into_owned(),
            };
            match PathAndQuery::try_from(target) {
                Ok(target) => target,
                Err(_) => return (Reject::BadRequest.response(), None),
            }
        }
    };

    // A request without a body can be sent again; one with a body only once.
    let mut once = (!incoming.is_end_stream()).then_some(incoming);
    let has_body = once.is_some();
    let key = select::upstream_hash_key(
        &service.load_balance,
        &parts.headers,
        &added,
        conn.peer.ip(),
    );
    let timeout = route.options.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let try_timeout = route.options.try_timeout.unwrap_or(timeout);
    let started = Instant::from_std(started);
    let deadline = started + timeout;
    let version = match service.protocol {
        Protocol::H2c => Version::HTTP_2,
        _ => Version::HTTP_11,
    };

    let Some(mut region) = service.pick_region() else {
        return (no_healthy_endpoint(service), None);
    };
    let mut endpoints = region.endpoints.load_full();
    // Retries pick from a cursor of their own, so the shared one moves once
    // per request and a dead endpoint does not catch every first attempt.
    let retry_cursor = select::Cursor::default();
    // Inline: most requests try one endpoint, and that costs no allocation.
    let mut tried: smallvec::SmallVec<[SocketAddr; 4]> = smallvec::SmallVec::new();
    let mut last = None;
    let mut again_on: Option<Arc<super::Endpoint>> = None;
    let mut stale_retried = false;
    let mut switches = 0;
    loop {
        let again = again_on.is_some();
        let endpoint = match again_on.take() {
            Some(endpoint) => endpoint,
            None => {
                let cursor = if tried.is_empty() {
                    &region.cursor
                } else {
                    &retry_cursor
                };
                match select::pick(&service.load_balance, &endpoints, key, &tried, cursor) {
                    Some(endpoint) => endpoint.clone(),
                    // Every endpoint of this region tried: a retry goes on
                    // to the next region with a healthy endpoint.
                    None => match next_region(service, region, &tried) {
                        Some(next) if switches < service.regions.len() => {
                            switches += 1;
                            region = next;
                            endpoints = region.endpoints.load_full();
                            continue;
                        }
                        _ => break,
                    },
                }
            }
        };
        if !tried.contains(&endpoint.addr) {
            tried.push(endpoint.addr);
        }
        let body = match once.take() {
            Some(incoming) => incoming
                .map_err(|e| std::io::Error::other(ClientBodyError(e.into())))
                .boxed(),
            None => body::empty(),
        };
        let request = Outgoing {
            method: &parts.method,
            target: target.as_str(),
            headers: &parts.headers,
            added: &added,
        };

        // The first attempt's clock is the request's; a retry's starts now.
        let now = if tried.len() == 1 && !again {
            started
        } else {
            Instant::now()
        };
        let to = Attempt {
            addr: endpoint.addr,
            // The second try after a stale pooled connection opens a new one.
            reuse: !again,
            deadline: (now + try_timeout).min(deadline),
        };
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        let (sent, reused) = service
            .pool
            .send(service.scheme, to, request, version, body)
            .await;
        endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        let failure = match sent {
            Ok((response, fields)) => {
                region.attempts.ok();
                // Passive outlier ejection: a gateway error from the
                // upstream counts as a failure, any other answer as success.
                let gateway_error = matches!(response.status().as_u16(), 502..=504);
                service.report(region, &endpoint, !gateway_error);
                return respond(
                    response,
                    fields,
                    region.name.clone(),
                    endpoint.addr,
                    client_upgrade,
                    &accept_encoding,
                    compression,
                );
            }
            Err(e) if e.is_timeout() => Failure::Timeout,
            Err(e) => match classify(&e) {
                Ok(failure) => failure,
                // The client's own body failed: its fault, not the upstream's.
                Err(reject) => return (reject.response(), None),
            },
        };
        if failure == Failure::Failed {
            tracing::debug!(service = %service.name, endpoint = %endpoint.addr, "upstream request failed");
        }
        region
            .attempts
            .failed(failure == Failure::Timeout, failure == Failure::Connect);
        // A pooled connection found closed says nothing about the endpoint;
        // every other failure counts towards its ejection.
        if failure != Failure::Stale || !reused {
            service.report(region, &endpoint, false);
        }
        last = Some(failure);
        let idempotent = retry::idempotent(&parts.method);
        // A pooled connection the upstream closed as it was reused: the
        // request never reached the application, so it goes once more to
        // the same endpoint on a fresh connection, outside `retries`.
        if failure == Failure::Stale && reused && !has_body && idempotent && !stale_retried {
            stale_retried = true;
            again_on = Some(endpoint);
            continue;
        }
        // Without a body to replay, idempotent requests may go again, and
        // any request whose connection never opened (nothing was sent).
        let safe = !has_body && (idempotent || failure == Failure::Connect);
        // `retries` bounds extra attempts after a request was sent; a
        // connection that never opened goes on to the next endpoint anyway
        // (as nginx's default `proxy_next_upstream error` does), and costs
        // the budget nothing: a refused connection loads no one.
        let attempts = tried.len() as u32;
        let within = attempts <= route.options.retries || failure == Failure::Connect;
        let paid = failure == Failure::Connect || service.budget.withdraw();
        if !safe || !within || Instant::now() >= deadline || !paid {
            break;
        }
    }
    match last {
        Some(failure) => (failure.reject().response(), None),
        None => (no_healthy_endpoint(service), None),
    }
}

/// The 503 of a request that found no endpoint of `service` to try, with
/// the seconds until one is expected back.
#[cold]
fn no_healthy_endpoint(service: &Service) -> Response<Body> {
    let now = std::time::Instant::now();
    let seconds = super::failover::retry_after([service], now);
    Reject::NoHealthyEndpoint(seconds).response()
}

/// A Host field's value for `authority`: host and port, without userinfo.
fn authority_host(authority: &Authority) -> Option<HeaderValue> {
    let text = authority.as_str();
    let text = text.rsplit_once('@').map_or(text, |(_, host)| host);
    HeaderValue::from_str(text).ok()
}

/// The first region in priority order, other than `current`, with a
/// healthy endpoint not in `tried`.
fn next_region<'a>(
    service: &'a Service,
    current: &super::Region,
    tried: &[SocketAddr],
) -> Option<&'a super::Region> {
    service.regions.iter().find(|r| {
        !std::ptr::eq(*r, current)
            && r.endpoints
                .load()
                .iter()
                .any(|e| e.is_healthy() && !tried.contains(&e.addr))
    })
}

/// An error of the client's request body, kept apart from upstream errors.
#[derive(Debug)]
struct ClientBodyError(BoxError);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client request body: {}", self.0)
    }
}

impl std::error::Error for ClientBodyError {}

impl ClientBodyError {
    /// What its client is told: 413 for a body over `max_body_bytes`, 400
    /// for any other failure of it.
    fn reject(&self) -> Reject {
        use crate::http::{body_limit, h1, h3};
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*self.0);
        while let Some(e) = source {
            let too_large = e.is::<body_limit::TooLarge>()
                || matches!(
                    e.downcast_ref::<h3::body::BodyError>(),
                    Some(h3::body::BodyError::TooLarge(_))
                )
                || matches!(
                    e.downcast_ref::<h1::body::BodyError>(),
                    Some(h1::body::BodyError::TooLarge)
                );
            if too_large {
                return Reject::BodyTooLarge;
            }
            source = inner(e);
        }
        Reject::BadRequest
    }
}

/// The error `e` wraps. An io::Error's `source` is its inner error's
/// source, skipping the inner error itself: this gives the inner one.
fn inner<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match e.downcast_ref::<std::io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => e.source(),
    }
}

/// Sorts a client error; `Err` with what to answer when the client's own
/// body failed (no fault of the upstream's).
fn classify(error: &super::client::SendError) -> Result<Failure, Reject> {
    if error.is_connect() {
        return Ok(Failure::Connect);
    }
    let mut stale = false;
    // The variants are transparent: start the walk at the wrapped error.
    let mut source: Option<&(dyn std::error::Error + 'static)> = match error {
        super::client::SendError::Plain(e) => Some(e),
        super::client::SendError::General(e) => Some(e),
        super::client::SendError::TimedOut => None,
    };
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            stale |= matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            stale |= hyper.is_incomplete_message() || hyper.is_canceled();
        }
        if let Some(client) = e.downcast_ref::<ClientBodyError>() {
            return Err(client.reject());
        }
        source = inner(e);
    }
    Ok(if stale {
        Failure::Stale
    } else {
        Failure::Failed
    })
}

fn respond(
    mut response: Response<Body>,
    mut fields: Option<Box<RawFields>>,
    region: Arc<str>,
    endpoint: SocketAddr,
    client_upgrade: Option<ClientUpgrade>,
    accept_encoding: &[HeaderValue],
    compression: &Compression,
) -> (Response<Body>, Option<Answered>) {
    let status = response.status();
    let switching = status == http::StatusCode::SWITCHING_PROTOCOLS;
    if switching && let Some(client) = client_upgrade {
        // A pooled upstream hands its connection over in the extensions;
        // hyper-util's client (TLS upstreams) through hyper's upgrade.
        let upstream = match response.extensions_mut().remove::<UpstreamUpgrade>() {
            Some(direct) => tunnel::Upstream::Direct(direct),
            None => tunnel::Upstream::Hyper(hyper::upgrade::on(&mut response)),
        };
        tunnel::spawn(client, upstream);
    }
    forward::strip_hop_by_hop(response.headers_mut(), switching);
    // Compression decides on the fields: they go into the map first.
    if !accept_encoding.is_empty()
        && !compression.algorithms.is_empty()
        && let Some(fields) = fields.take()
    {
        fields.into_map(response.headers_mut());
    }
    let coding = if switching {
        Coding::Identity
    } else {
        choose_coding(response.headers(), status, accept_encoding, compression)
    };
    let mut response = response;
    if coding != Coding::Identity {
        weaken_etag(response.headers_mut());
        // The encoder passes data only: trailers it drops are not announced.
        response.headers_mut().remove(header::TRAILER);
        compression::mark(response.headers_mut(), coding, true);
        response = response.map(|b| compression::compress_stream(b, coding));
    }
    let upstream = Upstream {
        region,
        endpoint,
        status: status.as_u16(),
    };
    (response, Some((upstream, fields)))
}

/// Compress a proxied response when the client accepts it, the upstream did
/// not encode it, its type pays, it is not a range and not `no-transform`,
/// and it is a 200 or an error page a browser shows (403, 404), the
/// statuses nginx's gzip compresses.
fn choose_coding(
    headers: &HeaderMap,
    status: http::StatusCode,
    accept_encoding: &[HeaderValue],
    compression: &Compression,
) -> Coding {
    // Most clients that never compress (load tools, health checkers)
    // send no Accept-Encoding: nothing to look at.
    if accept_encoding.is_empty() {
        return Coding::Identity;
    }
    let eligible = matches!(status.as_u16(), 200 | 403 | 404)
        && !compression.algorithms.is_empty()
        && !headers.contains_key(header::CONTENT_ENCODING)
        && !headers.contains_key(header::CONTENT_RANGE)
        && !compression::no_transform(headers)
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(compression::compressible)
        && headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_none_or(|len| len >= compression.min_size);
    if !eligible {
        return Coding::Identity;
    }
    compression::negotiate(accept_encoding.iter(), &compression.algorithms)
        .unwrap_or(Coding::Identity)
}

/// A re-encoded body is no longer byte-identical to what a strong ETag named.
fn weaken_etag(headers: &mut HeaderMap) {
    if let Some(etag) = headers.get(header::ETAG)
        && !etag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(weak) = HeaderValue::from_bytes(&weak) {
            headers.insert(header::ETAG, weak);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::client::SendError;
    use crate::upstream::exchange::ExchangeError;
    use crate::upstream::pool::SendError as Plain;

    /// An upstream exchange that failed with `io`.
    fn failed_with(io: std::io::Error) -> SendError {
        SendError::Plain(Plain::Exchange(ExchangeError::Io(io)))
    }

    #[test]
    fn a_client_body_error_is_no_upstream_failure_however_deep() {
        let client = |e: BoxError| std::io::Error::other(ClientBodyError(e));
        let gone = || client("client went away".into());
        // As the request body hands it on, and as the exchange wraps it.
        assert_eq!(classify(&failed_with(gone())), Err(Reject::BadRequest));
        assert_eq!(
            classify(&failed_with(std::io::Error::other(gone()))),
            Err(Reject::BadRequest)
        );
        assert_eq!(
            classify(&failed_with(std::io::Error::other(std::io::Error::other(
                gone()
            )))),
            Err(Reject::BadRequest)
        );
        // A body over the limit is the client's too, and says so.
        let over = crate::http::body_limit::TooLarge { limit: 1024 };
        assert_eq!(
            classify(&failed_with(std::io::Error::other(client(over.into())))),
            Err(Reject::BodyTooLarge)
        );
        let h3_over = crate::http::h3::body::BodyError::TooLarge(over);
        assert_eq!(
            classify(&failed_with(std::io::Error::other(client(h3_over.into())))),
            Err(Reject::BodyTooLarge)
        );
        // The upstream's own failures still count.
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&failed_with(reset)), Ok(Failure::Stale));
        let other = std::io::Error::other("upstream broke");
        assert_eq!(classify(&failed_with(other)), Ok(Failure::Failed));
    }
}
