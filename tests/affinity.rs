//! SPEC "Splitting, affinity, rollout" and "Details": the affinity cookie
//! (HttpOnly, SameSite=Lax, Secure on TLS, Max-Age), signed so a forged one
//! is ignored, bound to the backend name so it survives a reload, re-pinned
//! when its backend goes to weight 0 or loses its last healthy endpoint;
//! `override_header` wins over it.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use support::{Reply, config, eventually, get, request, send, weir};

const COOKIE: &str = "weir_app";

/// Sites `a` and `b`, each answering its own name at `/id.txt`.
fn sites() -> support::Builder {
    weir().file("a/id.txt", "a").file("b/id.txt", "b")
}

/// One route over `a` and `b` with the given weights and route options.
fn routes(wa: u32, wb: u32, options: &str) -> String {
    config(&format!(
        "[[routes]]\nname = \"app\"\npath = \"/\"\nbackends = [{{ site = \"a\", weight = {wa} }}, {{ site = \"b\", weight = {wb} }}]\n{options}\n\n[sites.a]\nroot = \"a\"\n\n[sites.b]\nroot = \"b\"\n"
    ))
}

fn affinity() -> String {
    format!("affinity = {{ cookie = \"{COOKIE}\", max_age = \"1h\" }}")
}

async fn fetch(addr: SocketAddr, headers: &[(&str, &str)]) -> Reply {
    let reply = send(addr, request("GET", "/id.txt", headers)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
}

/// `NAME=VALUE` of the response's affinity cookie, if it set one.
fn pin(reply: &Reply) -> Option<String> {
    let set = reply.header("set-cookie")?;
    let pair = set.split(';').next().unwrap();
    assert!(pair.starts_with(&format!("{COOKIE}=")), "{set}");
    Some(pair.to_owned())
}

/// The backend a `NAME=backend.SIG` cookie names.
fn named(cookie: &str) -> &str {
    let value = cookie.split_once('=').unwrap().1;
    value.rsplit_once('.').unwrap().0
}

async fn reload(w: &support::Weir, config: &str) {
    w.write_config(config);
    let reply = send(w.admin, request("POST", "/reload", &[])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

async fn generation(admin: SocketAddr) -> u64 {
    let status: serde_json::Value =
        serde_json::from_slice(&get(admin, "/status").await.body).expect("status JSON");
    status["generation"].as_u64().expect("generation")
}

#[tokio::test]
async fn a_client_stays_on_its_backend_across_a_fifty_fifty_split() {
    let w = sites().start(&routes(50, 50, &affinity())).await;
    let addr = w.addr("web");

    let first = fetch(addr, &[]).await;
    let set = first
        .header("set-cookie")
        .expect("a first request is pinned");
    let attributes: Vec<&str> = set.split("; ").skip(1).collect();
    assert_eq!(
        attributes,
        ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=3600"],
        "no Secure on plain HTTP: {set}"
    );
    let cookie = pin(&first).unwrap();
    assert_eq!(named(&cookie), first.text(), "the cookie names the backend");

    for i in 0..50 {
        let reply = fetch(addr, &[("cookie", &format!("other=1; {cookie}"))]).await;
        assert_eq!(reply.text(), first.text(), "request {i}");
        assert_eq!(reply.header("set-cookie"), None, "a valid pin is kept");
    }
    // Without the cookie the split still alternates.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(fetch(addr, &[]).await.text());
    }
    assert!(
        seen.iter().any(|s| s == "a") && seen.iter().any(|s| s == "b"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_forged_cookie_is_ignored_and_the_client_re_pinned() {
    let w = sites().start(&routes(50, 50, &affinity())).await;
    let addr = w.addr("web");
    let real = pin(&fetch(addr, &[]).await).unwrap();
    let forged_tag = format!("{}{}", &real[..real.len() - 1], "A");
    let forged_name = real.replacen(
        &format!("={}.", named(&real)),
        &format!("={}.", if named(&real) == "a" { "b" } else { "a" }),
        1,
    );
    for forged in [
        format!("{COOKIE}=b.AAAA"),
        format!("{COOKIE}=a"),
        forged_name,
        forged_tag,
    ] {
        if forged == real {
            continue; // the last character already was 'A'
        }
        // An honoured cookie would get no Set-Cookie back.
        let reply = fetch(addr, &[("cookie", &forged)]).await;
        let repinned = pin(&reply).unwrap_or_else(|| panic!("{forged} was honoured"));
        assert_ne!(repinned, forged);
        assert_eq!(named(&repinned), reply.text());
    }
}

#[tokio::test]
async fn weight_zero_after_a_reload_re_pins_to_the_other() {
    let w = sites().start(&routes(50, 50, &affinity())).await;
    let addr = w.addr("web");
    let cookie = pin(&fetch(addr, &[]).await).unwrap();
    let (from, to) = if named(&cookie) == "a" {
        ("a", "b")
    } else {
        ("b", "a")
    };
    let (wa, wb) = if from == "a" { (0, 100) } else { (100, 0) };
    reload(&w, &routes(wa, wb, &affinity())).await;

    let moved = fetch(addr, &[("cookie", &cookie)]).await;
    assert_eq!(moved.text(), to);
    let new = pin(&moved).expect("re-pinned with a new cookie");
    assert_eq!(named(&new), to);
    for _ in 0..20 {
        let reply = fetch(addr, &[("cookie", &new)]).await;
        assert_eq!(reply.text(), to);
        assert_eq!(reply.header("set-cookie"), None);
    }
}

#[tokio::test]
async fn the_cookie_survives_a_reload_that_keeps_the_weights() {
    let w = sites().start(&routes(50, 50, &affinity())).await;
    let addr = w.addr("web");
    let first = fetch(addr, &[]).await;
    let cookie = pin(&first).unwrap();
    let before = generation(w.admin).await;
    // Same weights, the route changed otherwise: a new snapshot.
    reload(
        &w,
        &routes(50, 50, &format!("{}\ntimeout = \"5s\"", affinity())),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(3), || async {
            generation(w.admin).await > before
        })
        .await
    );
    for _ in 0..20 {
        let reply = fetch(addr, &[("cookie", &cookie)]).await;
        assert_eq!(reply.text(), first.text());
        assert_eq!(reply.header("set-cookie"), None);
    }
}

#[tokio::test]
async fn the_override_header_wins_even_at_weight_zero() {
    let options = format!("{}\noverride_header = \"x-weir-backend\"", affinity());
    let w = sites().start(&routes(100, 0, &options)).await;
    let addr = w.addr("web");
    let pinned_a = pin(&fetch(addr, &[]).await).unwrap();
    assert_eq!(named(&pinned_a), "a");

    for _ in 0..20 {
        let reply = fetch(addr, &[("x-weir-backend", "b")]).await;
        assert_eq!(reply.text(), "b");
        assert_eq!(
            reply.header("set-cookie"),
            None,
            "a forced choice is not pinned"
        );
        let reply = fetch(addr, &[("x-weir-backend", "b"), ("cookie", &pinned_a)]).await;
        assert_eq!(reply.text(), "b", "the override beats the cookie");
    }
    // An unknown name is ignored: the cookie, then the split, decide.
    let reply = fetch(addr, &[("x-weir-backend", "zzz"), ("cookie", &pinned_a)]).await;
    assert_eq!(reply.text(), "a");
    assert_eq!(reply.header("set-cookie"), None);
    let reply = fetch(addr, &[("x-weir-backend", "zzz")]).await;
    assert_eq!(reply.text(), "a");
    assert_eq!(pin(&reply).as_deref().map(named), Some("a"));
}

#[tokio::test]
async fn routes_without_affinity_set_no_cookie() {
    let w = sites()
        .start(&routes(50, 50, "override_header = \"X-Weir-Backend\""))
        .await;
    let addr = w.addr("web");
    for _ in 0..4 {
        assert_eq!(fetch(addr, &[]).await.header("set-cookie"), None);
    }
    // The override works on its own, header name matched case-insensitively.
    for _ in 0..4 {
        let reply = fetch(addr, &[("x-weir-backend", "a")]).await;
        assert_eq!(reply.text(), "a");
        assert_eq!(reply.header("set-cookie"), None);
    }
}

#[tokio::test]
async fn the_cookie_is_secure_on_tls() {
    let pki = support::pki::pki(&[&["localhost"]]);
    let (cert, key, _) = &pki.leaves[0];
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"tls\"\nbind = [\"127.0.0.1:0\"]\n[listeners.tls]\ncerts = [{{ cert = \"c.pem\", key = \"k.pem\" }}]\n\n[access_log]\nformat = \"off\"\n\n[[routes]]\npath = \"/\"\nbackends = [{{ site = \"a\" }}, {{ site = \"b\" }}]\n{}\n\n[sites.a]\nroot = \"a\"\n\n[sites.b]\nroot = \"b\"\n",
        affinity()
    );
    let w = sites()
        .file("c.pem", cert)
        .file("k.pem", key)
        .start(&text)
        .await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(weir::tls::certs::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(w.addr("tls")).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio::time::timeout(
        support::STEP,
        TlsConnector::from(Arc::new(client)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake verified");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/id.txt")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(support::STEP, sender.send_request(req))
        .await
        .expect("answer in time")
        .unwrap();
    let set = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set.starts_with(&format!("{COOKIE}=")), "{set}");
    assert!(
        set.ends_with("; HttpOnly; SameSite=Lax; Max-Age=3600; Secure"),
        "{set}"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(named(set.split(';').next().unwrap()).as_bytes(), &body[..]);
}

/// Effective weight of `backend` on the first route in `/status`.
async fn effective_weight(admin: SocketAddr, backend: &str) -> Option<u64> {
    let status: serde_json::Value =
        serde_json::from_slice(&get(admin, "/status").await.body).expect("status JSON");
    status["routes"][0]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == backend)?["effective_weight"]
        .as_u64()
}

#[tokio::test]
async fn a_pin_to_a_backend_without_a_healthy_endpoint_is_re_pinned() {
    use std::sync::atomic::Ordering;

    let a = support::toggle::up("a").await;
    let b = support::toggle::up("b").await;
    let check = r#"health = { path = "/health", interval = "100ms", timeout = "500ms", healthy = 1, unhealthy = 2 }"#;
    let text = config(&format!(
        "[[routes]]\nname = \"app\"\npath = \"/\"\nbackends = [{{ service = \"a\", weight = 50 }}, {{ service = \"b\", weight = 50 }}]\n{}\n\n\
         [services.a]\nendpoints = [\"{}\"]\n{check}\n\n[services.b]\nendpoints = [\"{}\"]\n{check}\n",
        affinity(),
        a.addr,
        b.addr
    ));
    let w = weir().start(&text).await;
    let addr = w.addr("web");
    let first = fetch(addr, &[]).await;
    let cookie = pin(&first).expect("a first request is pinned");
    let (from, to) = match named(&cookie) {
        "a" => (&a, "b"),
        _ => (&b, "a"),
    };
    assert_eq!(first.text(), named(&cookie));

    // Only the checks fail: the pinned backend would still answer if asked.
    from.healthy.store(false, Ordering::SeqCst);
    let pinned = named(&cookie).to_owned();
    assert!(
        eventually(Duration::from_secs(5), || async {
            effective_weight(w.admin, &pinned).await == Some(0)
        })
        .await,
        "{pinned} never lost its weight to failed checks"
    );

    let moved = fetch(addr, &[("cookie", &cookie)]).await;
    assert_eq!(moved.text(), to, "the pin to a down backend was honoured");
    let new = pin(&moved).expect("re-pinned with a new cookie");
    assert_eq!(named(&new), to);
    for _ in 0..10 {
        let reply = fetch(addr, &[("cookie", &new)]).await;
        assert_eq!(reply.text(), to);
        assert_eq!(reply.header("set-cookie"), None, "the new pin is kept");
    }

    // The old backend recovering does not move the re-pinned client back.
    from.healthy.store(true, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || async {
            effective_weight(w.admin, &pinned).await == Some(50)
        })
        .await,
        "{pinned} never came back"
    );
    for _ in 0..10 {
        let reply = fetch(addr, &[("cookie", &new)]).await;
        assert_eq!(reply.text(), to);
        assert_eq!(reply.header("set-cookie"), None);
    }
}
