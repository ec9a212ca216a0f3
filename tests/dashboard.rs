//! The admin dashboard (`/` on the admin port) in a real browser: headless Chromium loads
//! it from a running weir whose route splits between a site and a service with a live and a
//! dead endpoint, runs its script (which polls /status and /metrics), and the rendered DOM
//! must show the route, its backends with their weights, the request count, the service's
//! active and standby regions with healthy and unhealthy endpoints, and the generation.
//! A screenshot goes to the cargo target dir for a person to look at.
//!
//! A second test feeds the same page canned /status and /metrics answers (a rollout object
//! as the rollout engine reports it, counters that grow between scrapes) to check what a
//! weir on this branch cannot produce yet: the rollout cell, rates and the last reload.
//!
//! Chromium comes from the Debian package (`apt-get install chromium`, as .ci/run does).
//! Without it the test fails when `CI` is set and is skipped with a notice otherwise.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use support::upstream::Upstream;
use support::{eventually, get, weir};

/// Longest a Chromium run may take before it is killed.
const CHROMIUM_BUDGET: Duration = Duration::from_secs(30);

/// A Chromium binary: /usr/bin/chromium, else the usual names on PATH.
fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs Chromium headless on `url` with `extra` flags, killed after `CHROMIUM_BUDGET`.
/// Returns its stdout; panics with stderr on failure.
fn headless(chromium: &Path, profile: &Path, url: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let deadline = Instant::now() + CHROMIUM_BUDGET;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {CHROMIUM_BUDGET:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium exited with {status}; stderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    stdout
}

/// The start tag of the first element whose attributes include all of `attrs`
/// (each `name="value"`), e.g. `<tr data-route="app" data-backend="www" ...>`.
fn tag_with<'a>(dom: &'a str, attrs: &[&str]) -> Option<&'a str> {
    let mut rest = dom;
    while let Some(start) = rest.find('<') {
        let tail = &rest[start..];
        let end = tail.find('>')?;
        let tag = &tail[..=end];
        if attrs.iter().all(|a| tag.contains(a)) {
            return Some(tag);
        }
        rest = &tail[end + 1..];
    }
    None
}

/// The text of the element with `id`, tags stripped.
fn text_of(dom: &str, id: &str) -> Option<String> {
    let open = dom.find(&format!("id=\"{id}\""))?;
    let start = open + dom[open..].find('>')? + 1;
    let end = start + dom[start..].find("</")?;
    Some(dom[start..end].to_owned())
}

