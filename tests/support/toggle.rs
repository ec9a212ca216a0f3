//! A small upstream whose health check can be switched off and on, slowed
//! down, or let pass a counted number of times, and which counts the checks
//! it gets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// An upstream answering `name`, whose `/health` follows a switch.
pub struct Up {
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    /// While `healthy` is off, this many more checks still pass (each
    /// passing check takes one).
    pub passes: Arc<AtomicUsize>,
    /// Milliseconds `/health` waits before it answers (0: at once).
    pub health_delay_ms: Arc<AtomicU64>,
    /// `/health` requests received.
    pub checks: Arc<AtomicUsize>,
    /// `/health` requests answered 200 (counted when the answer is made).
    pub passed: Arc<AtomicUsize>,
}

/// The switches and counters one connection's service shares.
#[derive(Clone)]
struct Health {
    healthy: Arc<AtomicBool>,
    passes: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
    checks: Arc<AtomicUsize>,
    passed: Arc<AtomicUsize>,
}

impl Health {
    /// Whether this check passes; counts it.
    async fn check(&self) -> bool {
        self.checks.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let ok = self.healthy.load(Ordering::SeqCst)
            || self
                .passes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if ok {
            self.passed.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }
}

pub async fn up(name: &'static str) -> Up {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = Health {
        healthy: Arc::new(AtomicBool::new(true)),
        passes: Arc::new(AtomicUsize::new(0)),
        delay_ms: Arc::new(AtomicU64::new(0)),
        checks: Arc::new(AtomicUsize::new(0)),
        passed: Arc::new(AtomicUsize::new(0)),
    };
    let up = Up {
        addr,
        healthy: health.healthy.clone(),
        passes: health.passes.clone(),
        health_delay_ms: health.delay_ms.clone(),
        checks: health.checks.clone(),
        passed: health.passed.clone(),
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let health = health.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let health = health.clone();
                    async move {
                        let mut response = hyper::Response::new(Full::new(Bytes::from(name)));
                        if req.uri().path() == "/health" && !health.check().await {
                            *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    up
}
