//! SPEC "Health and failover" (the parts built so far): active checks take
//! an endpoint out and back in (a check answered after `timeout` fails; it
//! takes `healthy` passes in a row to come back), a backend with no healthy
//! endpoint gets effective weight 0, every backend down is 503, a region
//! whose endpoints are all down hands its traffic to the next region.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::toggle::up;
use support::{eventually, get, weir};

const CHECK: &str = r#"health = { path = "/health", interval = "100ms", timeout = "500ms", healthy = 1, unhealthy = 2 }"#;

async fn share_of(addr: SocketAddr, name: &str, of: usize) -> usize {
    let mut n = 0;
    for _ in 0..of {
        if get(addr, "/").await.text() == name {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn an_unhealthy_backend_gets_weight_zero_and_comes_back() {
    let blue = up("blue").await;
    let green = up("green").await;
    let config = support::config(&format!(
        r#"
[[routes]]
name = "app"
path = "/"
backends = [{{ service = "blue", weight = 50 }}, {{ service = "green", weight = 50 }}]

[services.blue]
endpoints = ["{}"]
{CHECK}

[services.green]
endpoints = ["{}"]
{CHECK}
"#,
        blue.addr, green.addr
    ));
    let w = weir().start(&config).await;
    let web = w.addr("web");
    assert_eq!(
        share_of(web, "green", 100).await,
        50,
        "even split while both are up"
    );

    green.healthy.store(false, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            share_of(web, "blue", 100).await == 100
        })
        .await,
        "green still served after failing its checks"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&get(w.admin, "/status").await.body).unwrap();
    let backends = &status["routes"][0]["backends"];
    assert_eq!(backends[1]["name"], "green");
    assert_eq!(backends[1]["weight"], 50);
    assert_eq!(backends[1]["effective_weight"], 0, "{status}");
    assert_eq!(backends[0]["effective_weight"], 50);

    blue.healthy.store(false, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let reply = get(web, "/").await;
            reply.status == 503 && reply.header("weir-error") == Some("no-healthy-backend")
        })
        .await,
        "every backend down must answer 503"
    );

    blue.healthy.store(true, Ordering::Relaxed);
    green.healthy.store(true, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            share_of(web, "green", 100).await == 50
        })
        .await,
        "the split did not come back after recovery"
    );
}

#[tokio::test]
async fn traffic_moves_to_the_next_region_when_the_first_is_down() {
    let east = up("east").await;
    let west = up("west").await;
    let config = support::config(&format!(
        r#"
[[routes]]
path = "/"
backends = [{{ service = "api" }}]

[services.api]
{CHECK}
[[services.api.regions]]
name = "us-east-1"
endpoints = ["{}"]
[[services.api.regions]]
name = "eu-west-1"
endpoints = ["{}"]
"#,
        east.addr, west.addr
    ));
    let w = weir().start(&config).await;
    let web = w.addr("web");
    assert_eq!(
        share_of(web, "east", 10).await,
        10,
        "the first region takes everything"
    );

    east.healthy.store(false, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            share_of(web, "west", 10).await == 10
        })
        .await,
        "traffic did not move to the standby region"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&get(w.admin, "/status").await.body).unwrap();
    let service = &status["services"][0];
    assert_eq!(service["active_region"], "eu-west-1", "{status}");
    assert_eq!(service["regions"][0]["healthy"], 0);
    assert_eq!(service["regions"][0]["endpoints"][0]["healthy"], false);
    let metrics = get(w.admin, "/metrics").await.text();
    for line in [
        r#"weir_active_region{service="api",region="eu-west-1"} 1"#,
        r#"weir_active_region{service="api",region="us-east-1"} 0"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    let east_down = format!(
        r#"weir_endpoint_healthy{{service="api",region="us-east-1",endpoint="{}"}} 0"#,
        east.addr
    );
    assert!(
        metrics.contains(&east_down),
        "missing {east_down} in\n{metrics}"
    );

    east.healthy.store(true, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            share_of(web, "east", 10).await == 10
        })
        .await,
        "traffic did not return to the primary region"
    );
}

