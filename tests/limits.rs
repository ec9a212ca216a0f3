//! SPEC "Details": limits on the request head, body, slow clients, idle
//! connections and connection count, checked on raw sockets.

mod support;

use std::time::Duration;

use support::{config, get, raw, weir};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn site_config(limits: &str) -> String {
    config(&format!(
        "[limits]\n{limits}\n\n[[routes]]\npath = \"/\"\nbackends = [{{ site = \"www\" }}]\n\n[sites.www]\nroot = \"www\"\n"
    ))
}

async fn start(limits: &str) -> support::Weir {
    weir()
        .file("www/index.html", "hello\n")
        .start(&site_config(limits))
        .await
}

#[tokio::test]
async fn oversized_head_gets_431_and_others_still_served() {
    let w = start("max_header_bytes = \"8KiB\"").await;
    let big = "x".repeat(16 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n");
    let (reply, closed) = raw(w.addr("web"), req.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "got {reply:?}");
    assert!(closed, "connection closed after 431");
    assert_eq!(get(w.addr("web"), "/").await.status, 200);
}

#[tokio::test]
async fn head_within_limit_is_served() {
    let w = start("max_header_bytes = \"16KiB\"").await;
    let header = "y".repeat(6 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Ok: {header}\r\nConnection: close\r\n\r\n");
    let (reply, _) = raw(w.addr("web"), req.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "got {reply:?}");
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let w = start("max_body_bytes = \"1KiB\"").await;
    let req = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n";
    let (reply, closed) = raw(w.addr("web"), req.as_bytes(), Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "got {reply:?}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("weir-error: body-too-large"),
        "got {reply:?}"
    );
    assert!(
        closed,
        "connection closed rather than reading a body we refused"
    );
    // A body within the limit is not refused for its size.
    let req = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd";
    let (reply, _) = raw(w.addr("web"), req.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        reply.starts_with("HTTP/1.1 405"),
        "site answers 405 to POST, got {reply:?}"
    );
}

#[tokio::test]
async fn slowloris_head_is_cut_at_header_read_timeout() {
    let w = start("header_read_timeout = \"1s\"").await;
    let mut slow = TcpStream::connect(w.addr("web")).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // Keep trickling header lines: the deadline is for the whole head.
    let deadline = started + Duration::from_secs(8);
    let mut closed = false;
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match slow.try_read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "slow head was not cut");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut too early"
    );
    assert_eq!(
        get(w.addr("web"), "/").await.status,
        200,
        "server still serves others"
    );
}

#[tokio::test]
async fn partial_head_gets_408_at_header_read_timeout() {
    let w = start("header_read_timeout = \"1s\"").await;
    let started = std::time::Instant::now();
    let (reply, closed) = raw(
        w.addr("web"),
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Half",
        Duration::from_secs(8),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 408"), "got {reply:?}");
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("weir-error: header-timeout"),
        "got {reply:?}"
    );
    assert!(closed, "connection closed after the 408");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "cut too early"
    );
}

#[tokio::test]
async fn partial_second_head_on_a_kept_connection_gets_408() {
    let w = start("header_read_timeout = \"1s\"\nidle_timeout = \"30s\"").await;
    let mut stream = TcpStream::connect(w.addr("web")).await.unwrap();
    assert!(
        support::first_answer(&mut stream)
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Idle for longer than the head deadline: idleness is idle_timeout's
    // business, so the connection is still there for the next request...
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stream.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    // ...whose head then has header_read_timeout to arrive whole.
    let (reply, closed) = support::read_until_closed(&mut stream, Duration::from_secs(8)).await;
    assert!(reply.starts_with("HTTP/1.1 408"), "got {reply:?}");
    assert!(closed, "connection closed after the 408");
}

#[tokio::test]
async fn silent_connection_is_closed_without_an_answer() {
    let w = start("header_read_timeout = \"1s\"").await;
    let (reply, closed) = raw(w.addr("web"), b"", Duration::from_secs(8)).await;
    assert!(closed, "a connection that sends nothing is closed");
    assert_eq!(reply, "", "nothing is answered to nothing");
}

#[tokio::test]
async fn malformed_request_lines_get_400_and_close() {
    let w = start("").await;
    for garbage in [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/9.9\r\nHost: a\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "\x16\x03\x01\x00\x05hello",
    ] {
        let (reply, closed) = raw(w.addr("web"), garbage.as_bytes(), Duration::from_secs(5)).await;
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 400"),
            "{garbage:?} got {reply:?}"
        );
        assert!(closed, "{garbage:?} left the connection open");
    }
    assert_eq!(
        get(w.addr("web"), "/").await.status,
        200,
        "server still serves others"
    );
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let w = start("idle_timeout = \"1s\"").await;
    let mut stream = TcpStream::connect(w.addr("web")).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (reply, closed) = support::read_until_closed(&mut stream, Duration::from_secs(6)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "got {reply:?}");
    assert!(
        closed,
        "idle connection still open after 6s with idle_timeout 1s"
    );
}

