//! HTTP/3 (issue 7): QUIC on the TLS listener's UDP port serves the same
//! routes as TCP (a site and proxied services), advertises itself with
//! Alt-Svc on TCP, shows up in metrics as `protocol="h3"`, rotates
//! certificates on reload, survives garbage datagrams and drains cleanly.
//! The client is quinn + h3 trusting a CA made in the test.

mod support;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use rustls::pki_types::CertificateDer;

use support::pki::{Pki, pki};
use support::upstream::Upstream;
use support::{STEP, Weir};

/// An HTTP/3 client connection.
struct H3 {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
    _driver: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn connect(addr: SocketAddr, ca: &CertificateDer<'static>) -> H3 {
    tokio::time::timeout(STEP, try_connect(addr, ca))
        .await
        .expect("QUIC connection in time")
        .expect("QUIC connection verified")
}

async fn try_connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
) -> Result<H3, Box<dyn std::error::Error + Send + Sync>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(weir::tls::certs::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = endpoint.connect(addr, "localhost")?.await?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
    let driver = tokio::spawn(async move {
        let _ = poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok(H3 {
        send,
        conn,
        _endpoint: endpoint,
        _driver: driver,
    })
}

impl H3 {
    async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], None).await
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<Bytes>>,
    ) -> Reply {
        tokio::time::timeout(STEP, self.try_request(method, path, headers, body))
            .await
            .expect("HTTP/3 request in time")
            .expect("HTTP/3 request")
    }

    async fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<Bytes>>,
    ) -> Result<Reply, h3::error::StreamError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder.body(()).expect("request");
        let mut send = self.send.clone();
        let mut stream = send.send_request(req).await?;
        for chunk in body.unwrap_or_default() {
            stream.send_data(chunk).await?;
        }
        stream.finish().await?;
        let response = stream.recv_response().await?;
        let mut body = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
        }
        let trailers = stream.recv_trailers().await?;
        let (parts, ()) = response.into_parts();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.freeze(),
            trailers,
        })
    }
}

/// A TLS listener `tls` (http3 as given) with the site `www` on `/`, the
/// echo upstream on `/api/` and the h2c echo (gRPC-style) on `/grpc/`.
fn h3_config(http3: bool, api: &Upstream, grpc: &Upstream, extra: &str) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "tls"
bind = ["127.0.0.1:0"]
http3 = {http3}
[listeners.tls]
certs = [{{ cert = "c.pem", key = "k.pem" }}]

[access_log]
format = "off"

[[routes]]
path = "/api/"
backends = [{{ service = "api" }}]

[[routes]]
path = "/grpc/"
backends = [{{ service = "grpc" }}]

[[routes]]
path = "/"
backends = [{{ site = "www" }}]

[sites.www]
root = "www"

[services.api]
endpoints = ["{api}"]

[services.grpc]
endpoints = ["{grpc}"]
protocol = "h2c"

{extra}
"#,
        api = api.endpoint(),
        grpc = grpc.endpoint(),
    )
}

async fn start(pki: &Pki, http3: bool, api: &Upstream, grpc: &Upstream, extra: &str) -> Weir {
    let (cert, key, _) = &pki.leaves[0];
    support::weir()
        .file("c.pem", cert)
        .file("k.pem", key)
        .file("www/index.html", "<h1>over quic</h1>\n")
        .file("www/app.js", "console.log('h3');\n")
        .start(&h3_config(http3, api, grpc, extra))
        .await
}

/// The standard setup: a CA, weir with http3 on, and both upstreams.
async fn setup(extra: &str) -> (Pki, Upstream, Upstream, Weir) {
    let pki = pki(&[&["localhost", "127.0.0.1"]]);
    let api = Upstream::echo().start().await;
    let grpc = Upstream::grpc().await;
    let w = start(&pki, true, &api, &grpc, extra).await;
    (pki, api, grpc, w)
}

