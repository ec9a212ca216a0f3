//! SPEC "Config file" routes and "Details": host and prefix matching,
//! listener filters, strip_prefix, weighted split, redirect_https,
//! X-Request-Id, HTTP/2 prior knowledge, services before proxying lands.

mod support;

use std::collections::HashMap;

use support::{config, get, request, send, send_h2, weir};

/// Sites `a`..`e`, each answering its own name at `/id.txt` and under `/api/`.
fn sites() -> support::Builder {
    let mut b = weir();
    for name in ["a", "b", "c", "d", "e"] {
        b = b
            .file(&format!("{name}/id.txt"), name)
            .file(&format!("{name}/api/id.txt"), format!("{name} api"))
            .file(&format!("{name}/users/id.txt"), format!("{name} users"));
    }
    b
}

fn site_tables() -> String {
    ["a", "b", "c", "d", "e"]
        .iter()
        .map(|n| format!("[sites.{n}]\nroot = \"{n}\"\n"))
        .collect()
}

async fn body(addr: std::net::SocketAddr, host: &str, path: &str) -> (u16, String) {
    let reply = send(addr, request("GET", path, &[("host", host)])).await;
    (reply.status.as_u16(), reply.text())
}

#[tokio::test]
async fn most_specific_host_then_longest_prefix() {
    let routes = r#"
[[routes]]
path = "/"
backends = [{ site = "a" }]

[[routes]]
host = "app.example.com"
path = "/"
backends = [{ site = "b" }]

[[routes]]
host = "*.example.com"
path = "/"
backends = [{ site = "c" }]

[[routes]]
host = "app.example.com"
path = "/api"
backends = [{ site = "d" }]

[[routes]]
path = "/api/"
backends = [{ site = "e" }]
"#;
    let w = sites()
        .start(&config(&format!("{routes}\n{}", site_tables())))
        .await;
    let addr = w.addr("web");
    let cases = [
        ("app.example.com", "/id.txt", "b"),
        ("APP.example.com:8080", "/id.txt", "b"),
        ("app.example.com", "/api/id.txt", "d api"),
        ("other.example.com", "/id.txt", "c"),
        ("deep.other.example.com", "/api/id.txt", "c api"),
        ("example.com", "/id.txt", "a"),
        ("elsewhere.test", "/api/id.txt", "e api"),
        ("elsewhere.test", "/apix", "a"),
    ];
    for (host, path, want) in cases {
        let (status, text) = body(addr, host, path).await;
        if want == "a" && path == "/apix" {
            // Falls to the catch-all route: site a has no /apix, so 404 from site a.
            assert_eq!(status, 404, "{host}{path}");
            continue;
        }
        assert_eq!((status, text.as_str()), (200, want), "{host}{path}");
    }
}

#[tokio::test]
async fn no_matching_route_is_404_with_reason() {
    let routes = "[[routes]]\nhost = \"only.test\"\npath = \"/\"\nbackends = [{ site = \"a\" }]\n";
    let w = sites()
        .start(&config(&format!("{routes}\n{}", site_tables())))
        .await;
    let reply = send(
        w.addr("web"),
        request("GET", "/id.txt", &[("host", "other.test")]),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("weir-error"), Some("no-route"));
}

#[tokio::test]
async fn listener_filter_limits_a_route() {
    let text = format!(
        r#"[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "public"
bind = ["127.0.0.1:0"]

[[listeners]]
name = "internal"
bind = ["127.0.0.1:0"]

[access_log]
format = "off"

[[routes]]
path = "/api/"
listeners = ["internal"]
backends = [{{ site = "b" }}]

[[routes]]
path = "/"
backends = [{{ site = "a" }}]

{}"#,
        site_tables()
    );
    let w = sites().start(&text).await;
    assert_eq!(
        body(w.addr("internal"), "x", "/api/id.txt").await,
        (200, "b api".into())
    );
    assert_eq!(
        body(w.addr("public"), "x", "/api/id.txt").await,
        (200, "a api".into())
    );
}

#[tokio::test]
async fn strip_prefix_removes_the_route_path() {
    let routes = r#"
[[routes]]
path = "/api"
strip_prefix = true
backends = [{ site = "a" }]

[[routes]]
path = "/keep/"
backends = [{ site = "b" }]
"#;
    let w = sites()
        .file("b/keep/id.txt", "b kept")
        .start(&config(&format!("{routes}\n{}", site_tables())))
        .await;
    let addr = w.addr("web");
    assert_eq!(
        body(addr, "x", "/api/users/id.txt").await,
        (200, "a users".into())
    );
    assert_eq!(body(addr, "x", "/api/id.txt").await, (200, "a".into()));
    assert_eq!(
        body(addr, "x", "/keep/id.txt").await,
        (200, "b kept".into())
    );
}

