//! SPEC "Admin and observability" and "Hot reload" (the parts the
//! foundation has): health, readiness, metrics, status, config, reload.

mod support;

use std::time::Duration;

use support::{config, eventually, get, request, send, weir};

const ROUTES: &str = r#"
[[routes]]
name = "site"
path = "/"
backends = [{ site = "www" }]

[[routes]]
host = "api.test"
path = "/api/"
backends = [{ service = "blue", weight = 90 }, { service = "green", weight = 10 }]

[sites.www]
root = "www"

[services.blue]
[[services.blue.regions]]
name = "us-east-1"
endpoints = ["127.0.0.1:9", "127.0.0.2:9"]
[[services.blue.regions]]
name = "eu-west-1"
endpoints = ["127.0.0.3:9"]

[services.green]
endpoints = ["127.0.0.1:19"]
"#;

async fn start() -> support::Weir {
    weir()
        .file("www/index.html", "hello\n")
        .start(&config(ROUTES))
        .await
}

#[tokio::test]
async fn health_and_readiness() {
    let w = start().await;
    let health = get(w.admin, "/healthz").await;
    assert_eq!(
        (health.status.as_u16(), health.text().as_str()),
        (200, "ok\n")
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(w.admin, "/readyz").await.status == 200
        })
        .await,
        "ready after start"
    );
    assert_eq!(get(w.admin, "/nope").await.status, 404);
    let post = send(w.admin, request("POST", "/healthz", &[])).await;
    assert_eq!(post.status, 405);
}

