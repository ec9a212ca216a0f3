//! Issue "Hot reload", listener diff: a reload binds added listeners,
//! stops accepting on removed ones, keeps the sockets of unchanged ones
//! (same port, open connections undisturbed), and fails cleanly, old
//! config kept, when a new listener cannot bind.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::{Weir, eventually, get, request, send, weir};

const SITE: &str =
    "[[routes]]\npath = \"/\"\nbackends = [{ site = \"s\" }]\n\n[sites.s]\nroot = \"s\"\n";

fn config(listeners: &[(&str, &str)]) -> String {
    let mut out =
        String::from("[admin]\nlisten = \"127.0.0.1:0\"\n\n[access_log]\nformat = \"off\"\n\n");
    for (name, bind) in listeners {
        out.push_str(&format!(
            "[[listeners]]\nname = \"{name}\"\nbind = [\"{bind}\"]\n\n"
        ));
    }
    out + SITE
}

async fn start(listeners: &[(&str, &str)]) -> Weir {
    weir().file("s/a.txt", "a").start(&config(listeners)).await
}

async fn status(admin: SocketAddr) -> Value {
    serde_json::from_slice(&get(admin, "/status").await.body).expect("status JSON")
}

/// The TCP address `/status` lists for `listener`.
async fn bound(admin: SocketAddr, listener: &str) -> Option<SocketAddr> {
    let status = status(admin).await;
    status["listeners"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == listener)?["tcp"][0]
        .as_str()?
        .parse()
        .ok()
}

async fn reload(w: &Weir, config: &str) -> support::Reply {
    w.write_config(config);
    send(w.admin, request("POST", "/reload", &[])).await
}

#[tokio::test]
async fn a_reload_adds_and_removes_listeners_and_keeps_the_others() {
    let w = start(&[("web", "127.0.0.1:0"), ("old", "127.0.0.1:0")]).await;
    let web = w.addr("web");
    let old = w.addr("old");
    assert_eq!(get(old, "/a.txt").await.text(), "a");

    // A keep-alive connection on `web`, opened before the reload.
    let stream = tokio::net::TcpStream::connect(web).await.unwrap();
    let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let first = client.send_request(hello(web)).await.unwrap();
    assert_eq!(first.status(), 200);
    first.into_body().collect().await.unwrap();

    let reply = reload(
        &w,
        &config(&[("web", "127.0.0.1:0"), ("new", "127.0.0.1:0")]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // `web` kept its socket: the same port (a rebind of :0 would get
    // another one) and the open connection still answers.
    assert_eq!(bound(w.admin, "web").await, Some(web));
    let again = client.send_request(hello(web)).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(get(web, "/a.txt").await.text(), "a");

    let new = bound(w.admin, "new")
        .await
        .expect("the new listener is listed");
    assert_eq!(get(new, "/a.txt").await.text(), "a");
    assert!(bound(w.admin, "old").await.is_none());
    assert!(
        eventually(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(old).await.is_err()
        })
        .await,
        "the removed listener still accepts"
    );
}

fn hello(addr: SocketAddr) -> http::Request<Empty<Bytes>> {
    http::Request::builder()
        .uri("/a.txt")
        .header("host", addr.to_string())
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn a_listener_that_cannot_bind_fails_the_reload_and_changes_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let w = start(&[("web", "127.0.0.1:0")]).await;
    let web = w.addr("web");
    let bad = config(&[
        ("web", "127.0.0.1:0"),
        ("fresh", "127.0.0.1:0"),
        ("clash", &format!("127.0.0.1:{port}")),
    ]);
    let reply = reload(&w, &bad).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    let error = body["errors"][0].as_str().unwrap_or_default().to_owned();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{body}");
    assert!(error.contains("clash"), "{body}");

    let status = status(w.admin).await;
    assert_eq!(status["generation"], 1, "{status}");
    assert_eq!(
        status["listeners"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert_eq!(get(web, "/a.txt").await.text(), "a");
    let metrics = get(w.admin, "/metrics").await.text();
    assert!(
        metrics.contains("weir_config_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
    drop(taken);
}

#[tokio::test]
async fn moving_the_admin_listener_needs_a_restart() {
    let w = start(&[("web", "127.0.0.1:0")]).await;
    let moved = config(&[("web", "127.0.0.1:0")])
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.2:0\"");
    let reply = reload(&w, &moved).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("admin.listen"), "{}", reply.text());
}