#[tokio::test]
async fn h3_serves_a_static_file_with_its_headers() {
    let (pki, _api, _grpc, w) = setup("").await;
    let client = connect(w.addr("tls"), &pki.ca).await;
    let reply = client.get("/app.js").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "console.log('h3');\n");
    assert_eq!(
        reply.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(reply.header("etag").is_some(), "{:?}", reply.headers);
    assert!(reply.header("x-request-id").is_some());
    assert!(reply.header("connection").is_none());

    let index = client.get("/").await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(index.body, "<h1>over quic</h1>\n");
}

#[tokio::test]
async fn h3_not_found_and_head() {
    let (pki, _api, _grpc, w) = setup("").await;
    let client = connect(w.addr("tls"), &pki.ca).await;
    let missing = client.get("/no-such-file.css").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let head = client.request("HEAD", "/app.js", &[], None).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("19"));
    assert!(head.body.is_empty(), "HEAD had a body: {:?}", head.body);
}

#[tokio::test]
async fn h3_proxies_to_an_upstream() {
    let (pki, api, _grpc, w) = setup("").await;
    let client = connect(w.addr("tls"), &pki.ca).await;
    let reply = client.get("/api/users?id=7").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-upstream"), Some("echo"));
    let echo: serde_json::Value = serde_json::from_slice(&reply.body).expect("echo JSON");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "/api/users?id=7");
    assert_eq!(echo["body_bytes"], 0);
    let headers = echo["headers"].as_array().expect("headers");
    let has = |name: &str, value: &str| {
        headers
            .iter()
            .any(|pair| pair[0] == name && pair[1].as_str() == Some(value))
    };
    assert!(has("host", "localhost"), "{headers:?}");
    assert!(has("x-forwarded-proto", "https"), "{headers:?}");
    assert!(has("x-forwarded-for", "127.0.0.1"), "{headers:?}");
    // A GET goes upstream without a chunked body.
    assert!(
        !headers.iter().any(|pair| pair[0] == "transfer-encoding"),
        "{headers:?}"
    );
    assert_eq!(api.stats.requests(), 1);
}