#[tokio::test]
async fn metrics_count_requests_by_route_backend_and_class() {
    let w = start().await;
    assert_eq!(get(w.addr("web"), "/").await.status, 200);
    assert_eq!(get(w.addr("web"), "/missing").await.status, 404);
    let metrics = get(w.admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = metrics.text();
    // The body is counted when it ends, just after the client has read it.
    for line in [
        r#"weir_requests_total{route="site",backend="www",code_class="2xx"} 1"#,
        r#"weir_requests_total{route="site",backend="www",code_class="4xx"} 1"#,
        r#"weir_backend_weight{route="api.test/api/",backend="blue"} 90"#,
        r#"weir_open_connections"#,
        r#"weir_request_duration_seconds_bucket{le="0.001",route="site",backend="www"}"#,
    ] {
        let found = text.contains(line)
            || eventually(Duration::from_secs(2), || async {
                get(w.admin, "/metrics").await.text().contains(line)
            })
            .await;
        assert!(found, "missing {line} in\n{text}");
    }
    assert!(!text.contains("/missing"), "raw paths never become labels");
}

#[tokio::test]
async fn requests_answered_without_a_backend_are_counted_too() {
    let w = weir()
        .file("s/a.txt", "a")
        .start(&config(&format!(
            "[[routes]]\nname = \"limited\"\nhost = \"limited.test\"\npath = \"/\"\n\
             backends = [{{ site = \"s\" }}]\nrate_limit = {{ per_ip = \"1/min\", burst = 1 }}\n\n\
             [[routes]]\nname = \"down\"\nhost = \"down.test\"\npath = \"/\"\n\
             backends = [{{ service = \"dead\" }}]\n\n\
             [services.dead]\nendpoints = [\"{}\"]\n\
             health = {{ path = \"/h\", interval = \"100ms\", timeout = \"100ms\", unhealthy = 1 }}\n\n\
             [sites.s]\nroot = \"s\"\n",
            support::upstream::dead_endpoint()
        )))
        .await;
    let web = w.addr("web");
    let at = |host: &'static str| request("GET", "/a.txt", &[("host", host)]);
    assert_eq!(send(web, at("limited.test")).await.status, 200);
    assert_eq!(send(web, at("limited.test")).await.status, 429);
    // The dead endpoint's first failed check takes its service's weight.
    assert!(
        eventually(Duration::from_secs(5), || async {
            send(web, at("down.test")).await.status == 503
        })
        .await,
        "no 503 from a route whose one backend is down"
    );
    assert_eq!(send(web, at("nowhere.test")).await.status, 404);
    // A head the HTTP/1.1 codec refuses itself is a request no route took.
    let (refused, _) = support::raw(web, b"GARBAGE\r\n\r\n", Duration::from_secs(5)).await;
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    for line in [
        r#"weir_requests_total{route="limited",backend="s",code_class="2xx"} 1"#,
        r#"weir_requests_total{route="limited",backend="",code_class="4xx"} 1"#,
        r#"weir_requests_total{route="down",backend="",code_class="5xx"}"#,
        r#"weir_requests_total{route="",backend="",code_class="4xx"} 2"#,
    ] {
        assert!(metrics_show(&w, line).await, "missing {line}");
    }
    // A route that refuses nothing has no refusal series.
    let text = get(w.admin, "/metrics").await.text();
    assert!(
        !text.contains(r#"route="limited",backend="",code_class="5xx""#),
        "{text}"
    );
}

/// Whether `/metrics` shows `line` within a few seconds.
async fn metrics_show(w: &support::Weir, line: &str) -> bool {
    eventually(Duration::from_secs(3), || async {
        get(w.admin, "/metrics").await.text().contains(line)
    })
    .await
}

#[tokio::test]
async fn open_connections_count_from_accept_and_follow_the_protocol() {
    let w = start().await;
    // Three sockets that never send a byte are open connections too.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(w.addr("web")).await.unwrap());
    }
    let h1 = r#"weir_open_connections{listener="web",protocol="h1"}"#;
    assert!(
        metrics_show(&w, &format!("{h1} 3")).await,
        "3 silent sockets"
    );
    // An h2c prior-knowledge connection moves from h1 to h2 at its first request.
    let (mut sender, conn) = support::h2c(w.addr("web")).await;
    let reply = sender.send_request(request("GET", "/", &[])).await.unwrap();
    assert_eq!(reply.status(), 200);
    let h2 = r#"weir_open_connections{listener="web",protocol="h2"}"#;
    assert!(
        metrics_show(&w, &format!("{h2} 1")).await,
        "h2c counted as h2"
    );
    assert!(metrics_show(&w, &format!("{h1} 3")).await, "and not as h1");
    drop((reply, sender, silent));
    conn.abort();
    assert!(
        metrics_show(&w, &format!("{h1} 0")).await,
        "closed sockets uncounted"
    );
    assert!(
        metrics_show(&w, &format!("{h2} 0")).await,
        "closed h2 uncounted"
    );
}

#[tokio::test]
async fn status_has_the_spec_shape() {
    let w = start().await;
    let status: serde_json::Value =
        serde_json::from_slice(&get(w.admin, "/status").await.body).unwrap();
    assert_eq!(status["generation"], 1);
    assert!(status["loaded_at"].as_str().unwrap().ends_with('Z'));
    let routes = status["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0]["name"], "site");
    assert_eq!(routes[1]["name"], "api.test/api/");
    assert_eq!(routes[1]["backends"][0]["name"], "blue");
    assert_eq!(routes[1]["backends"][0]["weight"], 90);
    assert_eq!(routes[1]["backends"][1]["effective_weight"], 10);
    let services = status["services"].as_array().unwrap();
    let blue = services.iter().find(|s| s["name"] == "blue").unwrap();
    assert_eq!(blue["active_region"], "us-east-1");
    assert_eq!(blue["regions"][0]["total"], 2);
    assert_eq!(blue["regions"][1]["name"], "eu-west-1");
    assert_eq!(blue["regions"][0]["endpoints"][1]["address"], "127.0.0.2:9");
    assert!(blue["regions"][0]["endpoints"][0]["healthy"].is_boolean());
    assert_eq!(blue["regions"][0]["endpoints"][0]["ejected"], false);
    let green = services.iter().find(|s| s["name"] == "green").unwrap();
    assert_eq!(green["regions"][0]["name"], "default");
}

#[tokio::test]
async fn config_shows_the_effective_config_without_key_material() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let tls = r#"
[[listeners]]
name = "tls"
bind = ["127.0.0.1:0"]
[listeners.tls]
certs = [{ cert = "site.pem", key = "site-key.pem" }]
"#;
    let w = weir()
        .file("www/index.html", "hello\n")
        .file("site.pem", cert.cert.pem())
        .file("site-key.pem", cert.signing_key.serialize_pem())
        .start(&format!("{}\n{tls}", config(ROUTES)))
        .await;
    let shown = get(w.admin, "/config").await;
    assert_eq!(shown.status, 200);
    let text = shown.text();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["routes"][0]["name"], "site");
    assert_eq!(
        value["limits"]["max_body_bytes"], "100MiB",
        "units print back as written"
    );
    assert_eq!(
        value["listeners"][1]["tls"]["certs"][0]["key"],
        "site-key.pem"
    );
    assert!(!text.contains("PRIVATE KEY"), "key material leaked");
}

