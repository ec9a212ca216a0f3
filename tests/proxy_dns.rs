//! SPEC "Health and failover", DNS: a named endpoint resolves through the
//! configured `[dns]` server, follows the record at its TTL, and keeps the
//! last good addresses when resolution fails. Uses a DNS responder on
//! loopback, never the system resolver.

mod support;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{eventually, get, weir};

/// An upstream on `addr` that answers every request with `name`.
async fn upstream(addr: SocketAddr, name: &'static str) -> Option<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await.ok()?;
    Some(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(name))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

/// Two upstreams on the same port of 127.0.0.1 and 127.0.0.2.
async fn pair() -> (
    u16,
    tokio::task::JoinHandle<()>,
    tokio::task::JoinHandle<()>,
) {
    for _ in 0..20 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let Some(a) = upstream(SocketAddr::from(([127, 0, 0, 1], port)), "first").await else {
            continue;
        };
        match upstream(SocketAddr::from(([127, 0, 0, 2], port)), "second").await {
            Some(b) => return (port, a, b),
            None => a.abort(),
        }
    }
    panic!("no free port on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test]
async fn named_endpoint_follows_its_record_and_survives_failures() {
    let dns = support::dns::TestDns::start().await;
    let (port, _a, _b) = pair().await;
    dns.set("api.test", vec![IpAddr::from([127, 0, 0, 1])], 1);
    let config = support::config(&format!(
        r#"
[dns]
servers = ["{}"]
min_ttl = "1s"
max_ttl = "2s"

[[routes]]
path = "/"
backends = [{{ service = "api" }}]

[services.api]
endpoints = ["api.test:{port}"]
"#,
        dns.server()
    ));
    let w = weir().start(&config).await;
    let addr = w.addr("web");
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(addr, "/").await.text() == "first"
        })
        .await,
        "the name never resolved to the first upstream"
    );

    dns.set("api.test", vec![IpAddr::from([127, 0, 0, 2])], 1);
    assert!(
        eventually(Duration::from_secs(6), || async {
            get(addr, "/").await.text() == "second"
        })
        .await,
        "the new record was not picked up at its TTL"
    );

    // SERVFAIL: the last good address keeps serving.
    dns.fail(
        "api.test",
        hickory_resolver::proto::op::ResponseCode::ServFail,
    );
    let before = dns.queries("api.test");
    assert!(
        eventually(Duration::from_secs(6), || async {
            dns.queries("api.test") > before + 1
        })
        .await,
        "weir stopped asking after the failure"
    );
    for _ in 0..10 {
        assert_eq!(get(addr, "/").await.text(), "second", "last good set kept");
    }
    let status: serde_json::Value =
        serde_json::from_slice(&get(w.admin, "/status").await.body).unwrap();
    let endpoints = &status["services"][0]["regions"][0]["endpoints"];
    assert_eq!(
        endpoints[0]["address"],
        format!("127.0.0.2:{port}"),
        "{status}"
    );
}

#[tokio::test]
async fn a_name_that_never_resolved_has_no_endpoints() {
    let dns = support::dns::TestDns::start().await;
    let config = support::config(&format!(
        r#"
[dns]
servers = ["{}"]

[[routes]]
path = "/"
backends = [{{ service = "api" }}]

[services.api]
endpoints = ["nowhere.test:80"]
"#,
        dns.server()
    ));
    let w = weir().start(&config).await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            dns.queries("nowhere.test") > 0
        })
        .await,
        "never asked the configured server"
    );
    let reply = get(w.addr("web"), "/").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("weir-error"), Some("no-healthy-backend"));
}
