//! SPEC "Details": a service with `tls = { ca, server_name }` speaks TLS to
//! its endpoints, always verified; `protocol = "auto"` lets ALPN choose.

mod support;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use support::pki::pki;
use support::{get, weir};

/// A TLS upstream for `api.internal` that answers with the protocol it spoke.
async fn tls_upstream(cert_pem: &str, key_pem: &str) -> std::net::SocketAddr {
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(weir::tls::certs::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = format!("{:?}", req.version());
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn config(addr: std::net::SocketAddr, protocol: &str) -> String {
    support::one_service(
        addr,
        &format!(
            "protocol = \"{protocol}\"\ntls = {{ ca = \"ca.pem\", server_name = \"api.internal\" }}"
        ),
    )
}

#[tokio::test]
async fn tls_upstream_verified_with_alpn() {
    let pki = pki(&[&["api.internal"]]);
    let (cert, key, _) = &pki.leaves[0];
    let addr = tls_upstream(cert, key).await;
    let w = weir()
        .file("ca.pem", pki.ca_pem())
        .start(&config(addr, "auto"))
        .await;
    let reply = get(w.addr("web"), "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "HTTP/2.0", "ALPN chose h2");

    let w1 = weir()
        .file("ca.pem", pki.ca_pem())
        .start(&config(addr, "http1"))
        .await;
    let reply = get(w1.addr("web"), "/").await;
    assert_eq!(reply.text(), "HTTP/1.1", "http1 offers only http/1.1");
}

#[tokio::test]
async fn tls_upstream_with_an_untrusted_certificate_is_refused() {
    let served = pki(&[&["api.internal"]]);
    let other = pki(&[&["api.internal"]]);
    let (cert, key, _) = &served.leaves[0];
    let addr = tls_upstream(cert, key).await;
    // weir trusts a different CA: the handshake must fail, never be skipped.
    let w = weir()
        .file("ca.pem", other.ca_pem())
        .start(&config(addr, "auto"))
        .await;
    let reply = get(w.addr("web"), "/").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("weir-error"), Some("upstream-connect-failed"));
}

#[tokio::test]
async fn a_named_endpoint_is_verified_against_its_name() {
    // No server_name: the certificate must name the host the endpoint
    // names, not the address it resolved to.
    let pki = pki(&[&["api.internal"]]);
    let (cert, key, _) = &pki.leaves[0];
    let addr = tls_upstream(cert, key).await;
    let dns = support::dns::TestDns::start().await;
    dns.set("api.internal", vec![addr.ip()], 30);
    let w = weir()
        .file("ca.pem", pki.ca_pem())
        .start(&support::config(&format!(
            r#"
[dns]
servers = ["{}"]

[[routes]]
path = "/"
backends = [{{ service = "api" }}]

[services.api]
endpoints = ["api.internal:{}"]
tls = {{ ca = "ca.pem" }}
"#,
            dns.server(),
            addr.port()
        )))
        .await;
    // The name resolves just after start.
    support::eventually(std::time::Duration::from_secs(5), || async {
        get(w.addr("web"), "/").await.status != 503
    })
    .await;
    let reply = get(w.addr("web"), "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn a_trusted_certificate_for_another_name_is_refused() {
    // The CA is the one weir trusts; the certificate names other.internal.
    let pki = pki(&[&["other.internal"]]);
    let (cert, key, _) = &pki.leaves[0];
    let addr = tls_upstream(cert, key).await;
    let w = weir()
        .file("ca.pem", pki.ca_pem())
        .start(&config(addr, "auto"))
        .await;
    let reply = get(w.addr("web"), "/").await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.header("weir-error"), Some("upstream-connect-failed"));
}

#[tokio::test]
async fn tls_true_trusts_the_system_roots_only() {
    // A certificate valid for the endpoint's address, from a private CA.
    let pki = pki(&[&["api.internal", "127.0.0.1"]]);
    let (cert, key, _) = &pki.leaves[0];
    let addr = tls_upstream(cert, key).await;
    let with = |tls: &str| {
        support::config(&format!(
            r#"
[[routes]]
path = "/"
backends = [{{ service = "api" }}]

[services.api]
endpoints = ["{addr}"]
tls = {tls}
"#
        ))
    };
    // Control: trusting the private CA, the same upstream is fine.
    let trusting = weir()
        .file("ca.pem", pki.ca_pem())
        .start(&with(r#"{ ca = "ca.pem" }"#))
        .await;
    let reply = get(trusting.addr("web"), "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let system = weir().start(&with("true")).await;
    let reply = get(system.addr("web"), "/").await;
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert_eq!(reply.header("weir-error"), Some("upstream-connect-failed"));
}