#[tokio::test]
async fn idle_h2_connection_is_closed() {
    let w = start("idle_timeout = \"1s\"").await;
    let (mut sender, conn) = support::h2c(w.addr("web")).await;
    let reply = sender
        .send_request(support::request("GET", "/", &[]))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    drop(reply);
    let ended = tokio::time::timeout(Duration::from_secs(6), conn).await;
    assert!(ended.is_ok(), "h2 connection not closed after idling");
}

#[tokio::test]
async fn h2_connection_whose_only_request_was_cancelled_still_idles_out() {
    let slow = support::upstream::Upstream::echo()
        .slow(30_000)
        .start()
        .await;
    let w = weir()
        .start(&config(&format!(
            "[limits]\nidle_timeout = \"1s\"\n\n[[routes]]\npath = \"/api/\"\nbackends = [{{ service = \"slow\" }}]\n\n[services.slow]\nendpoints = [\"{}\"]\n",
            slow.endpoint()
        )))
        .await;
    let (mut sender, conn) = support::h2c(w.addr("web")).await;
    let pending = sender.send_request(support::request("GET", "/api/wait", &[]));
    // The client gives up on the answer: its stream is reset while weir
    // still waits on the upstream.
    let gave_up = tokio::time::timeout(Duration::from_millis(500), pending).await;
    assert!(gave_up.is_err(), "the slow upstream answered early");
    let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
    assert!(
        ended.is_ok(),
        "h2 connection kept open: the cancelled request still counted in flight"
    );
}

