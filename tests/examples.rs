//! The example configs in `config/` keep working: every `.toml`, `.yaml` and `.yml` file
//! there passes `weir check` (the built binary), the static-host example serves what its
//! comments promise, and the SPEC's example runs.
//!
//! The directory is walked, so a new example is covered without touching this file. Most
//! examples are self-contained and are checked where they are. The few that need files a
//! developer makes first (a certificate from `certs/gen-dev-certs.sh`, the SPEC's `dist/`)
//! are named in `NEEDS_SETUP` and checked in a scratch copy of the repository laid out as
//! their comments say. `config/k8s/` holds Kubernetes manifests, not weir configs: see
//! tests/k8s.rs.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Examples that need files made before they run, and what they need.
const NEEDS_SETUP: &[(&str, &str)] = &[
    ("weir.toml", "certs/site.pem from certs/gen-dev-certs.sh"),
    (
        "container.toml",
        "certs/ beside it, as the Docker image lays it out",
    ),
    (
        "spec-example.toml",
        "certs/ and dist/ beside it (the SPEC's example verbatim)",
    ),
];

/// The examples this repository promises (README, issue #9).
const PROMISED: &[&str] = &[
    "weir.toml",
    "sidecar.toml",
    "static-pwa.toml",
    "multi-region.yaml",
    "canary-rollout.toml",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The config files directly in `dir`, sorted.
fn configs_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("toml" | "yaml" | "yml")
            )
        })
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// `weir check -c FILE`, bounded by 30 s: (exit code, stdout + stderr).
fn weir_check(file: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("check")
        .arg("-c")
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir check");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "weir check -c {} did not finish within 30 s",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("weir check output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn promised_examples_exist() {
    let names: Vec<String> = configs_in(&repo().join("config"))
        .iter()
        .map(|p| file_name(p).to_owned())
        .collect();
    for promised in PROMISED {
        assert!(
            names.iter().any(|n| n == promised),
            "config/{promised} is missing; config/ has {names:?}"
        );
    }
    for (name, _) in NEEDS_SETUP {
        assert!(
            names.iter().any(|n| n == name),
            "NEEDS_SETUP names config/{name}, which no longer exists: update the list"
        );
    }
}

/// Every self-contained example passes `weir check` right where it is in the checkout.
#[test]
fn every_example_passes_weir_check_in_place() {
    let mut checked = Vec::new();
    let mut failed = Vec::new();
    for file in configs_in(&repo().join("config")) {
        if NEEDS_SETUP
            .iter()
            .any(|(name, _)| *name == file_name(&file))
        {
            continue;
        }
        let (code, output) = weir_check(&file);
        if code != Some(0) {
            failed.push(format!("{} (exit {code:?}):\n{output}", file.display()));
        }
        checked.push(file_name(&file).to_owned());
    }
    assert!(
        failed.is_empty(),
        "examples rejected by `weir check`:\n{}",
        failed.join("\n")
    );
    assert!(
        checked.len() >= PROMISED.len() - 1,
        "only {checked:?} were checked"
    );
}

/// The examples in `NEEDS_SETUP` pass once their files are in place: a copy of `config/`
/// in a scratch repository with a development certificate in `certs/` (for weir.toml's
/// `../certs/`) and in `config/certs/`, and a `config/dist/` site root.
#[test]
fn examples_that_need_setup_pass_weir_check_once_laid_out() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let config = scratch.path().join("config");
    copy_dir(&repo().join("config"), &config);
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    for dir in [scratch.path().join("certs"), config.join("certs")] {
        fs::create_dir_all(&dir).expect("mkdir certs");
        fs::write(dir.join("site.pem"), cert.cert.pem()).expect("write site.pem");
        fs::write(dir.join("site-key.pem"), cert.signing_key.serialize_pem())
            .expect("write site-key.pem");
    }
    fs::create_dir_all(config.join("dist")).expect("mkdir dist");
    fs::write(config.join("dist/index.html"), "<!doctype html>\n").expect("write index");

    let mut failed = Vec::new();
    for (name, needs) in NEEDS_SETUP {
        let (code, output) = weir_check(&config.join(name));
        if code != Some(0) {
            failed.push(format!(
                "config/{name} (needs {needs}), exit {code:?}:\n{output}"
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "examples rejected by `weir check`:\n{}",
        failed.join("\n")
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

/// One GET on a fresh HTTP/1.1 connection, bounded by 10 s.
async fn get(addr: SocketAddr, path: &str, accept: &str) -> http::Response<Bytes> {
    tokio::time::timeout(Duration::from_secs(10), async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let request = http::Request::get(path)
            .header("host", "localhost")
            .header("accept", accept)
            .body(Empty::<Bytes>::new())
            .expect("request");
        let (parts, body) = sender
            .send_request(request)
            .await
            .expect("response")
            .into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        http::Response::from_parts(parts, body)
    })
    .await
    .expect("request finished in time")
}

/// config/static-pwa.toml, with its ports moved to ephemeral loopback ones, serves the app in
/// config/pwa as its comments say: SPA fallback, cross-origin isolation, immutable hashed
/// assets, a no-cache service worker, the header rules.
#[tokio::test]
async fn static_pwa_example_serves_the_app() {
    let file = repo().join("config/static-pwa.toml");
    let text = fs::read_to_string(&file).expect("read config/static-pwa.toml");
    assert!(text.contains("\"0.0.0.0:8080\"") && text.contains("\"127.0.0.1:9901\""));
    let text = text
        .replace("\"0.0.0.0:8080\"", "\"127.0.0.1:0\"")
        .replace("\"127.0.0.1:9901\"", "\"127.0.0.1:0\"")
        .replace("format = \"combined\"", "format = \"off\"");
    let doc = weir::config::load_str(
        &text,
        &file,
        weir::config::Format::Toml,
        repo().join("config"),
    )
    .unwrap_or_else(|e| panic!("static-pwa.toml with loopback ports:\n{e}"));
    let server = weir::app::Server::bind(&doc).await.expect("bind");
    let web = server.local_addrs("web")[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let index = fs::read_to_string(repo().join("config/pwa/index.html")).expect("index.html");
    let deep = get(web, "/settings/profile", "text/html").await;
    assert_eq!(deep.status(), 200);
    assert_eq!(deep.body(), index.as_bytes(), "SPA fallback to index.html");
    let header = |r: &http::Response<Bytes>, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header(&deep, "cross-origin-opener-policy").as_deref(),
        Some("same-origin")
    );
    assert_eq!(
        header(&deep, "cross-origin-embedder-policy").as_deref(),
        Some("require-corp")
    );
    assert_eq!(
        header(&deep, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(
        header(&deep, "permissions-policy").is_some_and(|p| p.contains("camera=()")),
        "the _headers rule applies: {:?}",
        deep.headers()
    );

    let asset = get(web, "/assets/app.3f9a1c2b.js", "*/*").await;
    assert_eq!(asset.status(), 200);
    assert_eq!(
        header(&asset, "cache-control").as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let sw = get(web, "/sw.js", "*/*").await;
    assert_eq!(sw.status(), 200);
    assert_eq!(header(&sw, "cache-control").as_deref(), Some("no-cache"));
    assert_eq!(header(&sw, "service-worker-allowed").as_deref(), Some("/"));
    let manifest = get(web, "/manifest.webmanifest", "*/*").await;
    assert!(
        header(&manifest, "content-type")
            .is_some_and(|t| t.starts_with("application/manifest+json")),
        "{:?}",
        manifest.headers()
    );
    assert_eq!(get(web, "/missing.js", "*/*").await.status(), 404);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("weir stopped in time")
        .expect("server task");
}

/// The SPEC's example config, running in-process: its addresses moved to ephemeral loopback
/// ports, and the files it names (certificate pair, `dist/`) made beside it in `dir`.
struct SpecExample {
    web: SocketAddr,
    tls: SocketAddr,
    admin: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<bool>,
    _dir: tempfile::TempDir,
}

impl SpecExample {
    async fn start() -> SpecExample {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = fs::read_to_string(repo().join("config/spec-example.toml"))
            .expect("read config/spec-example.toml");
        for bind in ["\"0.0.0.0:8080\"", "\"0.0.0.0:8443\"", "\"127.0.0.1:9901\""] {
            assert!(text.contains(bind), "the example no longer binds {bind}");
            text = text.replace(bind, "\"127.0.0.1:0\"");
        }
        let cert = rcgen::generate_simple_self_signed(vec!["app.example.com".into()])
            .expect("certificate");
        fs::create_dir_all(dir.path().join("certs")).expect("mkdir certs");
        fs::write(dir.path().join("certs/site.pem"), cert.cert.pem()).expect("write site.pem");
        fs::write(
            dir.path().join("certs/site-key.pem"),
            cert.signing_key.serialize_pem(),
        )
        .expect("write site-key.pem");
        fs::create_dir_all(dir.path().join("dist")).expect("mkdir dist");
        fs::write(dir.path().join("dist/index.html"), "<!doctype html>\n").expect("write index");
        let file = dir.path().join("spec-example.toml");
        fs::write(&file, &text).expect("write the config");

        let doc = weir::config::load(&file).unwrap_or_else(|e| panic!("spec example:\n{e}"));
        let server = weir::app::Server::bind(&doc).await.expect("bind");
        let web = server.local_addrs("web")[0];
        let tls = server.local_addrs("web-tls")[0];
        let admin = server.admin_addr().expect("admin address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        SpecExample {
            web,
            tls,
            admin,
            stop,
            running,
            _dir: dir,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let clean = tokio::time::timeout(Duration::from_secs(30), self.running)
            .await
            .expect("weir stopped in time")
            .expect("server task");
        assert!(clean, "something was still in flight at the stop");
    }
}

/// The SPEC's example config runs as written once its files exist: its endpoints that
/// don't answer and names that don't resolve are just unhealthy, never a start failure.
#[tokio::test]
async fn spec_example_runs_once_its_files_exist() {
    let weir = SpecExample::start().await;
    assert_eq!(get(weir.admin, "/readyz", "*/*").await.status(), 200);
    let status: serde_json::Value =
        serde_json::from_slice(get(weir.admin, "/status", "*/*").await.body())
            .expect("status JSON");
    let mut services: Vec<&str> = status["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services in {status}"))
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    services.sort_unstable();
    assert_eq!(services, ["api-blue", "api-green"], "{status}");
    let routes = status["routes"].as_array().map_or(0, Vec::len);
    assert_eq!(routes, 2, "{status}");
    weir.stop().await;
}

/// Its plain listener sends everyone to the TLS one, on the port that one is bound to.
#[tokio::test]
async fn spec_example_redirects_to_the_bound_tls_port() {
    let weir = SpecExample::start().await;
    let redirect = get(weir.web, "/any/path?q=1", "text/html").await;
    assert_eq!(redirect.status(), 308);
    assert_eq!(
        redirect.headers()[http::header::LOCATION],
        format!("https://localhost:{}/any/path?q=1", weir.tls.port()).as_str()
    );
    weir.stop().await;
}
