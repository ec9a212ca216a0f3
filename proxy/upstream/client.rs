//! The pooled HTTP client of one service: keep-alive connections per
//! endpoint (the pool is keyed by the endpoint address in the URI), a
//! bounded idle pool with an idle timeout, HTTP/1.1 or h2c prior knowledge.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::schema::Protocol;
use crate::http::body::Body;

pub type Pool = Client<HttpConnector, Body>;

/// Idle keep-alive connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 64;
/// An idle pooled connection is closed after this long; upstream servers
/// commonly close theirs after 60-75 s, so ours goes first.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn pool(protocol: Protocol) -> Pool {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE_PER_ENDPOINT)
        // The client's Host header is forwarded as it came.
        .set_host(false)
        // A pooled connection the upstream closed just before reuse: the
        // request was never sent, so the client retries it on a new one.
        .retry_canceled_requests(true)
        .http2_only(protocol == Protocol::H2c);
    builder.build(connector)
}
