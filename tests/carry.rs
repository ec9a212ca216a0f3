//! Issue "Hot reload": live state is carried into the new snapshot by
//! identity. An endpoint marked down by checks or ejected by outlier
//! detection stays out after a reload (and still comes back when it
//! recovers); rate-limit buckets of an unchanged route keep counting; the
//! connection pools of unchanged endpoints keep their connections.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use support::toggle::up;
use support::{Weir, config, eventually, get, request, send, weir};

async fn status(admin: SocketAddr) -> Value {
    serde_json::from_slice(&get(admin, "/status").await.body).expect("status JSON")
}

/// `healthy` of the endpoint at `addr` in `/status`.
async fn endpoint(admin: SocketAddr, addr: SocketAddr) -> Value {
    let status = status(admin).await;
    let endpoints = status["services"][0]["regions"][0]["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    endpoints
        .into_iter()
        .find(|e| e["address"] == addr.to_string())
        .unwrap_or(Value::Null)
}

async fn reload(w: &Weir, config: &str) {
    w.write_config(config);
    let reply = send(w.admin, request("POST", "/reload", &[])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// `base` with one more route, so a reload has something to change.
fn with_extra_route(base: &str) -> String {
    format!("{base}\n[[routes]]\npath = \"/extra/\"\nbackends = [{{ service = \"api\" }}]\n")
}

#[tokio::test]
async fn an_endpoint_down_by_checks_stays_down_across_a_reload_and_comes_back() {
    let a = up("a").await;
    let b = up("b").await;
    let base = config(&format!(
        r#"
[[routes]]
path = "/"
backends = [{{ service = "api" }}]

[services.api]
endpoints = ["{}", "{}"]
health = {{ path = "/health", interval = "200ms", timeout = "500ms", healthy = 1, unhealthy = 3 }}
failover = {{ min_healthy = 0.1 }}
"#,
        a.addr, b.addr
    ));
    let w = weir().start(&base).await;
    a.healthy.store(false, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            endpoint(w.admin, a.addr).await["healthy"] == false
        })
        .await,
        "the checks never marked a down"
    );

    reload(&w, &with_extra_route(&base)).await;
    let after = endpoint(w.admin, a.addr).await;
    assert_eq!(
        after["healthy"], false,
        "a came back healthy after the reload: {after}"
    );
    for _ in 0..10 {
        let reply = get(w.addr("web"), "/").await;
        assert_eq!((reply.status.as_u16(), reply.text()), (200, "b".to_owned()));
    }

    // The new snapshot's checks pick up from "down" and see it recover.
    a.healthy.store(true, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            endpoint(w.admin, a.addr).await["healthy"] == true
        })
        .await,
        "a never recovered after the reload"
    );
}

/// An endpoint that accepts connections and closes them at once; counts them.
async fn resetter() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn an_ejected_endpoint_stays_ejected_across_a_reload() {
    let good = up("good").await;
    let (bad, accepted) = resetter().await;
    let base = config(&format!(
        r#"
[[routes]]
path = "/"
retries = 1
backends = [{{ service = "api" }}]

[services.api]
endpoints = ["{bad}", "{}"]
outlier = {{ consecutive_failures = 2, eject_for = "30s", max_ejected = 0.5 }}
"#,
        good.addr
    ));
    let w = weir().start(&base).await;
    let web = w.addr("web");
    let mut sent = 0;
    while accepted.load(Ordering::SeqCst) < 2 {
        assert_eq!(get(web, "/").await.status, 200);
        sent += 1;
        assert!(sent <= 20, "the bad endpoint was not reached twice");
    }
    assert_eq!(endpoint(w.admin, bad).await["ejected"], true);

    reload(&w, &with_extra_route(&base)).await;
    assert_eq!(
        endpoint(w.admin, bad).await["ejected"],
        true,
        "ejection lost"
    );
    for _ in 0..20 {
        assert_eq!(get(web, "/").await.status, 200);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the ejected endpoint got requests after the reload"
    );
}

#[tokio::test]
async fn rate_limit_buckets_of_an_unchanged_route_survive_a_reload() {
    let route = |limit: &str| {
        config(&format!(
            "[[routes]]\nname = \"limited\"\npath = \"/\"\nbackends = [{{ site = \"s\" }}]\nrate_limit = {limit}\n\n[sites.s]\nroot = \"s\"\n"
        ))
    };
    let same = route("{ per_ip = \"1/min\", burst = 2 }");
    let w = weir().file("s/a.txt", "a").start(&same).await;
    let web = w.addr("web");
    let mut allowed = 0;
    while get(web, "/a.txt").await.status == 200 {
        allowed += 1;
        assert!(allowed <= 5, "the limit never bit");
    }

    // Same route, same limit, another route added: still limited.
    reload(
        &w,
        &format!("{same}\n[[routes]]\npath = \"/x/\"\nbackends = [{{ site = \"s\" }}]\n"),
    )
    .await;
    assert_eq!(
        get(web, "/a.txt").await.status,
        429,
        "the buckets were reset"
    );

    // A changed limit starts with fresh buckets.
    reload(&w, &route("{ per_ip = \"2/min\", burst = 2 }")).await;
    assert_eq!(get(web, "/a.txt").await.status, 200);
}

#[tokio::test]
async fn a_reload_that_changes_only_weights_keeps_the_upstream_connections() {
    let blue = support::upstream::Upstream::named("blue").start().await;
    let green = support::upstream::Upstream::named("green").start().await;
    let split = |wb: u32, wg: u32| {
        config(&format!(
            "[[routes]]\nname = \"app\"\npath = \"/\"\n\
             backends = [{{ service = \"blue\", weight = {wb} }}, {{ service = \"green\", weight = {wg} }}]\n\n\
             [services.blue]\nendpoints = [\"{}\"]\n\n[services.green]\nendpoints = [\"{}\"]\n",
            blue.addr, green.addr
        ))
    };
    let w = weir().start(&split(50, 50)).await;
    let web = w.addr("web");
    // One at a time: each upstream's one pooled connection serves them all.
    let ask = |n: usize| async move {
        for _ in 0..n {
            assert_eq!(get(web, "/").await.status, 200);
        }
    };
    ask(10).await;
    assert_eq!(
        (blue.stats.requests(), green.stats.requests()),
        (5, 5),
        "the split before the reload"
    );
    assert_eq!(
        (blue.stats.connections(), green.stats.connections()),
        (1, 1),
        "sequential requests did not reuse the pooled connection"
    );
    let before = status(w.admin).await["generation"].as_u64().unwrap();

    reload(&w, &split(80, 20)).await;
    assert!(status(w.admin).await["generation"].as_u64().unwrap() > before);
    ask(10).await;
    assert_eq!(
        (blue.stats.requests(), green.stats.requests()),
        (13, 7),
        "the new weights apply"
    );
    assert_eq!(
        (blue.stats.connections(), green.stats.connections()),
        (1, 1),
        "the reload opened new upstream connections: the pools were not carried"
    );
}
