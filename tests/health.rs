//! SPEC "Health and failover" (the parts built so far): active checks take
//! an endpoint out and back in, a backend with no healthy endpoint gets
//! effective weight 0, every backend down is 503, a region whose endpoints
//! are all down hands its traffic to the next region.

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
