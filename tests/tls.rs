//! TLS termination smoke tests: SNI picks the certificate by SAN (first is
//! the default), ALPN chooses HTTP/2 or HTTP/1.1, clients verify against a
//! CA made in the test (verification is never disabled). Bad input: TLS 1.2
//! clients under `min_version = "1.3"`, truncated and corrupt ClientHellos,
//! handshakes that never finish.

mod support;

use support::pki::{Pki, pki};

use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn connector(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(weir::tls::certs::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn start(pki: &Pki) -> support::Weir {
    start_with(pki, "").await
}

/// `tls_extra` goes into `[listeners.tls]` (e.g. `hsts = "..."`).
async fn start_with(pki: &Pki, tls_extra: &str) -> support::Weir {
    start_full(pki, tls_extra, "").await
}

/// As `start_with`, plus `extra` tables at the end (e.g. `[limits]`).
async fn start_full(pki: &Pki, tls_extra: &str, extra: &str) -> support::Weir {
    let mut builder = support::weir().file("www/index.html", "secure\n");
    let mut certs = Vec::new();
    for (i, (cert, key, _)) in pki.leaves.iter().enumerate() {
        builder = builder
            .file(&format!("c{i}.pem"), cert)
            .file(&format!("k{i}.pem"), key);
        certs.push(format!("{{ cert = \"c{i}.pem\", key = \"k{i}.pem\" }}"));
    }
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"tls\"\nbind = [\"127.0.0.1:0\"]\n[listeners.tls]\ncerts = [{}]\n{tls_extra}\n\n[access_log]\nformat = \"off\"\n\n[[routes]]\npath = \"/\"\nbackends = [{{ site = \"www\" }}]\n\n[sites.www]\nroot = \"www\"\n\n{extra}\n",
        certs.join(", ")
    );
    builder.start(&config).await
}

/// Handshakes with `server_name`; returns the leaf the server presented and the ALPN.
async fn handshake(
    addr: std::net::SocketAddr,
    connector: &TlsConnector,
    server_name: &str,
) -> (
    tokio_rustls::client::TlsStream<TcpStream>,
    CertificateDer<'static>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let stream = tokio::time::timeout(support::STEP, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake verified");
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    (stream, leaf)
}

/// A connection that agreed on http/1.1, with `bytes` written on it.
async fn h1_sent(
    w: &support::Weir,
    pki: &Pki,
    bytes: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let (mut stream, _) = handshake(
        w.addr("tls"),
        &connector(&pki.ca, &[b"http/1.1"]),
        "localhost",
    )
    .await;
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

#[tokio::test]
async fn sni_picks_the_certificate_by_san() {
    let pki = pki(&[
        &["localhost", "127.0.0.1"],
        &["app.example.com"],
        &["*.example.net"],
    ]);
    let w = start(&pki).await;
    let c = connector(&pki.ca, &[b"http/1.1"]);
    for (name, want) in [
        ("localhost", 0),
        ("app.example.com", 1),
        ("x.example.net", 2),
    ] {
        let (_, leaf) = handshake(w.addr("tls"), &c, name).await;
        assert_eq!(leaf, pki.leaves[want].2, "{name}");
    }
    // An IP address sends no SNI: the first certificate is the default
    // (it carries the IP SAN, so the verifying client accepts it).
    let (_, leaf) = handshake(w.addr("tls"), &c, "127.0.0.1").await;
    assert_eq!(leaf, pki.leaves[0].2, "no SNI gets the first certificate");
}

#[tokio::test]
async fn alpn_h2_and_http11_both_serve() {
    let pki = pki(&[&["localhost"]]);
    let w = start(&pki).await;

    let (stream, _) = handshake(w.addr("tls"), &connector(&pki.ca, &[b"h2"]), "localhost").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("https://localhost/")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let reply = sender.send_request(req).await.unwrap();
    assert_eq!(reply.version(), http::Version::HTTP_2);
    assert_eq!(
        reply.into_body().collect().await.unwrap().to_bytes(),
        "secure\n"
    );

    let (stream, _) = handshake(
        w.addr("tls"),
        &connector(&pki.ca, &[b"http/1.1"]),
        "localhost",
    )
    .await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let reply = sender.send_request(req).await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.into_body().collect().await.unwrap().to_bytes(),
        "secure\n"
    );
}

#[tokio::test]
async fn plaintext_on_the_tls_port_is_dropped_and_server_keeps_serving() {
    let pki = pki(&[&["localhost"]]);
    let w = start(&pki).await;
    let (reply, closed) = support::raw(
        w.addr("tls"),
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(closed, "plaintext connection left open");
    assert!(!reply.contains("secure"), "served content over plaintext");
    let (_, leaf) = handshake(
        w.addr("tls"),
        &connector(&pki.ca, &[b"http/1.1"]),
        "localhost",
    )
    .await;
    assert_eq!(leaf, pki.leaves[0].2);
    let metrics = support::get(w.admin, "/metrics").await.text();
    for line in [
        r#"weir_tls_handshakes_total{listener="tls",result="failed"} 1"#,
        r#"weir_tls_handshakes_total{listener="tls",result="ok"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

async fn get_over_tls(
    w: &support::Weir,
    pki: &Pki,
    alpn: &[u8],
) -> http::Response<hyper::body::Incoming> {
    let (stream, _) = handshake(w.addr("tls"), &connector(&pki.ca, &[alpn]), "localhost").await;
    let req = http::Request::get("https://localhost/")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    if alpn == b"h2" {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    }
}

#[tokio::test]
async fn hsts_is_on_every_tls_response_when_configured() {
    let pki = pki(&[&["localhost"]]);
    let w = start_with(&pki, "hsts = \"max-age=63072000; includeSubDomains\"").await;
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let reply = get_over_tls(&w, &pki, alpn).await;
        assert_eq!(
            reply
                .headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=63072000; includeSubDomains"),
            "{alpn:?}"
        );
    }
    let plain = start(&pki).await;
    let reply = get_over_tls(&plain, &pki, b"http/1.1").await;
    assert!(reply.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn a_client_that_agreed_on_http11_never_gets_http2() {
    use tokio::io::AsyncReadExt;
    let pki = pki(&[&["localhost"]]);
    let w = start(&pki).await;
    let mut stream = h1_sent(&w, &pki, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(support::STEP, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    // An HTTP/2 server would answer with a SETTINGS frame (type 0x4 at byte 3).
    let h2_settings = n >= 9 && buf[3] == 0x04;
    assert!(
        !h2_settings,
        "served HTTP/2 after ALPN http/1.1: {:?}",
        &buf[..n]
    );
}

/// A client config that speaks only `versions`, trusting the test CA.
fn client_config(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(weir::tls::certs::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Tries a full handshake with `config`; `Ok` carries the version agreed.
async fn try_handshake(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> Result<rustls::ProtocolVersion, std::io::Error> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let stream = tokio::time::timeout(support::STEP, connector.connect(name, tcp))
        .await
        .expect("handshake ended in time")?;
    Ok(stream.get_ref().1.protocol_version().expect("version"))
}

/// The first flight of a real TLS client: its ClientHello record(s).
fn client_hello() -> Vec<u8> {
    let pki = pki(&[&["localhost"]]);
    let config = client_config(&pki.ca, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    assert!(
        hello.len() > 100,
        "a ClientHello is larger than {}",
        hello.len()
    );
    hello
}

#[tokio::test]
async fn tls12_only_clients_are_refused_when_min_version_is_13() {
    let pki = pki(&[&["localhost"]]);
    let tls12 = || client_config(&pki.ca, &[&rustls::version::TLS12]);
    let tls13 = || client_config(&pki.ca, &[&rustls::version::TLS13]);

    // Control: the default minimum (1.2) lets the same client in.
    let lenient = start(&pki).await;
    let agreed = try_handshake(lenient.addr("tls"), tls12()).await;
    assert_eq!(agreed.ok(), Some(rustls::ProtocolVersion::TLSv1_2));

    let strict = start_with(&pki, "min_version = \"1.3\"").await;
    let refused = try_handshake(strict.addr("tls"), tls12()).await;
    assert!(refused.is_err(), "a TLS 1.2 client got in: {refused:?}");
    let agreed = try_handshake(strict.addr("tls"), tls13()).await;
    assert_eq!(agreed.ok(), Some(rustls::ProtocolVersion::TLSv1_3));
    let metrics = support::get(strict.admin, "/metrics").await.text();
    let failed = r#"weir_tls_handshakes_total{listener="tls",result="failed"} 1"#;
    assert!(metrics.contains(failed), "missing {failed} in\n{metrics}");
}

#[tokio::test]
async fn a_truncated_client_hello_does_not_disturb_the_server() {
    use tokio::io::AsyncWriteExt;
    let pki = pki(&[&["localhost"]]);
    let w = start(&pki).await;
    let hello = client_hello();
    for cut in [1, 5, 6, hello.len() / 2, hello.len() - 1] {
        let mut tcp = TcpStream::connect(w.addr("tls")).await.unwrap();
        tcp.write_all(&hello[..cut]).await.unwrap();
        drop(tcp);
    }
    // Garbage after a record header that promises a ClientHello.
    let mut bogus = hello[..5].to_vec();
    bogus.extend(std::iter::repeat_n(0xAB, hello.len() - 5));
    let (_, closed) = support::raw(w.addr("tls"), &bogus, support::STEP).await;
    assert!(closed, "a corrupt ClientHello left the connection open");

    let reply = get_over_tls(&w, &pki, b"http/1.1").await;
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.into_body().collect().await.unwrap().to_bytes(),
        "secure\n"
    );
    let failed = r#"weir_tls_handshakes_total{listener="tls",result="failed"} 6"#;
    let counted = support::eventually(support::STEP, || async {
        support::get(w.admin, "/metrics")
            .await
            .text()
            .contains(failed)
    })
    .await;
    assert!(counted, "expected {failed}");
}

#[tokio::test]
async fn a_handshake_that_never_finishes_is_closed_at_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let pki = pki(&[&["localhost"]]);
    let w = start_full(&pki, "", "[limits]\nheader_read_timeout = \"1s\"").await;
    let hello = client_hello();
    // Well past 1s, well short of "never".
    let wait = std::time::Duration::from_secs(8);

    let mut silent = TcpStream::connect(w.addr("tls")).await.unwrap();
    let mut half = TcpStream::connect(w.addr("tls")).await.unwrap();
    half.write_all(&hello[..hello.len() / 2]).await.unwrap();
    let started = std::time::Instant::now();
    let (silent_closed, half_closed) = tokio::join!(
        support::read_until_closed(&mut silent, wait),
        support::read_until_closed(&mut half, wait),
    );
    assert!(silent_closed.1, "a silent client was kept past {wait:?}");
    assert!(half_closed.1, "half a ClientHello was kept past {wait:?}");
    assert!(started.elapsed() < wait);

    let timeouts = r#"weir_tls_handshakes_total{listener="tls",result="timeout"} 2"#;
    let counted = support::eventually(support::STEP, || async {
        support::get(w.admin, "/metrics")
            .await
            .text()
            .contains(timeouts)
    })
    .await;
    assert!(counted, "expected {timeouts}");
    // The server still serves.
    assert_eq!(get_over_tls(&w, &pki, b"http/1.1").await.status(), 200);
}

#[tokio::test]
async fn a_tls_client_that_closes_while_its_request_waits_ends_the_upstream_request() {
    let pki = pki(&[&["localhost"]]);
    let (endpoint, got, closed) = support::upstream::silent().await;
    let w = start_full(
        &pki,
        "",
        &format!(
            "[[routes]]\npath = \"/api/\"\nbackends = [{{ service = \"api\" }}]\n\n\
             [services.api]\nendpoints = [\"{endpoint}\"]\n"
        ),
    )
    .await;
    let mut stream = h1_sent(
        &w,
        &pki,
        b"GET /api/gone HTTP/1.1\r\nhost: localhost\r\n\r\n",
    )
    .await;
    tokio::time::timeout(support::STEP, got)
        .await
        .expect("the request reaches the upstream")
        .unwrap();
    // A close_notify, then the TCP close.
    stream.shutdown().await.unwrap();
    drop(stream);
    tokio::time::timeout(std::time::Duration::from_secs(5), closed)
        .await
        .expect("weir closes the upstream connection when its TLS client goes")
        .unwrap();
}

#[tokio::test]
async fn a_request_from_a_tls_listener_reaches_the_upstream_as_https() {
    let pki = pki(&[&["localhost"]]);
    let up = support::upstream::Upstream::echo().start().await;
    let w = start_full(
        &pki,
        "",
        &format!(
            "[[routes]]\npath = \"/api/\"\nbackends = [{{ service = \"api\" }}]\n\n\
             [services.api]\nendpoints = [\"{}\"]\n",
            up.endpoint()
        ),
    )
    .await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let name = String::from_utf8_lossy(alpn);
        let (stream, _) = handshake(w.addr("tls"), &connector(&pki.ca, &[alpn]), "localhost").await;
        // A client's own claim is replaced, never passed on.
        let req = http::Request::get("https://localhost/api/x")
            .header("host", "localhost")
            .header("x-forwarded-proto", "http")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let reply = if alpn == b"h2" {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            sender.send_request(req).await.unwrap()
        };
        assert_eq!(reply.status(), 200, "{name}");
        let body = reply.into_body().collect().await.unwrap().to_bytes();
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let proto: Vec<&str> = echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| pair[0] == "x-forwarded-proto")
            .map(|pair| pair[1].as_str().unwrap())
            .collect();
        assert_eq!(proto, ["https"], "{name}: {echo}");
    }
}