/// Chromium, or None after a skip notice; without it under `CI` the test fails.
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no Chromium was found (/usr/bin/chromium, or chromium, \
             chromium-browser, google-chrome on PATH): apt-get install chromium"
        );
        eprintln!(
            "note: skipping the dashboard test: no Chromium found \
             (apt-get install chromium to run it)"
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_renders_routes_services_and_health_in_chromium() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let api = Upstream::named("api").start().await;
    // Nothing listens on port 1: connections are refused, health checks fail.
    let dead = "127.0.0.1:1";
    let standby = Upstream::named("standby").start().await;
    let config = support::config(&format!(
        r#"
[[routes]]
name = "app"
path = "/"
backends = [{{ site = "www", weight = 30 }}, {{ service = "api", weight = 70 }}]

# A name full of markup: the page must show it as text, never build elements from it.
[[routes]]
name = "<b id=\"injected\">x</b>"
path = "/x/"
backends = [{{ site = "www" }}]

[sites.www]
root = "www"

[services.api]
health = {{ path = "/health", interval = "100ms", timeout = "500ms", healthy = 1, unhealthy = 1 }}
failover = {{ min_healthy = 0.5 }}   # one of two up keeps the primary active
[[services.api.regions]]
name = "primary"
endpoints = ["{live}", "{dead}"]
[[services.api.regions]]
name = "backup"
endpoints = ["{standby}"]
"#,
        live = api.endpoint(),
        standby = standby.endpoint(),
    ));
    let w = weir()
        .file("www/index.html", "<!doctype html><p>site</p>\n")
        .start(&config)
        .await;

    // The dead endpoint is judged; the live one stays in.
    assert!(
        eventually(Duration::from_secs(10), || async {
            let status: serde_json::Value =
                serde_json::from_slice(&get(w.admin, "/status").await.body).unwrap_or_default();
            let endpoints = &status["services"][0]["regions"][0]["endpoints"];
            endpoints[0]["healthy"] == true && endpoints[1]["healthy"] == false
        })
        .await,
        "health checks never marked {dead} unhealthy"
    );
    const REQUESTS: usize = 20;
    for _ in 0..REQUESTS {
        assert_eq!(get(w.addr("web"), "/").await.status, 200);
    }
    // Counted when each body ends: wait until /metrics has them all.
    let counted = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("weir_requests_total{route=\"app\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            counted(&get(w.admin, "/metrics").await.text()) == REQUESTS as f64
        })
        .await,
        "metrics never counted {REQUESTS} requests"
    );

    let url = format!("http://{}/", w.admin);
    let profile = tempfile::tempdir().expect("profile dir");
    let chromium_path = chromium.clone();
    let profile_path = profile.path().to_owned();
    let dump_url = url.clone();
    let dom = tokio::task::spawn_blocking(move || {
        headless(&chromium_path, &profile_path, &dump_url, &["--dump-dom"])
    })
    .await
    .expect("chromium task");

    assert!(
        text_of(&dom, "error").is_some_and(|e| e.is_empty()),
        "the page reports an error: {:?}\n{dom}",
        text_of(&dom, "error")
    );
    assert_eq!(
        text_of(&dom, "generation").as_deref(),
        Some("1"),
        "generation\n{dom}"
    );
    assert!(
        text_of(&dom, "loaded-at").is_some_and(|t| t.ends_with('Z')),
        "loaded_at\n{dom}"
    );
    let site = tag_with(
        &dom,
        &[
            r#"data-route="app""#,
            r#"data-backend="www""#,
            r#"data-weight="30""#,
        ],
    )
    .unwrap_or_else(|| panic!("no row for backend www of route app with weight 30\n{dom}"));
    assert!(site.contains(r#"data-effective-weight="30""#), "{site}");
    let service = tag_with(
        &dom,
        &[
            r#"data-route="app""#,
            r#"data-backend="api""#,
            r#"data-weight="70""#,
        ],
    )
    .unwrap_or_else(|| panic!("no row for backend api of route app with weight 70\n{dom}"));
    assert!(
        service.contains(r#"data-effective-weight="70""#),
        "{service}"
    );
    let requests = tag_with(&dom, &[&format!(r#"data-requests="{REQUESTS}""#)])
        .unwrap_or_else(|| panic!("the route's request count ({REQUESTS}) is not shown\n{dom}"));
    assert!(requests.contains(r#"data-errors="0""#), "{requests}");
    assert!(
        tag_with(&dom, &[r#"data-rollout="none""#]).is_some(),
        "a route without rollout shows none\n{dom}"
    );

    let live = tag_with(
        &dom,
        &[
            r#"data-service="api""#,
            &format!(r#"data-endpoint="{}""#, api.endpoint()),
        ],
    )
    .unwrap_or_else(|| panic!("no row for endpoint {}\n{dom}", api.endpoint()));
    assert!(live.contains(r#"data-healthy="true""#), "{live}");
    assert!(live.contains(r#"data-region="primary""#), "{live}");
    assert!(live.contains(r#"data-active="true""#), "{live}");
    let down = tag_with(&dom, &[&format!(r#"data-endpoint="{dead}""#)])
        .unwrap_or_else(|| panic!("no row for the dead endpoint {dead}\n{dom}"));
    assert!(down.contains(r#"data-healthy="false""#), "{down}");
    let backup = tag_with(
        &dom,
        &[&format!(r#"data-endpoint="{}""#, standby.endpoint())],
    )
    .unwrap_or_else(|| panic!("no row for the standby endpoint\n{dom}"));
    assert!(
        backup.contains(r#"data-region="backup""#) && backup.contains(r#"data-active="false""#),
        "{backup}"
    );
    assert!(dom.contains(r#"data-region-state="standby""#), "{dom}");
    assert!(
        dom.contains(">unhealthy<") && dom.contains(">healthy<"),
        "health is spelled out\n{dom}"
    );
    assert!(
        dom.contains(r#"&lt;b id="injected"&gt;x&lt;/b&gt;"#),
        "the markup-named route is shown as text\n{dom}"
    );
    assert!(
        !dom.contains(r#"<b id="injected">"#),
        "a route name became markup\n{dom}"
    );

    // A screenshot for a person to look at: target/tmp/dashboard.png.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let shot_flag = format!("--screenshot={}", shot.display());
    let chromium_path = chromium.clone();
    let profile_path = profile.path().to_owned();
    tokio::task::spawn_blocking(move || {
        headless(
            &chromium_path,
            &profile_path,
            &url,
            &[&shot_flag, "--window-size=1280,900"],
        )
    })
    .await
    .expect("chromium task");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
    assert!(
        png.len() > 10_000,
        "{} is only {} bytes: a blank page?",
        shot.display(),
        png.len()
    );
    eprintln!("dashboard screenshot: {}", shot.display());
}

/// What a weir with a running rollout reports (SPEC "Details": state, step, since, the
/// last verdict with its figures), plus a field the page has never heard of.
const CANNED_STATUS: &str = r#"{
  "generation": 7,
  "loaded_at": "2026-11-26T12:00:00Z",
  "routes": [{
    "name": "api",
    "backends": [
      { "name": "api-stable", "weight": 100, "effective_weight": 75 },
      { "name": "api-canary", "weight": 0, "effective_weight": 25 }
    ],
    "rollout": {
      "from": "api-stable", "to": "api-canary", "state": "running", "step": 25,
      "weight": 25, "since": "2026-11-26T11:45:00Z",
      "reason": "window clean: advanced from 10",
      "window": { "requests": 240, "error_rate": 0.004, "p99_ms": 180 },
      "novel_field": "shown as is"
    }
  }],
  "services": []
}"#;

/// The page itself at `/`, `CANNED_STATUS` at `/status`, and at `/metrics` counters that
/// grow by 100 requests (10 of them 5xx) and one failed reload per scrape.
async fn canned_admin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let scrapes = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let scrapes = scrapes.clone();
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let scrapes = scrapes.clone();
                async move {
                    let (kind, body) = match req.uri().path() {
                        "/" => (
                            "text/html",
                            include_str!("../proxy/admin/dashboard.html").to_owned(),
                        ),
                        "/status" => ("application/json", CANNED_STATUS.to_owned()),
                        "/metrics" => {
                            let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
                            let body = format!(
                                "# TYPE weir_requests counter\n\
                                 weir_requests_total{{route=\"api\",backend=\"api-stable\",code_class=\"2xx\"}} {ok}\n\
                                 weir_requests_total{{route=\"api\",backend=\"api-canary\",code_class=\"5xx\"}} {bad}\n\
                                 weir_config_reloads_total{{result=\"ok\"}} 6\n\
                                 weir_config_reloads_total{{result=\"failed\"}} {n}\n\
                                 # EOF\n",
                                ok = 90 * n,
                                bad = 10 * n,
                            );
                            (
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                body,
                            )
                        }
                        _ => ("text/plain", String::new()),
                    };
                    let mut response = http::Response::new(Full::new(Bytes::from(body)));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(kind),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_rollout_rates_and_the_last_reload() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let admin = canned_admin().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let profile_path = profile.path().to_owned();
    // target/tmp/dashboard-rollout.png, for a person to look at.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-rollout.png");
    let dom = tokio::task::spawn_blocking(move || {
        let url = format!("http://{admin}/");
        let shot_flag = format!("--screenshot={}", shot.display());
        headless(
            &chromium,
            &profile_path,
            &url,
            &[&shot_flag, "--window-size=1280,500"],
        );
        headless(&chromium, &profile_path, &url, &["--dump-dom"])
    })
    .await
    .expect("chromium task");

    assert_eq!(text_of(&dom, "generation").as_deref(), Some("7"), "{dom}");
    let rollout = tag_with(&dom, &[r#"data-rollout="yes""#])
        .unwrap_or_else(|| panic!("no rollout cell\n{dom}"));
    assert!(
        rollout.contains(r#"data-rollout-state="running""#)
            && rollout.contains(r#"data-rollout-step="25""#),
        "{rollout}"
    );
    for shown in [
        ">running<",
        ">window clean: advanced from 10<",
        ">from: api-stable<",
        ">since: 2026-11-26T11:45:00Z<",
        ">window.requests: 240<",
        ">window.error_rate: 0.004<",
        ">novel_field: shown as is<",
    ] {
        assert!(dom.contains(shown), "the rollout cell lacks {shown}\n{dom}");
    }
    assert!(
        tag_with(
            &dom,
            &[
                r#"data-backend="api-canary""#,
                r#"data-effective-weight="25""#
            ]
        )
        .is_some(),
        "{dom}"
    );

    // Counters grew between scrapes: 10 % of the requests were 5xx, at some positive rate.
    let error_rate = tag_with(&dom, &[r#"data-error-rate="0.1000""#]);
    assert!(error_rate.is_some(), "5xx share of 10 % not shown\n{dom}");
    let rate = tag_with(&dom, &["data-rate=\""])
        .and_then(|tag| tag.split("data-rate=\"").nth(1)?.split('"').next())
        .and_then(|r| r.parse::<f64>().ok());
    assert!(rate.is_some_and(|r| r > 0.0), "rate {rate:?}\n{dom}");
    // The failed-reload counter went up: the last reload is shown as failed.
    assert!(
        tag_with(&dom, &[r#"id="last-reload""#, r#"data-result="failed""#]).is_some(),
        "last reload\n{dom}"
    );
    assert_eq!(text_of(&dom, "reloads-ok").as_deref(), Some("6"), "{dom}");
}
