//! SPEC "Health and failover": passive outlier ejection takes an endpoint
//! that resets connections out of rotation (the client sees no error, the
//! endpoint is tried again after `eject_for`); a primary region below
//! `min_healthy` hands its traffic to the next region, and gets it back
//! only after staying healthy for `failback_after`.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::toggle::{Up, up};
use support::{eventually, get, weir};

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

/// Sends one GET and insists it was served by `name`.
async fn served_by(web: SocketAddr, name: &str) {
    let reply = get(web, "/").await;
    assert_eq!(reply.status, 200, "client saw an error: {reply:?}");
    assert_eq!(reply.text(), name);
}

#[tokio::test]
async fn a_resetting_endpoint_is_ejected_and_tried_again_later() {
    let good = up("good").await;
    let (bad, accepted) = resetter().await;
    let config = support::config(&format!(
        r#"
[[routes]]
path = "/"
retries = 1
backends = [{{ service = "api" }}]

[services.api]
endpoints = ["{bad}", "{}"]
outlier = {{ consecutive_failures = 2, eject_for = "2s", max_ejected = 0.5 }}
"#,
        good.addr
    ));
    let w = weir().start(&config).await;
    let web = w.addr("web");

    // Round robin reaches the bad endpoint every other request; each
    // failure is retried on the good one.
    let mut sent = 0;
    while accepted.load(Ordering::SeqCst) < 2 {
        served_by(web, "good").await;
        sent += 1;
        assert!(sent <= 20, "the bad endpoint was not reached twice");
    }
    let ejected_at = Instant::now();
    for _ in 0..20 {
        served_by(web, "good").await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "an ejected endpoint got requests"
    );

    // After eject_for (2 s) it is tried once more (and ejected again).
    let mut tried_again = None;
    while ejected_at.elapsed() < Duration::from_secs(5) {
        served_by(web, "good").await;
        if accepted.load(Ordering::SeqCst) > 2 {
            tried_again = Some(ejected_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tried_again = tried_again.expect("the ejected endpoint was never tried again");
    assert!(
        tried_again >= Duration::from_millis(1500),
        "tried again after {tried_again:?}, before eject_for"
    );
    for _ in 0..20 {
        served_by(web, "good").await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "a failure on probation must eject it again at once"
    );
}

const CHECK: &str = r#"health = { path = "/health", interval = "100ms", timeout = "500ms", healthy = 1, unhealthy = 1 }"#;

async fn all_from(web: SocketAddr, name: &str, of: usize) -> bool {
    for _ in 0..of {
        let reply = get(web, "/").await;
        if reply.status != 200 || reply.text() != name {
            return false;
        }
    }
    true
}

/// Requests served by `name` out of `of`; every one must succeed.
async fn share_of(web: SocketAddr, name: &str, of: usize) -> usize {
    let mut n = 0;
    for _ in 0..of {
        let reply = get(web, "/").await;
        assert_eq!(reply.status, 200, "client saw an error: {reply:?}");
        n += usize::from(reply.text() == name);
    }
    n
}

fn two_regions(primary: &[Up], secondary: &[Up], extra: &str) -> String {
    let list = |ups: &[Up]| {
        ups.iter()
            .map(|u| format!("\"{}\"", u.addr))
            .collect::<Vec<_>>()
            .join(", ")
    };
    support::config(&format!(
        r#"
[[routes]]
path = "/"
backends = [{{ service = "api" }}]
{extra}

[services.api]
{CHECK}
failover = {{ min_healthy = 0.7, failback_after = "1s" }}
[[services.api.regions]]
name = "primary"
endpoints = [{}]
[[services.api.regions]]
name = "secondary"
endpoints = [{}]
"#,
        list(primary),
        list(secondary),
    ))
}

#[tokio::test]
async fn below_min_healthy_the_shortfall_spills_over_and_fails_back_after_failback_after() {
    let mut primary = Vec::new();
    for _ in 0..4 {
        primary.push(up("primary").await);
    }
    let secondary = up("secondary").await;
    let w = weir()
        .start(&two_regions(&primary, std::slice::from_ref(&secondary), ""))
        .await;
    let web = w.addr("web");
    assert!(all_from(web, "primary", 10).await, "the primary takes all");

    // Two of four down: 0.5 < 0.7, so the primary keeps 0.5 / 0.7 = 71%
    // and 29% spills to the secondary.
    primary[0].healthy.store(false, Ordering::Relaxed);
    primary[1].healthy.store(false, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let status: serde_json::Value =
                serde_json::from_slice(&get(w.admin, "/status").await.body).unwrap();
            status["services"][0]["regions"][0]["healthy"] == 2
        })
        .await,
        "the checks never saw two primaries down"
    );
    let spilled = share_of(web, "secondary", 100).await;
    assert!((27..=31).contains(&spilled), "{spilled} of 100 spilled");
    let status: serde_json::Value =
        serde_json::from_slice(&get(w.admin, "/status").await.body).unwrap();
    let regions = &status["services"][0]["regions"];
    assert_eq!(
        status["services"][0]["active_region"], "primary",
        "{status}"
    );
    let share = regions[1]["share"].as_f64().unwrap();
    assert!((share - 2.0 / 7.0).abs() < 1e-9, "{regions}");
    let metrics = get(w.admin, "/metrics").await.text();
    assert!(
        metrics.contains("weir_active_region{service=\"api\",region=\"secondary\"} 1"),
        "{metrics}"
    );

    // All four down: everything goes to the secondary.
    primary[2].healthy.store(false, Ordering::Relaxed);
    primary[3].healthy.store(false, Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), || all_from(web, "secondary", 10)).await,
        "traffic did not move to the secondary region"
    );

    // The primary recovers: traffic returns only after failback_after (1 s).
    for p in &primary {
        p.healthy.store(true, Ordering::Relaxed);
    }
    let recovered = Instant::now();
    let mut back = None;
    while recovered.elapsed() < Duration::from_secs(5) {
        let reply = get(web, "/").await;
        assert_eq!(reply.status, 200);
        if reply.text() == "primary" {
            back = Some(recovered.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = back.expect("traffic never returned to the primary");
    assert!(
        back >= Duration::from_millis(500),
        "failed back after {back:?}, before failback_after"
    );
    assert!(
        back <= Duration::from_secs(3),
        "failed back only after {back:?}"
    );
    assert!(
        all_from(web, "primary", 10).await,
        "failback must be complete"
    );
}

#[tokio::test]
async fn an_idempotent_request_that_fails_in_one_region_is_retried_in_the_next() {
    // The primary's only endpoint resets every connection and no check has
    // noticed yet: the GET is retried in the secondary, the client sees 200.
    let (bad, accepted) = resetter().await;
    let secondary = up("secondary").await;
    let config = support::config(&format!(
        r#"
[[routes]]
path = "/"
retries = 1
backends = [{{ service = "api" }}]

[services.api]
[[services.api.regions]]
name = "primary"
endpoints = ["{bad}"]
[[services.api.regions]]
name = "secondary"
endpoints = ["{}"]
"#,
        secondary.addr
    ));
    let w = weir().start(&config).await;
    for _ in 0..5 {
        served_by(w.addr("web"), "secondary").await;
    }
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the primary was never tried"
    );
    // A POST is not retried: it fails, it is not replayed elsewhere.
    let reply = support::send(w.addr("web"), support::request("POST", "/", &[])).await;
    assert_eq!(reply.status, 502, "{reply:?}");
}

#[tokio::test]
async fn killing_every_primary_endpoint_under_load_fails_no_get() {
    use support::upstream::Upstream;
    let primary = vec![
        Upstream::named("primary").start().await,
        Upstream::named("primary").start().await,
    ];
    let secondary = Upstream::named("secondary").start().await;
    let list = primary
        .iter()
        .map(|u| format!("\"{}\"", u.endpoint()))
        .collect::<Vec<_>>()
        .join(", ");
    // interval x unhealthy = 200 ms x 2: detection within 0.4 s + 1 s.
    let config = support::config(&format!(
        r#"
[[routes]]
path = "/"
retries = 2
backends = [{{ service = "api" }}]

[services.api]
health = {{ path = "/health", interval = "200ms", timeout = "200ms", healthy = 1, unhealthy = 2 }}
[[services.api.regions]]
name = "primary"
endpoints = [{list}]
[[services.api.regions]]
name = "secondary"
endpoints = ["{}"]
"#,
        secondary.endpoint()
    ));
    let w = weir().start(&config).await;
    let web = w.addr("web");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let reply = get(web, "/").await;
                let served: serde_json::Value =
                    serde_json::from_slice(&reply.body).unwrap_or_default();
                seen.push((
                    reply.status.as_u16(),
                    served["upstream"].as_str().map(str::to_owned),
                ));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    drop(primary);
    let mut detected = None;
    while killed.elapsed() < Duration::from_secs(5) {
        let status: serde_json::Value =
            serde_json::from_slice(&get(w.admin, "/status").await.body).unwrap();
        if status["services"][0]["active_region"] == "secondary" {
            detected = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let detected = detected.expect("the primary region was never given up");
    assert!(
        detected <= Duration::from_millis(1400),
        "failover took {detected:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in load {
        all.extend(task.await.unwrap());
    }
    let failed: Vec<_> = all.iter().filter(|(status, _)| *status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} GETs failed: {failed:?}",
        failed.len(),
        all.len()
    );
    eprintln!(
        "failover detected after {detected:?}; {} GETs, none failed",
        all.len()
    );
    assert!(all.iter().any(|(_, u)| u.as_deref() == Some("primary")));
    assert!(all.iter().any(|(_, u)| u.as_deref() == Some("secondary")));
}

/// Two GETs fail on the service's only endpoint (the client sees each:
/// there is no other endpoint to retry on); after that the circuit is
/// open: 503 `no-healthy-backend` with a `Retry-After` of the seconds left
/// of the 30 s ejection, and the endpoint is not reached again.
async fn circuit_opens_on(endpoint: &str, failures: impl Fn() -> usize) {
    let config = support::one_service(
        endpoint,
        r#"outlier = { consecutive_failures = 2, max_ejected = 1.0, eject_for = "30s" }"#,
    );
    let w = weir().start(&config).await;
    let web = w.addr("web");
    for i in 0..2 {
        let reply = get(web, "/").await;
        assert_eq!(reply.status, 502, "failure {i}: {reply:?}");
    }
    assert_eq!(failures(), 2, "the endpoint was not reached twice");
    for _ in 0..3 {
        let reply = get(web, "/").await;
        assert_eq!(reply.status, 503, "the circuit is not open: {reply:?}");
        assert_eq!(reply.header("weir-error"), Some("no-healthy-backend"));
        let retry_after: u64 = reply
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("Retry-After in seconds: {reply:?}"));
        // The rest of the ejection, rounded up: 30 just after it began
        // (never the fixed 5 of old), a little less on a slow machine.
        assert!(
            (20..=30).contains(&retry_after),
            "Retry-After {retry_after} is not what is left of eject_for: {reply:?}"
        );
    }
    assert_eq!(failures(), 2, "an open circuit still sent requests");
}

#[tokio::test]
async fn a_lone_endpoint_that_keeps_failing_opens_the_circuit_503() {
    // Answering 502 itself (a gateway error counts as a failure)...
    let answers_502 = support::upstream::Upstream::named("bad")
        .status(502)
        .start()
        .await;
    circuit_opens_on(&answers_502.endpoint(), || answers_502.stats.requests()).await;
    // ...or closing every connection without a word.
    let (closes, accepted) = resetter().await;
    circuit_opens_on(&closes.to_string(), || accepted.load(Ordering::SeqCst)).await;
}