#[tokio::test]
async fn max_connections_holds_extra_connections_back() {
    let w = start("max_connections = 1").await;
    let mut first = TcpStream::connect(w.addr("web")).await.unwrap();
    assert!(
        support::first_answer(&mut first)
            .await
            .starts_with("HTTP/1.1 200")
    );
    // The second connection is not served while the first holds the only slot.
    let second = tokio::spawn({
        let addr = w.addr("web");
        async move { get(addr, "/").await.status }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !second.is_finished(),
        "second connection served beyond max_connections"
    );
    drop(first);
    let status = tokio::time::timeout(support::STEP, second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "served once the slot was freed");
}

// ------------------------------------------------- HTTP/2 bodies, no length

/// weir with `max_body_bytes = 1KiB` in front of an echo upstream at
/// `/api/`, on a plain listener `web` and a TLS one `tls` (ALPN h2).
async fn h2_body_proxy(up: &support::upstream::Upstream, pki: &support::pki::Pki) -> support::Weir {
    let (cert, key, _) = &pki.leaves[0];
    weir()
        .file("cert.pem", cert)
        .file("key.pem", key)
        .start(&config(&format!(
            "[[listeners]]\nname = \"tls\"\nbind = [\"127.0.0.1:0\"]\n[listeners.tls]\ncerts = [{{ cert = \"cert.pem\", key = \"key.pem\" }}]\n\n[limits]\nmax_body_bytes = \"1KiB\"\n\n[[routes]]\npath = \"/api/\"\nbackends = [{{ service = \"api\" }}]\n\n[services.api]\nendpoints = [\"{}\"]\n",
            up.endpoint()
        )))
        .await
}

/// An HTTP/2 connection to `addr`: h2c with prior knowledge, or TLS with
/// ALPN h2 verified against `ca`.
async fn h2_sender(
    addr: std::net::SocketAddr,
    ca: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> hyper::client::conn::http2::SendRequest<support::upstream::ChannelBody> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let Some(ca) = ca else {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        return sender;
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("CA");
    let mut tls = rustls::ClientConfig::builder_with_provider(weir::tls::certs::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// POSTs `pieces` x `piece` bytes over HTTP/2 without a Content-Length,
/// one DATA frame per piece; returns the status and `weir-error`.
async fn h2_post_in_pieces(
    sender: &mut hyper::client::conn::http2::SendRequest<support::upstream::ChannelBody>,
    scheme: &str,
    pieces: usize,
    piece: usize,
) -> (http::StatusCode, Option<String>) {
    let (tx, body) = support::upstream::channel_body(1);
    let req = http::Request::post(format!("{scheme}://localhost/api/upload"))
        .body(body)
        .expect("request");
    let feed = tokio::spawn(async move {
        for _ in 0..pieces {
            // Weir may refuse (and the stream end) before every piece is
            // taken: the client stops sending then.
            if tx
                .send(bytes::Bytes::from(vec![b'x'; piece]))
                .await
                .is_err()
            {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    let response = tokio::time::timeout(support::STEP, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("response");
    let status = response.status();
    let reason = response
        .headers()
        .get("weir-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = tokio::time::timeout(
        support::STEP,
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await;
    feed.abort();
    (status, reason)
}

#[tokio::test]
async fn h2_body_over_the_limit_without_length_gets_413() {
    let up = support::upstream::Upstream::echo().start().await;
    let pki = support::pki::pki(&[&["localhost"]]);
    let w = h2_body_proxy(&up, &pki).await;
    for (listener, scheme, ca) in [("web", "http", None), ("tls", "https", Some(&pki.ca))] {
        let before = up.stats.body_bytes();
        let mut sender = h2_sender(w.addr(listener), ca).await;
        let (status, reason) = h2_post_in_pieces(&mut sender, scheme, 4, 1024).await;
        assert_eq!(status, 413, "{listener}");
        assert_eq!(reason.as_deref(), Some("body-too-large"), "{listener}");
        let forwarded = up.stats.body_bytes() - before;
        assert!(
            forwarded <= 1024,
            "{listener}: the upstream got {forwarded} body bytes, over max_body_bytes"
        );
        // The connection still serves.
        let (status, _) = h2_post_in_pieces(&mut sender, scheme, 2, 100).await;
        assert_eq!(
            status, 200,
            "{listener}: the next request on the connection"
        );
    }
}

#[tokio::test]
async fn h2_body_within_the_limit_without_length_passes() {
    let up = support::upstream::Upstream::echo().start().await;
    let pki = support::pki::pki(&[&["localhost"]]);
    let w = h2_body_proxy(&up, &pki).await;
    for (listener, scheme, ca) in [("web", "http", None), ("tls", "https", Some(&pki.ca))] {
        let before = up.stats.body_bytes();
        let mut sender = h2_sender(w.addr(listener), ca).await;
        // Exactly max_body_bytes, in pieces.
        let (status, reason) = h2_post_in_pieces(&mut sender, scheme, 4, 256).await;
        assert_eq!(status, 200, "{listener}: {reason:?}");
        assert_eq!(up.stats.body_bytes() - before, 1024, "{listener}");
    }
}

/// A reload that lowers `max_body_bytes` holds the next request on a
/// connection opened before it, for a body without a length as for one
/// with: HTTP/1.1 chunked and HTTP/2 alike.
#[tokio::test]
async fn a_reloaded_body_limit_binds_connections_already_open() {
    let up = support::upstream::Upstream::echo().start().await;
    let proxy = |limit: &str| {
        config(&format!(
            "[limits]\nmax_body_bytes = \"{limit}\"\n\n[[routes]]\npath = \"/api/\"\nbackends = [{{ service = \"api\" }}]\n\n[services.api]\nendpoints = [\"{}\"]\n",
            up.endpoint()
        ))
    };
    let w = weir().start(&proxy("1MiB")).await;
    let chunked = |bytes: usize| {
        format!(
            "POST /api/up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{bytes:X}\r\n{}\r\n0\r\n\r\n",
            "x".repeat(bytes)
        )
    };
    let mut h1 = TcpStream::connect(w.addr("web")).await.expect("connect");
    h1.write_all(chunked(4096).as_bytes()).await.expect("write");
    let first = status_of_next_response(&mut h1).await;
    assert_eq!(first, 200, "4 KiB under the first limit");
    let mut h2 = h2_sender(w.addr("web"), None).await;
    assert_eq!(h2_post_in_pieces(&mut h2, "http", 4, 1024).await.0, 200);

    w.write_config(&proxy("1KiB"));
    let reloaded = support::send(w.admin, support::request("POST", "/reload", &[])).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());

    h1.write_all(chunked(4096).as_bytes()).await.expect("write");
    assert_eq!(
        status_of_next_response(&mut h1).await,
        413,
        "HTTP/1.1, same connection"
    );
    let (status, reason) = h2_post_in_pieces(&mut h2, "http", 4, 1024).await;
    assert_eq!(status, 413, "HTTP/2, same connection");
    assert_eq!(reason.as_deref(), Some("body-too-large"));
}

/// Reads one response with a Content-Length off `stream` and returns its
/// status, leaving the stream at the next response.
async fn status_of_next_response(stream: &mut TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + support::STEP;
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("a length"))
                .expect("a Content-Length");
            if got.len() >= end + 4 + length {
                return head[9..12].parse().expect("a status");
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}
