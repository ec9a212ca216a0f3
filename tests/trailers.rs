//! HTTP/1.1 trailers at the edges: bodies nobody reads, upstreams that
//! answer early or send more than asked, compression, HTTP/2 clients, a
//! refused CONNECT; and that no upstream connection is lost or misused.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout_at};

use support::upstream::Scripted;
use support::{Weir, config, weir};

const WAIT: Duration = Duration::from_secs(3);

/// `/api/` proxied to `api`, the rest a static site `www`.
async fn start(api: &str, extra: &str) -> Weir {
    weir()
        .file("www/a.txt", "first file\n")
        .start(&config(&format!(
            "{extra}\n\n[[routes]]\npath = \"/api/\"\nbackends = [{{ service = \"api\" }}]\n\n\
             [services.api]\nendpoints = [\"{api}\"]\n\n\
             [[routes]]\npath = \"/\"\nbackends = [{{ site = \"www\" }}]\n\n[sites.www]\nroot = \"www\"\n"
        )))
        .await
}

/// Reads until `done(seen)` holds, the peer closes, or `WAIT` passes.
async fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> (String, bool) {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if done(&String::from_utf8_lossy(&out)) {
            return (String::from_utf8_lossy(&out).into_owned(), false);
        }
        match timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

fn statuses(s: &str) -> Vec<String> {
    s.match_indices("HTTP/1.1 ")
        .map(|(i, _)| s[i + 9..i + 12].to_owned())
        .collect()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A chunked body with a trailer section on a request whose handler never
/// reads it (a static file, 405): skipped whole, the pipelined GET behind
/// it is answered as its own request.
#[tokio::test]
async fn unread_chunked_body_with_trailers_is_skipped_and_next_request_served() {
    let up = Scripted::start(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
    let w = start(&up.endpoint(), "").await;
    let mut c = connect(w.addr("web")).await;
    c.write_all(b"POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: 1\r\nX-B")
        .await
        .unwrap();
    let (first, _) = read_until(&mut c, |s| s.contains("\r\n\r\n")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(b": 2\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (rest, closed) = read_until(&mut c, |_| false).await;
    let all = format!("{first}{rest}");
    assert_eq!(statuses(&all), ["405", "200"], "{all:?}");
    assert!(all.ends_with("first file\n") && closed, "{all:?}");
}

/// An upstream that answers as soon as it has a head, before the request
/// body, then reads on; counts connections.
async fn early_answer() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
                            .await;
                        buf.clear();
                        // Keep reading (and dropping) whatever comes.
                        while let Ok(n) = s.read(&mut chunk).await {
                            if n == 0 {
                                return;
                            }
                        }
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

/// The upstream answers before the request body; the trailer section is
/// then split across reads on the client side: the rest is skipped and the
/// pipelined request behind it is served.
#[tokio::test]
async fn early_upstream_answer_then_trailers_split_across_reads() {
    let (api, _conns) = early_answer().await;
    let w = start(&api, "").await;
    let mut c = connect(w.addr("web")).await;
    c.write_all(
        b"POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    )
    .await
    .unwrap();
    let (first, _) = read_until(&mut c, |s| s.ends_with("early")).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    c.write_all(b"0\r\nX-A: 1\r\nX-").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(b"B: 2\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (rest, closed) = read_until(&mut c, |_| false).await;
    assert!(
        rest.starts_with("HTTP/1.1 200") && rest.ends_with("first file\n") && closed,
        "{rest:?}"
    );
}

/// A compressed proxied response drops the upstream's trailers (the
/// encoder reads data only) but still reads the upstream body to its end,
/// so the upstream connection goes back to the pool.
#[tokio::test]
async fn compressed_response_with_upstream_trailers_pools_the_connection() {
    let body = "x".repeat(4000);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n{:X}\r\n{body}\r\n0\r\nX-Sum: 1\r\n\r\n",
        body.len()
    );
    let up = Scripted::start(response.into_bytes()).await;
    let w = start(&up.endpoint(), "").await;
    let mut c = connect(w.addr("web")).await;
    for _ in 0..2 {
        c.write_all(b"GET /api/x HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
            .await
            .unwrap();
        let (got, _) = read_until(&mut c, |s| s.ends_with("0\r\n\r\n")).await;
        assert!(got.contains("content-encoding: gzip"), "{got:?}");
        assert!(
            !got.contains("X-Sum: 1") && !got.contains("x-sum: 1"),
            "{got:?}"
        );
        // Dropped trailers are not announced either.
        assert!(!got.to_ascii_lowercase().contains("trailer:"), "{got:?}");
    }
    assert_eq!(up.connections(), 1);
}

/// A malformed trailer section from the upstream: the client's chunked
/// body is cut (no last chunk) and the client connection closed; the
/// upstream connection is not reused.
#[tokio::test]
async fn malformed_upstream_trailers_cut_the_client_and_drop_the_connection() {
    let up = Scripted::start(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: 1\r\n folded\r\n\r\n"[..],
    )
    .await;
    let w = start(&up.endpoint(), "").await;
    for _ in 0..2 {
        let mut c = connect(w.addr("web")).await;
        c.write_all(b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (got, closed) = read_until(&mut c, |_| false).await;
        assert!(closed, "{got:?}");
        assert!(!got.contains("0\r\n\r\n"), "no clean end: {got:?}");
    }
    assert_eq!(up.connections(), 2);
}

/// Bytes after the upstream's trailer section (nothing asked for them):
/// the connection is not used again, and the next request is answered
/// right.
#[tokio::test]
async fn bytes_after_upstream_trailers_keep_the_connection_out_of_use() {
    let up = Scripted::start(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsmuggl"[..],
    )
    .await;
    let w = start(&up.endpoint(), "").await;
    let mut c = connect(w.addr("web")).await;
    for _ in 0..3 {
        c.write_all(b"GET /api/x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (got, _) =
            read_until(&mut c, |s| s.ends_with("\r\n\r\n") && s.contains("x-a: 1")).await;
        assert!(got.contains("5\r\nhello\r\n0\r\nx-a: 1\r\n\r\n"), "{got:?}");
        assert!(!got.contains("smuggl"), "{got:?}");
    }
    assert!(up.connections() >= 2, "{}", up.connections());
}

/// A trailer section between the old fixed 16 KiB and `max_header_bytes`
/// (64 KiB default) reaches the upstream whole.
#[tokio::test]
async fn a_large_request_trailer_section_within_the_limit_passes() {
    let up = Scripted::start(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
    let w = start(&up.endpoint(), "").await;
    let big = "v".repeat(40 * 1024);
    let req = format!(
        "POST /api/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\na\r\n0\r\nX-Big: {big}\r\n\r\n"
    );
    let (got, _) = support::raw(w.addr("web"), req.as_bytes(), WAIT).await;
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "{}",
        &got[..got.len().min(200)]
    );
    let reqs = up.requests();
    assert!(reqs[0].contains(&format!("x-big: {big}\r\n\r\n")));
}

/// A refused CONNECT (501) closes the connection: bytes the client sends
/// behind it (here a request; for an optimistic tunnel client, its TLS
/// ClientHello) are never read as a next HTTP request.
#[tokio::test]
async fn bytes_after_a_refused_connect_are_not_read_as_a_request() {
    let up = Scripted::start(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
    let w = start(&up.endpoint(), "").await;
    let mut c = connect(w.addr("web")).await;
    c.write_all(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nGET /api/after-connect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let (got, closed) = read_until(&mut c, |_| false).await;
    assert_eq!(statuses(&got), ["501"], "{got:?}");
    assert!(closed, "the connection closes after the 501: {got:?}");
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}

/// An h2 client reading an HTTP/1.1 upstream's chunked body with trailers:
/// the upstream connection is released at the trailers frame (hyper does
/// not poll past it) and reused by the next request.
#[tokio::test]
async fn h2_client_upstream_trailers_release_the_pooled_connection() {
    let up = Scripted::start(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"[..],
    )
    .await;
    let w = start(&up.endpoint(), "").await;
    for _ in 0..3 {
        let req = http::Request::get(format!("http://x:{}/api/t", w.addr("web").port()))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let reply = support::send_h2(w.addr("web"), req).await;
        assert_eq!(reply.text(), "hello");
    }
    assert_eq!(up.connections(), 1);
}