/// Every backend down by its active checks: the 503's `Retry-After` is the
/// time the soonest of them needs to come back, `interval x healthy`
/// (10 x 200 ms for blue, 10 x 300 ms for green: 2 s), not a fixed figure.
#[tokio::test]
async fn every_backend_down_by_checks_says_when_to_retry() {
    let blue = up("blue").await;
    let green = up("green").await;
    let check = |interval: &str| {
        format!(
            r#"health = {{ path = "/health", interval = "{interval}", timeout = "500ms", healthy = 10, unhealthy = 1 }}"#
        )
    };
    let config = support::config(&format!(
        r#"
[[routes]]
path = "/"
backends = [{{ service = "blue" }}, {{ service = "green" }}]

[services.blue]
endpoints = ["{}"]
{}

[services.green]
endpoints = ["{}"]
{}
"#,
        blue.addr,
        check("200ms"),
        green.addr,
        check("300ms"),
    ));
    let w = weir().start(&config).await;
    let web = w.addr("web");
    assert_eq!(get(web, "/").await.status, 200);

    blue.healthy.store(false, Ordering::Relaxed);
    green.healthy.store(false, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(web, "/").await.status == 503
        })
        .await,
        "every backend down must answer 503"
    );
    let reply = get(web, "/").await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("weir-error"), Some("no-healthy-backend"));
    assert_eq!(reply.header("retry-after"), Some("2"), "{reply:?}");
}

/// `healthy` of the first endpoint of the first service in `/status`.
async fn endpoint_healthy(admin: SocketAddr) -> bool {
    let status: serde_json::Value =
        serde_json::from_slice(&get(admin, "/status").await.body).unwrap();
    status["services"][0]["regions"][0]["endpoints"][0]["healthy"]
        .as_bool()
        .unwrap_or_else(|| panic!("no endpoint health in {status}"))
}

#[tokio::test]
async fn a_check_slower_than_its_timeout_fails() {
    let api = up("api").await;
    let check = r#"health = { path = "/health", interval = "100ms", timeout = "200ms", healthy = 1, unhealthy = 2 }"#;
    let w = weir().start(&support::one_service(api.addr, check)).await;
    let web = w.addr("web");
    assert!(
        eventually(Duration::from_secs(5), || async {
            api.passed.load(Ordering::SeqCst) >= 2
        })
        .await,
        "the checks never reached the endpoint"
    );
    assert_eq!(get(web, "/").await.text(), "api");

    // Every check still answers 200, but a second after it was asked.
    api.health_delay_ms.store(1000, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let reply = get(web, "/").await;
            reply.status == 503 && reply.header("weir-error") == Some("no-healthy-backend")
        })
        .await,
        "an endpoint whose checks answer after the timeout still serves"
    );
    assert!(!endpoint_healthy(w.admin).await);
    let metrics = get(w.admin, "/metrics").await.text();
    let down = r#"weir_backend_weight{route="/",backend="api"} 0"#;
    assert!(metrics.contains(down), "missing {down} in\n{metrics}");

    // Answering in time again brings it back.
    api.health_delay_ms.store(0, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(web, "/").await.text() == "api"
        })
        .await,
        "the endpoint never recovered once its checks were fast again"
    );
}

#[tokio::test]
async fn recovery_takes_healthy_checks_in_a_row() {
    let api = up("api").await;
    // Once healthy, three failures are needed to go down again: a wrong
    // "healthy" after one pass would show for three intervals.
    let check = r#"health = { path = "/health", interval = "150ms", timeout = "500ms", healthy = 2, unhealthy = 3 }"#;
    let w = weir().start(&support::one_service(api.addr, check)).await;
    api.healthy.store(false, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || async {
            !endpoint_healthy(w.admin).await
        })
        .await,
        "the checks never marked the endpoint down"
    );

    // Exactly one check passes, then they fail again: never healthy.
    api.passes.store(1, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut after_pass = None;
    loop {
        assert!(
            !endpoint_healthy(w.admin).await,
            "healthy after one passing check (healthy = 2); checks so far: {}",
            api.checks.load(Ordering::SeqCst)
        );
        let checks = api.checks.load(Ordering::SeqCst);
        if api.passes.load(Ordering::SeqCst) == 0 {
            // Three more checks after the one that passed have been asked.
            let since = *after_pass.get_or_insert(checks);
            if checks >= since + 3 {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the checks stopped coming"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get(w.addr("web"), "/").await.status, 503);

    // Passing for good: healthy, but only after two passes.
    let before = api.passed.load(Ordering::SeqCst);
    api.healthy.store(true, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || async {
            endpoint_healthy(w.admin).await
        })
        .await,
        "the endpoint never recovered"
    );
    let passes = api.passed.load(Ordering::SeqCst) - before;
    assert!(passes >= 2, "healthy after {passes} passing check(s)");
    assert_eq!(get(w.addr("web"), "/").await.text(), "api");
}