#[tokio::test]
async fn h3_post_bodies_stream_to_upstreams() {
    let (pki, api, _grpc, w) = setup("").await;
    let client = connect(w.addr("tls"), &pki.ca).await;

    // HTTP/1.1 upstream: every byte arrives.
    let chunks: Vec<Bytes> = (0..16).map(|i| Bytes::from(vec![b'a' + i; 8192])).collect();
    let reply = client
        .request(
            "POST",
            "/api/upload",
            &[("content-length", "131072")],
            Some(chunks),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let echo: serde_json::Value = serde_json::from_slice(&reply.body).expect("echo JSON");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_bytes"], 131072);
    assert_eq!(api.stats.body_bytes(), 131072);

    // h2c upstream that echoes the body back with trailers.
    let parts = vec![Bytes::from_static(b"hello "), Bytes::from_static(b"quic")];
    let reply = client
        .request(
            "POST",
            "/grpc/echo",
            &[("content-type", "application/grpc")],
            Some(parts),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "hello quic");
    let trailers = reply.trailers.expect("trailers over h3");
    assert_eq!(
        trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
        Some("0")
    );
}

/// An HTTP/1.1 upstream's chunked trailers reach an HTTP/3 client as
/// HTTP/3 trailers, without the hop-by-hop fields HTTP/3 has no place for.
#[tokio::test]
async fn h3_gets_an_http11_upstream_s_trailers() {
    let up = support::upstream::Scripted::start(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: 42\r\nKeep-Alive: timeout=5\r\nGrpc-Status: 0\r\n\r\n"[..],
    )
    .await;
    let extra = format!(
        "[[routes]]\npath = \"/t/\"\nbackends = [{{ service = \"t\" }}]\n\n\
         [services.t]\nendpoints = [\"{}\"]\n",
        up.endpoint()
    );
    let (pki, _api, _grpc, w) = setup(&extra).await;
    let client = connect(w.addr("tls"), &pki.ca).await;
    let reply = client.get("/t/x").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "hello");
    let trailers = reply.trailers.expect("trailers over h3");
    let field = |name: &str| trailers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(field("x-checksum"), Some("42"), "{trailers:?}");
    assert_eq!(field("grpc-status"), Some("0"), "{trailers:?}");
    assert_eq!(field("keep-alive"), None, "{trailers:?}");
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn h3_body_over_the_limit_is_refused() {
    let (pki, api, _grpc, w) = setup("[limits]\nmax_body_bytes = \"1KiB\"\n").await;
    let client = connect(w.addr("tls"), &pki.ca).await;
    let reply = client
        .request(
            "POST",
            "/api/upload",
            &[("content-length", "4096")],
            Some(vec![Bytes::from(vec![b'x'; 4096])]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.stats.requests(), 0);
    // The connection still serves.
    assert_eq!(client.get("/app.js").await.status, StatusCode::OK);
}

#[tokio::test]
async fn h3_body_over_the_limit_without_a_length_is_413_and_no_upstream_failure() {
    let (pki, api, _grpc, w) = setup("[limits]\nmax_body_bytes = \"1KiB\"\n").await;
    let client = connect(w.addr("tls"), &pki.ca).await;
    let pieces = vec![Bytes::from(vec![b'x'; 1024]); 4];
    let reply = client
        .request("POST", "/api/upload", &[], Some(pieces))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(api.stats.body_bytes() <= 1024, "{}", api.stats.body_bytes());
    // The client's body was at fault: the upstream's attempt is no error.
    let metrics = support::get(w.admin, "/metrics").await.text();
    let failed = metrics
        .lines()
        .filter(|l| {
            l.starts_with("weir_upstream_attempts_total") && l.contains("outcome=\"error\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert_eq!(failed, 0, "{metrics}");
    assert_eq!(client.get("/app.js").await.status, StatusCode::OK);
}

#[tokio::test]
async fn h3_concurrent_streams_on_one_connection() {
    let (pki, api, _grpc, w) = setup("").await;
    let client = Arc::new(connect(w.addr("tls"), &pki.ca).await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let client = client.clone();
        tasks.spawn(async move {
            let path = if i % 2 == 0 {
                format!("/api/n/{i}")
            } else {
                "/app.js".to_owned()
            };
            (i, client.get(&path).await)
        });
    }
    let mut done = 0;
    while let Some(joined) = tokio::time::timeout(STEP, tasks.join_next())
        .await
        .expect("requests in time")
    {
        let (i, reply) = joined.expect("request task");
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
        if i % 2 == 0 {
            let echo: serde_json::Value = serde_json::from_slice(&reply.body).expect("echo");
            assert_eq!(echo["uri"], format!("/api/n/{i}"));
        } else {
            assert_eq!(reply.body, "console.log('h3');\n");
        }
        done += 1;
    }
    assert_eq!(done, 24);
    assert_eq!(api.stats.requests(), 12);
    assert!(
        client.conn.close_reason().is_none(),
        "one connection throughout"
    );
}

/// Alt-Svc over TCP TLS (h1 and h2), only when http3 is on.
async fn tcp_tls_headers(w: &Weir, pki: &Pki, alpn: &[u8]) -> HeaderMap {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).expect("CA");
    let mut config = rustls::ClientConfig::builder_with_provider(weir::tls::certs::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let req = Request::get("https://localhost/app.js")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    tokio::time::timeout(STEP, async {
        let tcp = tokio::net::TcpStream::connect(w.addr("tls"))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = connector.connect(name, tcp).await.expect("TLS");
        let response = if alpn == b"h2" {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .expect("h2");
            tokio::spawn(conn);
            sender.send_request(req).await.expect("response")
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("h1");
            tokio::spawn(conn);
            sender.send_request(req).await.expect("response")
        };
        assert_eq!(response.status(), StatusCode::OK);
        response.headers().clone()
    })
    .await
    .expect("TCP request in time")
}

#[tokio::test]
async fn alt_svc_is_advertised_on_tcp_only_when_http3_is_on() {
    let (pki, api, grpc, w) = setup("").await;
    let port = w.addr("tls").port();
    let want = format!("h3=\":{port}\"; ma=86400");
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let headers = tcp_tls_headers(&w, &pki, alpn).await;
        assert_eq!(
            headers.get("alt-svc").and_then(|v| v.to_str().ok()),
            Some(want.as_str()),
            "{alpn:?}"
        );
    }
    // The advertised port really speaks HTTP/3.
    let client = connect(SocketAddr::from(([127, 0, 0, 1], port)), &pki.ca).await;
    assert_eq!(client.get("/app.js").await.status, StatusCode::OK);

    let off = start(&pki, false, &api, &grpc, "").await;
    let headers = tcp_tls_headers(&off, &pki, b"http/1.1").await;
    assert!(headers.get("alt-svc").is_none(), "{headers:?}");
}

#[tokio::test]
async fn h3_connections_are_counted_as_protocol_h3() {
    let (pki, _api, _grpc, w) = setup("").await;
    let line = r#"weir_open_connections{listener="tls",protocol="h3"} 1"#;
    let client = connect(w.addr("tls"), &pki.ca).await;
    assert_eq!(client.get("/app.js").await.status, StatusCode::OK);
    let metrics = support::get(w.admin, "/metrics").await.text();
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    assert!(
        metrics.contains(r#"weir_tls_handshakes_total{listener="tls",result="ok"} 1"#),
        "{metrics}"
    );
    client.conn.close(0u32.into(), b"done");
    let closed = r#"weir_open_connections{listener="tls",protocol="h3"} 0"#;
    let gone = support::eventually(STEP, || async {
        support::get(w.admin, "/metrics")
            .await
            .text()
            .contains(closed)
    })
    .await;
    assert!(gone, "the h3 connection is still counted after it closed");
}

#[tokio::test]
async fn reload_rotates_the_quic_certificate() {
    let pki = pki(&[&["localhost", "127.0.0.1"], &["localhost"]]);
    let api = Upstream::echo().start().await;
    let grpc = Upstream::grpc().await;
    let w = start(&pki, true, &api, &grpc, "").await;
    let leaf = |client: &H3| -> CertificateDer<'static> {
        let identity = client.conn.peer_identity().expect("peer identity");
        let chain = identity
            .downcast::<Vec<CertificateDer<'static>>>()
            .expect("rustls chain");
        chain[0].clone()
    };
    let before = connect(w.addr("tls"), &pki.ca).await;
    assert_eq!(leaf(&before), pki.leaves[0].2);

    let (cert, key, _) = &pki.leaves[1];
    std::fs::write(w.path("c.pem"), cert).expect("write cert");
    std::fs::write(w.path("k.pem"), key).expect("write key");
    w.app.reload().await.expect("reload");
    let after = connect(w.addr("tls"), &pki.ca).await;
    assert_eq!(
        leaf(&after),
        pki.leaves[1].2,
        "QUIC kept the old certificate"
    );
    assert_eq!(after.get("/app.js").await.status, StatusCode::OK);
}

#[tokio::test]
async fn garbage_datagrams_do_not_disturb_the_server() {
    let (pki, _api, _grpc, w) = setup("").await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let junk: [&[u8]; 5] = [
        b"",
        b"\x00",
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xc0; 1200],
        &[0xff; 1350],
    ];
    for datagram in junk {
        socket.send_to(datagram, w.addr("tls")).await.expect("send");
    }
    // A long-header Initial with a bogus version and random payload.
    let mut initial = vec![0xc3, 0x0a, 0x0a, 0x0a, 0x0a, 8];
    initial.extend_from_slice(&[7; 8]);
    initial.push(8);
    initial.extend_from_slice(&[9; 8]);
    initial.resize(1200, 0x42);
    socket.send_to(&initial, w.addr("tls")).await.expect("send");

    let client = connect(w.addr("tls"), &pki.ca).await;
    assert_eq!(client.get("/app.js").await.status, StatusCode::OK);
}

#[tokio::test]
async fn drain_lets_an_in_flight_h3_request_finish() {
    let pki = pki(&[&["localhost", "127.0.0.1"]]);
    let api = Upstream::echo().slow(800).start().await;
    let grpc = Upstream::grpc().await;
    let mut w = start(
        &pki,
        true,
        &api,
        &grpc,
        "[limits]\nshutdown_grace = \"10s\"\n",
    )
    .await;
    let client = Arc::new(connect(w.addr("tls"), &pki.ca).await);
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.get("/api/slow").await })
    };
    let arrived = support::eventually(STEP, || async { api.stats.requests() == 1 }).await;
    assert!(arrived, "the request never reached the upstream");
    let stopped = w.begin_stop();
    let reply = tokio::time::timeout(STEP, in_flight)
        .await
        .expect("in-flight request finished in time")
        .expect("request task");
    assert_eq!(reply.status, StatusCode::OK);
    let clean = tokio::time::timeout(Duration::from_secs(30), stopped)
        .await
        .expect("server stopped")
        .expect("server task");
    assert!(clean, "drain reported requests still running");
    // After the drain the endpoint is closed: a new connection fails.
    let refused =
        tokio::time::timeout(Duration::from_secs(2), try_connect(w.addr("tls"), &pki.ca)).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a new QUIC connection was accepted after the drain"
    );
}