#[tokio::test]
async fn weighted_split_is_exact_and_weight_zero_gets_nothing() {
    let routes = r#"
[[routes]]
path = "/"
backends = [{ site = "a", weight = 3 }, { site = "b", weight = 1 }, { site = "c", weight = 0 }]
"#;
    let w = sites()
        .start(&config(&format!("{routes}\n{}", site_tables())))
        .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for _ in 0..400 {
        let (status, text) = body(w.addr("web"), "x", "/id.txt").await;
        assert_eq!(status, 200);
        *seen.entry(text).or_default() += 1;
    }
    assert_eq!(seen.get("a"), Some(&300), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&100), "{seen:?}");
    assert_eq!(seen.get("c"), None, "{seen:?}");
}

#[tokio::test]
async fn dead_service_endpoint_answers_502() {
    let routes = r#"
[[routes]]
path = "/api/"
backends = [{ service = "api" }]

[services.api]
endpoints = ["127.0.0.1:9"]
"#;
    let w = weir().start(&config(routes)).await;
    let reply = get(w.addr("web"), "/api/x").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("weir-error"), Some("upstream-connect-failed"));
}

#[tokio::test]
async fn request_id_is_kept_or_generated() {
    let routes = "[[routes]]\npath = \"/\"\nbackends = [{ site = \"a\" }]\n";
    let w = sites()
        .start(&config(&format!("{routes}\n{}", site_tables())))
        .await;
    let kept = send(
        w.addr("web"),
        request("GET", "/id.txt", &[("x-request-id", "abc-123")]),
    )
    .await;
    assert_eq!(kept.header("x-request-id"), Some("abc-123"));
    let one = get(w.addr("web"), "/id.txt").await;
    let two = get(w.addr("web"), "/id.txt").await;
    let (one, two) = (
        one.header("x-request-id").unwrap().to_owned(),
        two.header("x-request-id").unwrap().to_owned(),
    );
    assert_eq!(one.len(), 32);
    assert_ne!(one, two);
    // A header value that is not a sane id is replaced.
    let replaced = send(
        w.addr("web"),
        request("GET", "/id.txt", &[("x-request-id", "a b")]),
    )
    .await;
    assert_ne!(replaced.header("x-request-id"), Some("a b"));
}

#[tokio::test]
async fn http2_prior_knowledge_on_plain_tcp() {
    let routes = "[[routes]]\nhost = \"h2.test\"\npath = \"/\"\nbackends = [{ site = \"b\" }]\n[[routes]]\npath = \"/\"\nbackends = [{ site = \"a\" }]\n";
    let w = sites()
        .start(&config(&format!("{routes}\n{}", site_tables())))
        .await;
    let req = http::Request::builder()
        .uri("http://h2.test/id.txt")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let reply = send_h2(w.addr("web"), req).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "b", "HTTP/2 :authority routes like Host");
}

#[tokio::test]
async fn redirect_https_keeps_host_path_query_and_exempts_acme() {
    let text = format!(
        r#"[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "web"
bind = ["127.0.0.1:0"]
redirect_https = "tls"

[[listeners]]
name = "tls"
bind = ["127.0.0.1:18443"]
[listeners.tls]
certs = [{{ cert = "site.pem", key = "site-key.pem" }}]

[access_log]
format = "off"

[[routes]]
path = "/"
backends = [{{ site = "a" }}]

{}"#,
        site_tables()
    );
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    // The TLS listener binds a fixed port so the redirect has a known port;
    // only the plain listener is exercised, and 18443 is unlikely to be busy.
    let Ok(probe) = std::net::TcpListener::bind("127.0.0.1:18443") else {
        eprintln!("skipping: 127.0.0.1:18443 is busy");
        return;
    };
    drop(probe);
    let w = sites()
        .file("site.pem", cert.cert.pem())
        .file("site-key.pem", cert.signing_key.serialize_pem())
        .file("a/.well-known/acme-challenge/token", "proof")
        .start(&text)
        .await;
    let reply = send(
        w.addr("web"),
        request("GET", "/a/b?x=1&y=2", &[("host", "app.example.com:8080")]),
    )
    .await;
    assert_eq!(reply.status, 308);
    assert_eq!(
        reply.header("location"),
        Some("https://app.example.com:18443/a/b?x=1&y=2")
    );
    let acme = send(
        w.addr("web"),
        request(
            "GET",
            "/.well-known/acme-challenge/token",
            &[("host", "app.example.com")],
        ),
    )
    .await;
    assert_eq!((acme.status.as_u16(), acme.text().as_str()), (200, "proof"));
}