#[tokio::test]
async fn reload_swaps_config_and_rejects_invalid_ones() {
    let w = start().await;
    assert_eq!(get(w.addr("web"), "/").await.text(), "hello\n");

    std::fs::create_dir_all(w.path("www2")).unwrap();
    std::fs::write(w.path("www2/index.html"), "second\n").unwrap();
    w.write_config(&config(
        &ROUTES.replace("root = \"www\"", "root = \"www2\""),
    ));
    let reply = send(w.admin, request("POST", "/reload", &[])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body, serde_json::json!({ "ok": true, "generation": 2 }));
    assert_eq!(get(w.addr("web"), "/").await.text(), "second\n");

    // Two errors: both reported, the old config keeps serving.
    let broken = ROUTES
        .replace("root = \"www\"", "root = \"nowhere\"")
        .replace("service = \"green\"", "service = \"grene\"");
    w.write_config(&config(&broken));
    let reply = send(w.admin, request("POST", "/reload", &[])).await;
    assert_eq!(reply.status, 400);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["ok"], false);
    let errors: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("sites.www.root")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unknown service \"grene\"") && e.contains("weir.toml:")),
        "{errors:?}"
    );
    assert_eq!(
        get(w.addr("web"), "/").await.text(),
        "second\n",
        "old config still served"
    );

    // A truncated file is an invalid config, not a crash.
    w.write_config(&config(ROUTES)[..config(ROUTES).len() / 2]);
    assert_eq!(
        send(w.admin, request("POST", "/reload", &[])).await.status,
        400
    );

    let metrics = get(w.admin, "/metrics").await.text();
    assert!(
        metrics.contains(r#"weir_config_reloads_total{result="ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"weir_config_reloads_total{result="failed"} 2"#),
        "{metrics}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&get(w.admin, "/status").await.body).unwrap();
    assert_eq!(status["generation"], 2);
    assert_eq!(
        send(w.admin, request("GET", "/reload", &[])).await.status,
        405
    );
}

#[tokio::test]
async fn readiness_turns_503_while_draining_and_in_flight_finishes() {
    // A 20 MiB file keeps a response in flight while the drain starts.
    let big = vec![b'z'; 20 << 20];
    let mut w = weir()
        .file("www/index.html", "hello\n")
        .file("www/big.bin", &big)
        .start(&config(&format!(
            "[limits]\nshutdown_grace = \"10s\"\n{ROUTES}"
        )))
        .await;
    let addr = w.addr("web");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut stream, &mut first)
        .await
        .unwrap();
    assert!(n > 0);
    let admin = w.admin;
    let stopped = w.begin_stop();
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(admin, "/readyz").await.status == 503
        })
        .await,
        "readyz did not turn 503 while draining"
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await,
        "listener still accepting while draining"
    );
    let (rest, closed) = support::read_until_closed(&mut stream, Duration::from_secs(20)).await;
    assert!(closed);
    let total = n + rest.len();
    assert!(
        total > big.len(),
        "in-flight response cut short: {total} bytes"
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(15), stopped)
            .await
            .unwrap()
            .unwrap(),
        "drained in grace"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_close_when_the_drain_starts() {
    let mut w = weir()
        .file("www/index.html", "hello\n")
        .start(&config(&format!(
            "[limits]\nshutdown_grace = \"60s\"\nidle_timeout = \"300s\"\n{ROUTES}"
        )))
        .await;
    let addr = w.addr("web");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut stream, &mut answer)
        .await
        .unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    // The connection now waits, idle, for a next request that never comes.
    let stopped = w.begin_stop();
    let (rest, closed) = support::read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "idle connection still open 10 s into the drain");
    assert!(rest.is_empty(), "{rest:?}");
    // Far within the grace: nothing kept the drain waiting.
    assert!(
        tokio::time::timeout(Duration::from_secs(10), stopped)
            .await
            .unwrap()
            .unwrap(),
        "drained in grace"
    );
}
