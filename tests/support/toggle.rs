//! A small upstream whose health check can be switched off and on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// An upstream answering `name`, whose `/health` follows a switch.
pub struct Up {
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
}

pub async fn up(name: &'static str) -> Up {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let flag = flag.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let flag = flag.clone();
                    async move {
                        let mut response = hyper::Response::new(Full::new(Bytes::from(name)));
                        if req.uri().path() == "/health" && !flag.load(Ordering::Relaxed) {
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
    Up { addr, healthy }
}
