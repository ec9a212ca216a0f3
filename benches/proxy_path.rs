//! The proxy path in one process: a keep-alive client sends `GET /api/hello`
//! through weir to an HTTP/1.1 upstream answering 64 bytes, all on loopback.
//!
//! Besides criterion's time per request it prints, from a counting global
//! allocator, the heap allocations and the bytes allocated per request that
//! weir adds: the same requests sent straight to the upstream are the
//! baseline subtracted (client and upstream live in this process too).
//!
//!   cargo bench --bench proxy_path

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Counts every allocation (and its size) made in this process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as it came.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as it came.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: forwarded as it came.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BODY: &[u8; 64] = b"0123456789012345678901234567890123456789012345678901234567890123";

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain"),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn weir(upstream: SocketAddr) -> SocketAddr {
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
[[listeners]]
name = "web"
bind = ["127.0.0.1:0"]
[[routes]]
path = "/api/"
backends = [{{ service = "api" }}]
[services.api]
endpoints = ["{upstream}"]
[access_log]
format = "off"
"#
    );
    let doc = weir::config::load_str(
        &config,
        Path::new("bench.toml"),
        weir::config::source::Format::Toml,
        PathBuf::from("."),
    )
    .expect("bench config");
    let server = weir::app::Server::bind(&doc).await.expect("bind weir");
    let addr = server.local_addrs("web")[0];
    tokio::spawn(server.run(std::future::pending()));
    addr
}

async fn client(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn get(sender: &mut SendRequest<Empty<Bytes>>) {
    sender.ready().await.expect("ready");
    let req = Request::builder()
        .uri("/api/hello")
        .header(http::header::HOST, "bench")
        .body(Empty::new())
        .expect("request");
    let response = sender.send_request(req).await.expect("response");
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.expect("body");
    assert_eq!(body.to_bytes().len(), BODY.len());
}

/// Allocations and bytes allocated per request over `n` requests.
async fn count(sender: &mut SendRequest<Empty<Bytes>>, n: u64) -> (f64, f64) {
    let (calls, bytes) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED.load(Ordering::Relaxed),
    );
    for _ in 0..n {
        get(sender).await;
    }
    let calls = ALLOCATIONS.load(Ordering::Relaxed) - calls;
    let bytes = ALLOCATED.load(Ordering::Relaxed) - bytes;
    (calls as f64 / n as f64, bytes as f64 / n as f64)
}

fn proxy_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut direct, mut proxied) = runtime.block_on(async {
        let upstream = upstream().await;
        let weir = weir(upstream).await;
        (client(upstream).await, client(weir).await)
    });
    report(&runtime, &mut direct, &mut proxied);
    c.bench_function("proxied GET 64 B (one keep-alive connection)", |b| {
        b.iter(|| runtime.block_on(get(&mut proxied)))
    });
    c.bench_function("direct GET 64 B (baseline, no proxy)", |b| {
        b.iter(|| runtime.block_on(get(&mut direct)))
    });
}

fn report(
    runtime: &Runtime,
    direct: &mut SendRequest<Empty<Bytes>>,
    proxied: &mut SendRequest<Empty<Bytes>>,
) {
    const N: u64 = 10_000;
    let (base, through) = runtime.block_on(async {
        // Warm pools and caches first.
        count(direct, 100).await;
        count(proxied, 100).await;
        (count(direct, N).await, count(proxied, N).await)
    });
    println!(
        "proxy path, per request over {N}: weir adds {:.1} allocations and {:.0} bytes allocated \
         (through weir {:.1} / {:.0}, direct {:.1} / {:.0})",
        through.0 - base.0,
        through.1 - base.1,
        through.0,
        through.1,
        base.0,
        base.1
    );
}

criterion_group!(benches, proxy_path);
criterion_main!(benches);
