//! Wraps a response body so that, when it ends (or the client goes away),
//! the request is counted in metrics and written to the access log with the
//! bytes actually sent and the full duration.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::body::Body;
use super::conn::InFlight;
use crate::balancer::Backend;
use crate::router::Route;
use crate::telemetry::access::Entry;
use crate::telemetry::metrics::Refused;

/// Access-log fields captured from the request, only when the log is on.
#[derive(Debug)]
pub struct LogFields {
    pub combined: bool,
    pub method: http::Method,
    pub host: String,
    pub path: String,
    pub protocol: &'static str,
    pub request_id: String,
    pub user_agent: String,
    pub referer: String,
}

/// A request's route and the index in its split of the backend that
/// answers it (`usize::MAX` when none does: rate limited, no backend).
pub type Picked = (Arc<Route>, usize);

/// Counts a request under its backend (or, answered by its route itself,
/// under the route's refusals) and in its route's rollout window (which
/// keeps only `to`'s); the backend, if one answered.
fn count(picked: Option<&Picked>, status: u16, elapsed: Duration) -> Option<&Backend> {
    let (route, i) = picked?;
    if let Some(rollout) = &route.rollout {
        rollout.record(*i, status, elapsed);
    }
    let Some(backend) = route.split.backends().get(*i) else {
        route.refused.observe(status);
        return None;
    };
    backend.metrics.observe(status, elapsed.as_secs_f64());
    Some(backend)
}

/// Everything needed to record a request once its response is done.
#[derive(Debug)]
pub struct Finish {
    pub started: Instant,
    pub status: u16,
    /// The connection, with this request counted in flight until dropped.
    pub conn: InFlight,
    /// The route and the index of the backend that answered, if any.
    pub route: Option<Picked>,
    pub log: Option<Box<LogFields>>,
    /// Region, endpoint and status of the upstream that answered, if proxied.
    pub upstream: Option<crate::upstream::proxy::Upstream>,
    /// `weir_response_bytes_total` of this response's encoding.
    pub bytes_sent: prometheus_client::metrics::counter::Counter,
    /// Where a request no route took is counted.
    pub unrouted: Option<Arc<Refused>>,
}

impl LogFields {
    /// This request's line, without what only an answer says (route,
    /// backend, upstream); those stay empty.
    fn entry(&self, client_ip: IpAddr, status: u16, bytes: u64, duration: Duration) -> Entry<'_> {
        Entry {
            client_ip: Some(client_ip),
            method: self.method.as_str(),
            host: &self.host,
            path: &self.path,
            protocol: self.protocol,
            status,
            bytes,
            duration,
            request_id: &self.request_id,
            user_agent: &self.user_agent,
            referer: &self.referer,
            ..Entry::default()
        }
    }
}

/// Logs and counts (metrics, rollout window) a request dropped before it
/// had a response (its client reset the stream or went away, or the
/// shutdown grace ran out) with status 499, as nginx does; a request that
/// gets its response is taken out with [`Unanswered::answered`] and
/// recorded when that response ends.
pub struct Unanswered {
    log: Option<Box<LogFields>>,
    client_ip: IpAddr,
    started: Instant,
    refused: Option<RefusedWith>,
    /// The route and the index of its backend, once chosen: the request
    /// is counted under them.
    pub route: Option<Picked>,
}

/// In the extensions of an HTTP/1.1 or HTTP/2 request with a body: the
/// status the connection answered with itself when it refused the body
/// (malformed, too large) and dropped the request's handler, so that the
/// request is logged with what its client was told.
#[derive(Debug, Clone, Default)]
pub struct RefusedWith(Arc<AtomicU16>);

impl RefusedWith {
    pub fn set(&self, status: http::StatusCode) {
        self.0.store(status.as_u16(), Ordering::Relaxed);
    }

    fn get(&self) -> Option<u16> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&s| s != 0)
    }
}

/// The status an unanswered request is logged with ("client closed
/// request").
const CLIENT_CLOSED: u16 = 499;

impl Unanswered {
    pub fn new(
        log: Option<Box<LogFields>>,
        client_ip: IpAddr,
        started: Instant,
        refused: Option<RefusedWith>,
    ) -> Unanswered {
        Unanswered {
            log,
            client_ip,
            started,
            refused,
            route: None,
        }
    }

    /// The request has its response: it is recorded when that ends, with
    /// its log fields and route.
    pub fn answered(mut self) -> (Option<Box<LogFields>>, Option<Picked>) {
        (self.log.take(), self.route.take())
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if self.log.is_none() && self.route.is_none() {
            return;
        }
        let status = self
            .refused
            .as_ref()
            .and_then(RefusedWith::get)
            .unwrap_or(CLIENT_CLOSED);
        let elapsed = self.started.elapsed();
        // The wait its client gave up on is a latency of the backend: a
        // `to` that hangs shows in the window's p99 (a 4xx is no error
        // there).
        count(self.route.as_ref(), status, elapsed);
        if let Some(log) = self.log.take() {
            log.entry(self.client_ip, status, 0, elapsed)
                .emit(log.combined);
        }
    }
}

impl Finish {
    fn record(self, bytes: u64) {
        let elapsed = self.started.elapsed();
        let backend = count(self.route.as_ref(), self.status, elapsed);
        if let Some(unrouted) = &self.unrouted {
            unrouted.observe(self.status);
        }
        self.bytes_sent.inc_by(bytes);
        let Some(log) = self.log else { return };
        let endpoint = self.upstream.as_ref().map(|u| u.endpoint.to_string());
        Entry {
            route: self.route.as_ref().map_or("", |(r, _)| &r.name),
            backend: backend.map_or("", |b| &b.name),
            region: self.upstream.as_ref().map_or("", |u| &u.region),
            endpoint: endpoint.as_deref().unwrap_or(""),
            upstream_status: self.upstream.as_ref().map(|u| u.status),
            ..log.entry(self.conn.peer.ip(), self.status, bytes, elapsed)
        }
        .emit(log.combined);
    }
}

pub struct Observed {
    inner: Body,
    sent: u64,
    finish: Option<Finish>,
}

impl Observed {
    pub fn new(inner: Body, finish: Finish) -> Observed {
        Observed {
            inner,
            sent: 0,
            finish: Some(finish),
        }
    }

    /// The same request answered with `inner` instead (the status it is
    /// recorded with stays the one it was made with).
    pub fn replace(&mut self, inner: Body) {
        self.inner = inner;
    }

    fn done(&mut self) {
        if let Some(finish) = self.finish.take() {
            finish.record(self.sent);
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.done();
    }
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.done(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