#[tokio::test]
async fn head_has_get_headers_and_no_body() {
    let routes = "[[routes]]\npath = \"/\"\nbackends = [{ site = \"a\" }]\n";
    let w = sites()
        .start(&config(&format!("{routes}\n{}", site_tables())))
        .await;
    for path in ["/id.txt", "/missing"] {
        let get = send(w.addr("web"), request("GET", path, &[])).await;
        let head = send(w.addr("web"), request("HEAD", path, &[])).await;
        assert_eq!(head.status, get.status, "{path}");
        assert!(head.body.is_empty(), "{path}: HEAD has a body");
        assert_eq!(
            head.header("content-length"),
            get.header("content-length"),
            "{path}"
        );
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
    }
    let post = send(w.addr("web"), request("DELETE", "/id.txt", &[])).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn dot_segments_are_refused_and_repeated_slashes_merged_before_routing() {
    // `/private/` is a route of its own; spelled with dot segments, its
    // path must not reach the catch-all's upstream, which may resolve it.
    let up = support::upstream::Upstream::echo().start().await;
    let w = sites()
        .start(&config(&format!(
            "[[routes]]\npath = \"/\"\nbackends = [{{ service = \"app\" }}]\n\n\
             [[routes]]\npath = \"/private/\"\nstrip_prefix = true\nbackends = [{{ site = \"b\" }}]\n\n\
             [services.app]\nendpoints = [\"{}\"]\n\n{}",
            up.endpoint(),
            site_tables()
        )))
        .await;
    let web = w.addr("web");
    for path in [
        "/x/../private/id.txt",
        "/x/%2e%2e/private/id.txt",
        "/x/.%2E/private/id.txt",
        "/x/..%2fprivate/id.txt",
        "/./private/id.txt",
    ] {
        let reply = get(web, path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        assert_eq!(reply.header("weir-error"), Some("bad-request"), "{path}");
    }
    let (response, _) = support::raw(
        web,
        b"GET /x/../private/id.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(up.stats.paths().is_empty(), "{:?}", up.stats.paths());
    // Repeated slashes are one: the route of `/private/` takes them, and
    // what is passed on has them merged.
    assert_eq!(get(web, "//private/id.txt").await.text(), "b");
    assert_eq!(get(web, "/private//id.txt").await.text(), "b");
    assert_eq!(get(web, "//x//y?q=a//b").await.status, 200);
    assert_eq!(up.stats.paths(), ["/x/y?q=a//b"]);
    // Dots inside names are no segments of their own.
    assert_eq!(get(web, "/a..b/x.y").await.status, 200);
    assert_eq!(get(web, "/private/id.txt").await.text(), "b");
    assert_eq!(up.stats.paths(), ["/x/y?q=a//b", "/a..b/x.y"]);
}

/// weir tunnels nothing: CONNECT, over HTTP/1.1 (authority form) or HTTP/2,
/// gets 501 naming the reason, even where a catch-all route would take any
/// path, and never reaches an upstream.
#[tokio::test]
async fn connect_is_refused_as_not_implemented() {
    let up = support::upstream::Upstream::echo().start().await;
    let w = sites()
        .start(&config(&format!(
            "[[routes]]\npath = \"/\"\nbackends = [{{ service = \"app\" }}]\n\n\
             [services.app]\nendpoints = [\"{}\"]\n\n{}",
            up.endpoint(),
            site_tables()
        )))
        .await;
    let web = w.addr("web");
    let (response, _) = support::raw(
        web,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 501"), "{response}");
    assert!(
        response.contains("weir-error: method-not-implemented"),
        "{response}"
    );
    let connect = http::Request::connect("example.com:443")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let reply = support::send_h2(web, connect).await;
    assert_eq!(reply.status, 501, "{}", reply.text());
    assert_eq!(reply.header("weir-error"), Some("method-not-implemented"));
    // The catch-all still proxies everything else.
    assert_eq!(get(web, "/x").await.status, 200);
    assert_eq!(up.stats.paths(), ["/x"]);
}
