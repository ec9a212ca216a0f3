//! Wraps a response body so that, when it ends (or the client goes away),
//! the request is counted in metrics and written to the access log with the
//! bytes actually sent and the full duration.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::body::Body;
use super::conn::InFlight;
use crate::router::Route;
use crate::telemetry::access::Entry;

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

/// Everything needed to record a request once its response is done.
#[derive(Debug)]
pub struct Finish {
    pub started: Instant,
    pub status: u16,
    /// The connection, with this request counted in flight until dropped.
    pub conn: InFlight,
    /// The route and the index of the backend that answered, if any.
    pub route: Option<(Arc<Route>, usize)>,
    pub log: Option<Box<LogFields>>,
    /// Region, endpoint and status of the upstream that answered, if proxied.
    pub upstream: Option<crate::upstream::proxy::Upstream>,
    /// `weir_response_bytes_total` of this response's encoding.
    pub bytes_sent: prometheus_client::metrics::counter::Counter,
}

impl Finish {
    fn record(self, bytes: u64) {
        let elapsed = self.started.elapsed();
        let backend = self
            .route
            .as_ref()
            .and_then(|(route, i)| route.split.backends().get(*i));
        if let Some(backend) = backend {
            backend.metrics.observe(self.status, elapsed.as_secs_f64());
        }
        if let Some((route, i)) = &self.route
            && let Some(rollout) = &route.rollout
        {
            rollout.record(*i, self.status, elapsed);
        }
        self.bytes_sent.inc_by(bytes);
        let Some(log) = self.log else { return };
        let endpoint = self.upstream.as_ref().map(|u| u.endpoint.to_string());
        Entry {
            client_ip: Some(self.conn.peer.ip()),
            method: log.method.as_str(),
            host: &log.host,
            path: &log.path,
            protocol: log.protocol,
            status: self.status,
            bytes,
            duration: elapsed,
            route: self.route.as_ref().map_or("", |(r, _)| &r.name),
            backend: backend.map_or("", |b| &b.name),
            region: self.upstream.as_ref().map_or("", |u| &u.region),
            endpoint: endpoint.as_deref().unwrap_or(""),
            upstream_status: self.upstream.as_ref().map(|u| u.status),
            request_id: &log.request_id,
            user_agent: &log.user_agent,
            referer: &log.referer,
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
