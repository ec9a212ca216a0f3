//! SPEC "Splitting, affinity, rollout" and "Details": `[routes.rollout]`
//! moves the split from `from` to `to` step by step, judged on `to`'s
//! window (errors and p99), rolls back (or pauses) on a breach, shows its
//! state in `/status` and `weir_rollout_step`, and keeps it across a reload
//! that leaves the section unchanged.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::upstream::Upstream;
use support::{Weir, config, eventually, get, request, send, weir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sites `a`, `b` and `c`, each answering its own name at `/id.txt`.
fn sites() -> support::Builder {
    weir()
        .file("a/id.txt", "a")
        .file("b/id.txt", "b")
        .file("c/id.txt", "c")
}

const SITES: &str =
    "[sites.a]\nroot = \"a\"\n\n[sites.b]\nroot = \"b\"\n\n[sites.c]\nroot = \"c\"\n";

/// Route `app` over `backends` with `[routes.rollout]` = `rollout`.
fn route(backends: &str, rollout: &str, rest: &str) -> String {
    config(&format!(
        "[[routes]]\nname = \"app\"\npath = \"/\"\nbackends = [{backends}]\n[routes.rollout]\n{rollout}\n\n{rest}"
    ))
}

/// Blue and green services, `blue` at weight 100 and `green` at 0, rolling
/// out from blue to green.
fn services(blue: &Upstream, green: &Upstream, rollout: &str) -> String {
    route(
        "{ service = \"blue\", weight = 100 }, { service = \"green\", weight = 0 }",
        &format!("from = \"blue\"\nto = \"green\"\n{rollout}"),
        &format!(
            "[services.blue]\nendpoints = [\"{}\"]\n\n[services.green]\nendpoints = [\"{}\"]\n",
            blue.endpoint(),
            green.endpoint()
        ),
    )
}

/// Weir serving [`services`].
async fn blue_green(blue: &Upstream, green: &Upstream, rollout: &str) -> Weir {
    weir().start(&services(blue, green, rollout)).await
}

async fn status(admin: SocketAddr) -> Value {
    serde_json::from_slice(&get(admin, "/status").await.body).expect("status JSON")
}

async fn rollout(admin: SocketAddr) -> Value {
    status(admin).await["routes"][0]["rollout"].clone()
}

async fn wait_for_state(admin: SocketAddr, state: &str) -> Value {
    let mut last = Value::Null;
    let reached = eventually(Duration::from_secs(10), || async move {
        rollout(admin).await["state"] == state
    })
    .await;
    if !reached {
        last = rollout(admin).await;
    }
    assert!(reached, "never reached {state}: {last}");
    rollout(admin).await
}

async fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let text = get(admin, "/metrics").await.text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

async fn ids(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let reply = get(addr, "/id.txt").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        got.push(reply.text());
    }
    got
}

fn count(ids: &[String], id: &str) -> usize {
    ids.iter().filter(|i| *i == id).count()
}

async fn hit(addr: SocketAddr, n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(get(addr, "/").await.status.as_u16());
    }
    statuses
}