#[tokio::test]
async fn h3_get_without_a_body_is_retried_past_a_dead_endpoint() {
    // Only a request known to have no body may go to a second endpoint:
    // this fails if an h3 GET is taken for one with a body.
    let pki = pki(&[&["localhost", "127.0.0.1"]]);
    let api = Upstream::echo().start().await;
    let grpc = Upstream::grpc().await;
    let dead = support::upstream::dead_endpoint();
    let config = h3_config(true, &api, &grpc, "").replace(
        &format!("endpoints = [\"{}\"]", api.endpoint()),
        &format!("endpoints = [\"{dead}\", \"{}\"]", api.endpoint()),
    );
    let (cert, key, _) = &pki.leaves[0];
    let w = support::weir()
        .file("c.pem", cert)
        .file("k.pem", key)
        .dir("www")
        .start(&config)
        .await;
    let client = connect(w.addr("tls"), &pki.ca).await;
    for i in 0..4 {
        let reply = client.get(&format!("/api/{i}")).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "request {i}: {:?}",
            reply.headers
        );
    }
    assert_eq!(api.stats.requests(), 4);
}

/// The binary, so the access log really goes to stdout: an h3 request is
/// logged with `"protocol":"h3"`.
#[tokio::test]
async fn access_log_names_protocol_h3() {
    use std::io::BufRead;
    let pki = pki(&[&["localhost", "127.0.0.1"]]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = &pki.leaves[0];
    std::fs::write(dir.path().join("c.pem"), cert).expect("cert");
    std::fs::write(dir.path().join("k.pem"), key).expect("key");
    std::fs::create_dir(dir.path().join("www")).expect("www");
    std::fs::write(dir.path().join("www/app.js"), "1;\n").expect("file");
    let config = "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"tls\"\nbind = [\"127.0.0.1:0\"]\nhttp3 = true\n[listeners.tls]\ncerts = [{ cert = \"c.pem\", key = \"k.pem\" }]\n\n[access_log]\nformat = \"json\"\n\n[[routes]]\npath = \"/\"\nbackends = [{ site = \"www\" }]\n\n[sites.www]\nroot = \"www\"\n";
    std::fs::write(dir.path().join("weir.toml"), config).expect("config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c"])
        .arg(dir.path().join("weir.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn weir");
    let stdout = child.stdout.take().expect("stdout");
    // Stopped however the test ends.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Reap(child);
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str, pred: &dyn Fn(&str) -> bool| -> String {
        let deadline = std::time::Instant::now() + STEP;
        loop {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(wait) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("no stdout line {what}: {e}"),
            }
        }
    };
    let announced = next("announcing the listener", &|l| {
        l.contains(r#""event":"listening""#)
    });
    let announced: serde_json::Value = serde_json::from_str(&announced).expect("JSON line");
    let addr: SocketAddr = announced["listeners"][0]["addrs"][0]
        .as_str()
        .expect("listener address")
        .parse()
        .expect("listener address");

    let client = connect(addr, &pki.ca).await;
    assert_eq!(client.get("/app.js").await.status, StatusCode::OK);
    let line = next("with the access-log JSON", &|l| l.contains(r#""protocol""#));
    drop(child);
    let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(entry["protocol"], "h3", "{line}");
    assert_eq!(entry["path"], "/app.js", "{line}");
    assert_eq!(entry["status"], 200, "{line}");
}
