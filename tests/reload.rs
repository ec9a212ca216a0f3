//! SPEC "Hot reload", the file watch: the config file's directory is
//! watched (in-place writes, editor renames, the Kubernetes ConfigMap
//! `..data` symlink swap), and so are the certificate and `_headers` files
//! it names. One save is one reload; invalid or half-written files are
//! rejected while the old config keeps serving. SIGHUP and `POST /reload`
//! are covered in tests/cli.rs and tests/admin.rs. The swap is atomic: a
//! request in flight keeps the config it started with, the next one on the
//! same connection gets the new one, and reloads under load fail nothing.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use support::{config, eventually, get, pki::pki};

/// A change must be served within this long.
const WITHIN: Duration = Duration::from_secs(3);
/// Long enough after a change for a second, unwanted reload to show.
const SETTLE: Duration = Duration::from_millis(800);

fn site_config(root: &str) -> String {
    config(&format!(
        "[[routes]]\npath = \"/\"\nbackends = [{{ site = \"www\" }}]\n\n[sites.www]\nroot = \"{root}\"\n"
    ))
}

/// `weir_config_reloads_total{result}`; 0 before the first one.
async fn reloads(admin: SocketAddr, result: &str) -> u64 {
    let text = get(admin, "/metrics").await.text();
    let prefix = format!("weir_config_reloads_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

async fn generation(admin: SocketAddr) -> u64 {
    let status: serde_json::Value =
        serde_json::from_slice(&get(admin, "/status").await.body).expect("status JSON");
    status["generation"].as_u64().expect("generation")
}

/// Polls `/` until it answers `want`.
async fn serves(addr: SocketAddr, want: &str) -> bool {
    eventually(WITHIN, || async { get(addr, "/").await.text() == want }).await
}

async fn start_site() -> support::Weir {
    let w = support::weir()
        .file("www/index.html", "one\n")
        .file("www2/index.html", "two\n")
        .start(&site_config("www"))
        .await;
    // Once anything answers, the server runs and so does its watch.
    assert_eq!(get(w.addr("web"), "/").await.text(), "one\n");
    w
}

#[tokio::test]
async fn an_edit_in_place_is_one_reload() {
    let w = start_site().await;
    assert_eq!(generation(w.admin).await, 1);

    w.write_config(&site_config("www2"));
    assert!(
        serves(w.addr("web"), "two\n").await,
        "the edit was not applied"
    );
    assert_eq!(generation(w.admin).await, 2);

    tokio::time::sleep(SETTLE).await;
    assert_eq!(reloads(w.admin, "ok").await, 1, "one save, one reload");
    assert_eq!(reloads(w.admin, "failed").await, 0);
    assert_eq!(generation(w.admin).await, 2);
}

#[tokio::test]
async fn an_editor_rename_is_seen() {
    let w = start_site().await;
    // The temporary name is not watched: nothing happens until the rename.
    std::fs::write(w.path(".weir.toml.swp"), site_config("www2")).unwrap();
    std::fs::rename(w.path(".weir.toml.swp"), w.path("weir.toml")).unwrap();
    assert!(
        serves(w.addr("web"), "two\n").await,
        "the rename was not seen"
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(reloads(w.admin, "ok").await, 1);
}

#[tokio::test]
async fn rewriting_the_same_config_is_not_a_reload() {
    let w = start_site().await;
    w.write_config(&site_config("www"));
    // A comment changes the text but not the config.
    w.write_config(&format!("# a comment\n{}", site_config("www")));
    tokio::time::sleep(SETTLE).await;
    assert_eq!(reloads(w.admin, "ok").await, 0);
    assert_eq!(generation(w.admin).await, 1);

    // And the watch still works afterwards.
    w.write_config(&site_config("www2"));
    assert!(serves(w.addr("web"), "two\n").await);
}

#[tokio::test]
async fn a_save_also_reloaded_by_hand_is_not_reloaded_twice() {
    let w = start_site().await;
    let reload = || async {
        support::send(w.admin, support::request("POST", "/reload", &[]))
            .await
            .status
    };
    w.write_config(&site_config("www2"));
    assert_eq!(reload().await, 200);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(reloads(w.admin, "ok").await, 1, "the watch reloaded again");
    assert_eq!(generation(w.admin).await, 2);

    // An invalid file rejected by hand is not rejected (and counted) again.
    w.write_config(&site_config("nowhere"));
    assert_eq!(reload().await, 400);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(reloads(w.admin, "failed").await, 1, "counted twice");
    assert_eq!(get(w.addr("web"), "/").await.text(), "two\n");
}

/// A weir started in-process on an arbitrary config path.
struct Running {
    web: SocketAddr,
    admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<bool>,
}

impl Running {
    async fn start(file: &Path) -> Running {
        let doc = weir::config::load(file).unwrap_or_else(|e| panic!("invalid config:\n{e}"));
        let server = weir::app::Server::bind(&doc).await.expect("bind");
        let web = server.local_addrs("web")[0];
        let admin = server.admin_addr().expect("admin addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Running {
            web,
            admin,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let clean = tokio::time::timeout(support::STEP, self.task)
            .await
            .expect("stopped in time")
            .expect("server task");
        assert!(clean);
    }
}

#[tokio::test]
async fn a_kubernetes_configmap_swap_is_seen() {
    // The layout the kubelet makes: the files in a timestamped directory,
    // `..data` pointing at it, and each key a symlink through `..data`.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("www")).unwrap();
    std::fs::write(root.join("www/index.html"), "one\n").unwrap();
    std::fs::create_dir(root.join("www2")).unwrap();
    std::fs::write(root.join("www2/index.html"), "two\n").unwrap();
    let first = "..2026_11_26_00_00_00.0001";
    let second = "..2026_11_26_00_00_00.0002";
    std::fs::create_dir(root.join(first)).unwrap();
    std::fs::write(root.join(first).join("weir.toml"), site_config("www")).unwrap();
    std::os::unix::fs::symlink(first, root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/weir.toml", root.join("weir.toml")).unwrap();

    let weir = Running::start(&root.join("weir.toml")).await;
    assert_eq!(get(weir.web, "/").await.text(), "one\n");

    // The update: a new timestamped directory, a new link swapped over
    // `..data` by rename (atomic), then the old directory removed.
    std::fs::create_dir(root.join(second)).unwrap();
    std::fs::write(root.join(second).join("weir.toml"), site_config("www2")).unwrap();
    std::os::unix::fs::symlink(second, root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join(first)).unwrap();

    assert!(
        serves(weir.web, "two\n").await,
        "the ConfigMap swap was not seen"
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(reloads(weir.admin, "ok").await, 1, "one swap, one reload");
    assert_eq!(reloads(weir.admin, "failed").await, 0);

    // And the next swap too (the watch followed the new directory).
    let third = "..2026_11_26_00_00_00.0003";
    std::fs::create_dir(root.join(third)).unwrap();
    std::fs::write(root.join(third).join("weir.toml"), site_config("www")).unwrap();
    std::os::unix::fs::symlink(third, root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join(second)).unwrap();
    assert!(
        serves(weir.web, "one\n").await,
        "the second swap was not seen"
    );
    weir.stop().await;
}

#[tokio::test]
async fn an_invalid_config_is_rejected_then_a_valid_one_applies() {
    let w = start_site().await;
    // Two problems: an unknown site and a missing root.
    let broken = site_config("nowhere").replace("site = \"www\"", "site = \"wwww\"");
    w.write_config(&broken);
    assert!(
        eventually(WITHIN, || async { reloads(w.admin, "failed").await == 1 }).await,
        "the invalid config was not counted"
    );
    assert_eq!(get(w.addr("web"), "/").await.text(), "one\n");
    assert_eq!(generation(w.admin).await, 1);

    w.write_config(&site_config("www2"));
    assert!(serves(w.addr("web"), "two\n").await);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(reloads(w.admin, "ok").await, 1);
    assert_eq!(reloads(w.admin, "failed").await, 1);
}

#[tokio::test]
async fn a_half_written_file_is_rejected_without_harm() {
    let w = start_site().await;
    let full = site_config("www2");
    // Cut inside a string: certainly not a valid TOML document.
    let cut = full.find("root = \"ww").unwrap() + "root = \"ww".len();
    w.write_config(&full[..cut]);
    assert!(
        eventually(WITHIN, || async { reloads(w.admin, "failed").await == 1 }).await,
        "the truncated config was not counted"
    );
    assert_eq!(get(w.admin, "/healthz").await.status, 200);
    assert_eq!(get(w.addr("web"), "/").await.text(), "one\n");

    // The writer finishes: applied.
    w.write_config(&full);
    assert!(serves(w.addr("web"), "two\n").await);
}

#[tokio::test]
async fn a_changed_headers_file_is_applied() {
    let site = "[[routes]]\npath = \"/\"\nbackends = [{ site = \"www\" }]\n\n\
                [sites.www]\nroot = \"www\"\nheaders_file = \"_headers\"\n";
    let w = support::weir()
        .file("www/index.html", "one\n")
        .file("_headers", "/*\n  X-Version: 1\n")
        .start(&config(site))
        .await;
    let version = || async {
        get(w.addr("web"), "/")
            .await
            .header("x-version")
            .map(str::to_owned)
    };
    assert_eq!(version().await.as_deref(), Some("1"));

    std::fs::write(w.path("_headers"), "/*\n  X-Version: 2\n").unwrap();
    assert!(
        eventually(WITHIN, || async { version().await.as_deref() == Some("2") }).await,
        "the _headers change was not applied"
    );
}

// ---------------------------------------------------------------- certificates

fn connector(cas: &[&CertificateDer<'static>]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        roots.add((*ca).clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(weir::tls::certs::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// The leaf a new handshake is given.
async fn leaf(addr: SocketAddr, connector: &TlsConnector) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio::time::timeout(support::STEP, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake verified");
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test]
async fn a_rotated_certificate_is_used_by_new_handshakes() {
    let old = pki(&[&["localhost"]]);
    let new = pki(&[&["localhost"]]);
    let tls = "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"tls\"\n\
               bind = [\"127.0.0.1:0\"]\n[listeners.tls]\n\
               certs = [{ cert = \"certs/site.pem\", key = \"certs/site-key.pem\" }]\n\n\
               [access_log]\nformat = \"off\"\n\n[[routes]]\npath = \"/\"\n\
               backends = [{ site = \"www\" }]\n\n[sites.www]\nroot = \"www\"\n";
    let w = support::weir()
        .file("www/index.html", "secure\n")
        .file("certs/site.pem", &old.leaves[0].0)
        .file("certs/site-key.pem", &old.leaves[0].1)
        .start(tls)
        .await;
    let client = connector(&[&old.ca, &new.ca]);
    assert_eq!(leaf(w.addr("tls"), &client).await, old.leaves[0].2);

    std::fs::write(w.path("certs/site.pem"), &new.leaves[0].0).unwrap();
    std::fs::write(w.path("certs/site-key.pem"), &new.leaves[0].1).unwrap();
    assert!(
        eventually(WITHIN, || async {
            leaf(w.addr("tls"), &client).await == new.leaves[0].2
        })
        .await,
        "new handshakes still get the old certificate"
    );
    assert!(reloads(w.admin, "ok").await >= 1);
}

// ---------------------------------------------------------------- atomicity

/// `POST /reload` after writing `text`; the reload must be accepted.
async fn reload_to(w: &support::Weir, text: &str) {
    w.write_config(text);
    let reply = support::send(w.admin, support::request("POST", "/reload", &[])).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// A route `/other/` to a site in both configs; `slow` adds the route
/// `/slow/` and its service.
fn with_or_without_slow(slow: Option<SocketAddr>) -> String {
    let mut text = String::from(
        "[[routes]]\npath = \"/other/\"\nbackends = [{ site = \"www\" }]\n\n[sites.www]\nroot = \"www\"\n",
    );
    if let Some(slow) = slow {
        text.push_str(&format!(
            "\n[[routes]]\npath = \"/slow/\"\nbackends = [{{ service = \"slow\" }}]\n\n\
             [services.slow]\nendpoints = [\"{slow}\"]\n"
        ));
    }
    config(&text)
}

#[tokio::test]
async fn a_request_in_flight_keeps_its_config_and_the_next_one_gets_the_new() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    const BODY: usize = 256 * 1024;
    let slow = support::upstream::Upstream::named("slow")
        .slow(1500)
        .body(vec![b's'; BODY])
        .start()
        .await;
    let w = support::weir()
        .file("www/other/x.txt", "other\n")
        .start(&with_or_without_slow(Some(slow.addr)))
        .await;

    let stream = TcpStream::connect(w.addr("web")).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let get_on_conn = |path: &str| {
        http::Request::get(path)
            .header("host", "localhost")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let in_flight = tokio::spawn(sender.send_request(get_on_conn("/slow/x")));
    assert!(
        eventually(WITHIN, || async { slow.stats.requests() == 1 }).await,
        "the request never reached the slow upstream"
    );

    // The route and its service go while the upstream is still thinking.
    reload_to(&w, &with_or_without_slow(None)).await;
    assert!(
        !in_flight.is_finished(),
        "the upstream answered before the reload: nothing was tested"
    );
    assert!(generation(w.admin).await >= 2);

    let response = tokio::time::timeout(support::STEP, in_flight)
        .await
        .expect("the request in flight finished in time")
        .unwrap()
        .expect("the request in flight was answered");
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(support::STEP, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("the whole body arrived")
        .to_bytes();
    assert_eq!(body.len(), BODY);
    assert!(body.iter().all(|&b| b == b's'));

    // The same connection, the next request: the new config, no route.
    tokio::time::timeout(support::STEP, sender.ready())
        .await
        .expect("the connection is ready in time")
        .expect("the connection stays open after the reload");
    let next = tokio::time::timeout(support::STEP, sender.send_request(get_on_conn("/slow/x")))
        .await
        .expect("answered in time")
        .expect("answered on the same connection");
    assert_eq!(next.status(), 404);
    assert_eq!(
        next.headers()
            .get("weir-error")
            .and_then(|v| v.to_str().ok()),
        Some("no-route")
    );
    let _ = next.into_body().collect().await;
    let other = sender
        .send_request(get_on_conn("/other/x.txt"))
        .await
        .expect("answered on the same connection");
    assert_eq!(other.status(), 200);
    assert_eq!(
        &other.into_body().collect().await.unwrap().to_bytes()[..],
        b"other\n"
    );
    assert_eq!(slow.stats.requests(), 1);
    assert!(!conn.is_finished(), "the connection was closed");
}

/// Two configs that both have `/api/` (a service) and `/` (a site), and
/// differ elsewhere, so each reload builds a new snapshot.
fn alternate(api: SocketAddr, flip: bool) -> String {
    let (extra, timeout) = if flip { ("/a/", "5s") } else { ("/b/", "7s") };
    config(&format!(
        "[[routes]]\npath = \"/api/\"\ntimeout = \"{timeout}\"\nbackends = [{{ service = \"api\" }}]\n\n\
         [[routes]]\npath = \"/\"\nbackends = [{{ site = \"www\" }}]\n\n\
         [[routes]]\npath = \"{extra}\"\nbackends = [{{ site = \"www\" }}]\n\n\
         [sites.www]\nroot = \"www\"\n\n[services.api]\nendpoints = [\"{api}\"]\n"
    ))
}

// Several threads, so that requests are served while a reload is underway.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_reloads_under_load_fail_no_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;

    const RELOADS: u64 = 100;
    let api = support::upstream::Upstream::named("api").start().await;
    let w = support::weir()
        .file("www/index.html", "home\n")
        .start(&alternate(api.addr, false))
        .await;
    let web = w.addr("web");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for task in 0..4 {
        let (stop, served) = (stop.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            // Half the clients ask the service, half the site, each on one
            // keep-alive connection: a reload must not close it either.
            let (path, want) = if task % 2 == 0 {
                ("/api/x", None)
            } else {
                ("/", Some("home\n"))
            };
            let stream = TcpStream::connect(web).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let request = http::Request::get(path)
                    .header("host", "localhost")
                    .body(Empty::<bytes::Bytes>::new())
                    .unwrap();
                let outcome = tokio::time::timeout(support::STEP, async {
                    sender.ready().await?;
                    let response = sender.send_request(request).await?;
                    let status = response.status();
                    let body = response.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>((status, body))
                })
                .await;
                match outcome {
                    Ok(Ok((status, body))) => {
                        let ok = status == 200
                            && match want {
                                Some(want) => body == want.as_bytes(),
                                None => body.starts_with(b"{\"upstream\":\"api\""),
                            };
                        if ok {
                            served.fetch_add(1, Ordering::SeqCst);
                        } else {
                            failures.push(format!("{path}: {status} {body:?}"));
                        }
                    }
                    Ok(Err(e)) => {
                        failures.push(format!("{path}: {e}"));
                        break;
                    }
                    Err(_) => {
                        failures.push(format!("{path}: no answer within {:?}", support::STEP));
                        break;
                    }
                }
            }
            failures
        }));
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut reloaded = 0;
    while reloaded < RELOADS && tokio::time::Instant::now() < deadline {
        reloaded += 1;
        reload_to(&w, &alternate(api.addr, reloaded % 2 == 1)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed, the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(
        reloaded, RELOADS,
        "only {reloaded} reloads within the time limit"
    );
    assert!(generation(w.admin).await > RELOADS);
    let served = served.load(Ordering::SeqCst);
    assert!(
        served >= 100,
        "only {served} requests were served meanwhile"
    );
}