async fn reload(w: &Weir, config: &str) {
    w.write_config(config);
    let reply = send(w.admin, request("POST", "/reload", &[])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn a_step_replaces_the_pair_weights_and_keeps_the_others() {
    // a and b share 100 between them, c has 100: at step 20, b gets 20 of
    // the pair's 100, a 80, c keeps 100.
    let w = sites()
        .start(&route(
            "{ site = \"a\", weight = 50 }, { site = \"b\", weight = 50 }, { site = \"c\", weight = 100 }",
            "from = \"a\"\nto = \"b\"\nsteps = [20, 100]\nstep_every = \"1h\"",
            SITES,
        ))
        .await;
    let got = ids(w.addr("web"), 200).await;
    assert_eq!(
        (count(&got, "a"), count(&got, "b"), count(&got, "c")),
        (80, 20, 100),
        "exact per cycle of the split"
    );

    let status = status(w.admin).await;
    let route = &status["routes"][0];
    let weights: Vec<(String, Value)> = route["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap().to_owned(), b["weight"].clone()))
        .collect();
    assert_eq!(
        weights,
        [
            ("a".to_owned(), Value::from(80)),
            ("b".to_owned(), Value::from(20)),
            ("c".to_owned(), Value::from(100))
        ]
    );
    let rollout = &route["rollout"];
    assert_eq!(rollout["state"], "running", "{rollout}");
    assert_eq!(rollout["step"], 20, "{rollout}");
    assert_eq!(rollout["from"], "a");
    assert_eq!(rollout["to"], "b");
    assert!(rollout["since"].as_str().is_some_and(|s| s.ends_with('Z')));
    assert_eq!(rollout["window"]["requests"], 20, "b's requests: {rollout}");

    assert_eq!(
        metric(w.admin, "weir_rollout_step{route=\"app\"}").await,
        Some(20.0)
    );
    assert_eq!(
        metric(w.admin, "weir_backend_weight{route=\"app\",backend=\"b\"}").await,
        Some(20.0)
    );
}

#[tokio::test]
async fn clean_windows_advance_the_rollout_to_complete() {
    let w = sites()
        .start(&route(
            "{ site = \"a\" }, { site = \"b\" }",
            "from = \"a\"\nto = \"b\"\nsteps = [10, 50, 100]\nstep_every = \"200ms\"",
            SITES,
        ))
        .await;
    let done = wait_for_state(w.admin, "complete").await;
    assert_eq!(done["step"], 100, "{done}");
    assert_eq!(done["verdict"]["outcome"], "advance", "{done}");
    let got = ids(w.addr("web"), 20).await;
    assert_eq!(count(&got, "b"), 20, "b keeps the whole share: {got:?}");
    assert_eq!(
        metric(w.admin, "weir_rollout_step{route=\"app\"}").await,
        Some(100.0)
    );
}

#[tokio::test]
async fn errors_of_to_roll_back_at_once_and_for_good() {
    let blue = Upstream::named("blue").start().await;
    let green = Upstream::named("green").status(500).start().await;
    let w = blue_green(
        &blue,
        &green,
        "steps = [50, 100]\nstep_every = \"1h\"\nmax_error_rate = 0.1\nmin_requests = 10",
    )
    .await;
    let addr = w.addr("web");

    let statuses = hit(addr, 40).await;
    assert!(statuses.contains(&500), "green answered: {statuses:?}");
    let rolled = wait_for_state(w.admin, "rolled_back").await;
    assert_eq!(rolled["step"], 0, "{rolled}");
    let reason = rolled["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("error rate"), "{rolled}");
    assert_eq!(rolled["verdict"]["outcome"], "breach");
    assert!(
        rolled["verdict"]["requests"].as_u64() >= Some(10),
        "{rolled}"
    );

    let before = green.stats.requests();
    let statuses = hit(addr, 30).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        green.stats.requests(),
        before,
        "all traffic is back on blue"
    );
    assert_eq!(
        metric(w.admin, "weir_rollout_step{route=\"app\"}").await,
        Some(0.0)
    );
    assert_eq!(
        metric(
            w.admin,
            "weir_backend_weight{route=\"app\",backend=\"blue\"}"
        )
        .await,
        Some(100.0)
    );
}

#[tokio::test]
async fn a_slow_to_rolls_back_on_p99() {
    let blue = Upstream::named("blue").start().await;
    let green = Upstream::named("green").slow(250).start().await;
    let w = blue_green(
        &blue,
        &green,
        "steps = [50, 100]\nstep_every = \"1h\"\nmax_p99 = \"100ms\"\nmin_requests = 4",
    )
    .await;
    let addr = w.addr("web");
    let all = futures_join(addr, 12).await;
    assert!(all.iter().all(|s| *s == 200), "{all:?}");
    let rolled = wait_for_state(w.admin, "rolled_back").await;
    let reason = rolled["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("p99"), "{rolled}");
    assert!(
        rolled["verdict"]["p99_ms"].as_f64() > Some(100.0),
        "{rolled}"
    );
}

#[tokio::test]
async fn a_to_whose_clients_give_up_waiting_rolls_back_on_p99() {
    // Green hangs past the route timeout; its clients leave after 300 ms.
    // What they waited counts in the window: green rolls back long before
    // any answer or timeout would have told.
    let blue = Upstream::named("blue").start().await;
    let green = Upstream::named("green").slow(60_000).start().await;
    let w = blue_green(
        &blue,
        &green,
        "steps = [50, 100]\nstep_every = \"1h\"\nmax_p99 = \"100ms\"\nmin_requests = 4",
    )
    .await;
    let addr = w.addr("web");
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
                    .await
                    .expect("write");
                let mut buf = [0u8; 1024];
                // Blue answers at once; green never does in time.
                let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
    let rolled = wait_for_state(w.admin, "rolled_back").await;
    let reason = rolled["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("p99"), "{rolled}");
}

/// `n` concurrent GETs of `/`.
async fn futures_join(addr: SocketAddr, n: usize) -> Vec<u16> {
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(async move { get(addr, "/").await.status.as_u16() }))
        .collect();
    let mut statuses = Vec::with_capacity(n);
    for task in tasks {
        statuses.push(task.await.expect("request task"));
    }
    statuses
}

#[tokio::test]
async fn on_failure_pause_holds_the_step() {
    let blue = Upstream::named("blue").start().await;
    let green = Upstream::named("green").status(503).start().await;
    let w = blue_green(&blue, &green, "steps = [50, 100]\nstep_every = \"1h\"\nmax_error_rate = 0.2\nmin_requests = 4\non_failure = \"pause\"").await;
    hit(w.addr("web"), 10).await;
    let paused = wait_for_state(w.admin, "paused").await;
    assert_eq!(paused["step"], 50, "{paused}");
    let before = green.stats.requests();
    hit(w.addr("web"), 10).await;
    assert_eq!(green.stats.requests() - before, 5, "the step holds at 50");
}

#[tokio::test]
async fn a_window_short_of_min_requests_holds_the_step() {
    let w = sites()
        .start(&route(
            "{ site = \"a\" }, { site = \"b\" }",
            "from = \"a\"\nto = \"b\"\nsteps = [10, 100]\nstep_every = \"100ms\"\nmin_requests = 1000",
            SITES,
        ))
        .await;
    let held = eventually(Duration::from_secs(5), || async {
        rollout(w.admin).await["verdict"]["outcome"] == "hold"
    })
    .await;
    let now = rollout(w.admin).await;
    assert!(held, "{now}");
    assert_eq!(
        (now["state"].clone(), now["step"].clone()),
        ("running".into(), 10.into())
    );
    assert!(
        now["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("of 1000"),
        "{now}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_state_unless_the_section_changes() {
    let blue = Upstream::named("blue").start().await;
    let green = Upstream::named("green").status(500).start().await;
    let section = "steps = [50, 100]\nstep_every = \"1h\"\nmax_error_rate = 0.1\nmin_requests = 4";
    let w = blue_green(&blue, &green, section).await;
    hit(w.addr("web"), 10).await;
    let rolled = wait_for_state(w.admin, "rolled_back").await;

    // Another route added, the rollout section unchanged: state kept.
    let more = format!(
        "{}\n[[routes]]\npath = \"/other/\"\nbackends = [{{ service = \"blue\" }}]\n",
        services(&blue, &green, section)
    );
    reload(&w, &more).await;
    let after = status(w.admin).await;
    assert_eq!(after["generation"], 2);
    let kept = &after["routes"][0]["rollout"];
    assert_eq!(kept["state"], "rolled_back", "{kept}");
    assert_eq!(
        kept["since"], rolled["since"],
        "the same rollout, not a new one"
    );
    let before = green.stats.requests();
    hit(w.addr("web"), 10).await;
    assert_eq!(green.stats.requests(), before, "still all on blue");

    // A changed section starts again at the first step.
    let changed = section.replace("min_requests = 4", "min_requests = 5");
    reload(&w, &services(&blue, &green, &changed)).await;
    let restarted = rollout(w.admin).await;
    assert_eq!(restarted["state"], "running", "{restarted}");
    assert_eq!(restarted["step"], 50, "{restarted}");
}

#[tokio::test]
async fn a_green_answering_ten_percent_500s_is_rolled_back() {
    let blue = Upstream::named("blue").start().await;
    let green = Upstream::named("green").fails_every(10).start().await;
    let w = blue_green(
        &blue,
        &green,
        "steps = [50, 100]\nstep_every = \"1h\"\nmax_error_rate = 0.05\nmin_requests = 20",
    )
    .await;
    // 100 requests: green gets 50, five of them 500, unless the ticker
    // (every 250 ms) already rolled back once green had its 20 requests
    // and two 500s (a slow machine takes longer for the 100).
    let statuses = hit(w.addr("web"), 100).await;
    let failed = statuses.iter().filter(|s| **s == 500).count();
    assert!((2..=5).contains(&failed), "{failed} 500s: {statuses:?}");
    let rolled = wait_for_state(w.admin, "rolled_back").await;
    let rate = rolled["verdict"]["error_rate"].as_f64().unwrap_or_default();
    assert!((0.05..=0.15).contains(&rate), "{rolled}");
}
