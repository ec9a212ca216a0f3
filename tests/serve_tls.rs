//! `weir serve DIR --tls` (SPEC "CLI"): with no certificate configured, weir makes a
//! self-signed certificate for localhost at start and prints its SHA-256 fingerprint
//! in its one start-up line, beside the URL.
//!
//! Clients here never skip verification: they pin the printed fingerprint. The
//! verifier accepts the server's certificate only when its SHA-256 (computed here,
//! independently of weir) equals the pin and it names the server, and it checks the
//! handshake signatures with the provider's algorithms, so a server without the
//! certificate's private key cannot pass either.
//!
//! Every test drives the built binary on ephemeral ports; every wait is bounded and
//! a started process is killed when its guard drops.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long anything may take to start, answer or exit before a test fails.
const PATIENCE: Duration = Duration::from_secs(15);

const INDEX: &str = "<!doctype html><title>pinned</title>\n";

// ---------------------------------------------------------------------------
// A running `weir serve --tls`: stdout lines through a channel, killed on drop.
// ---------------------------------------------------------------------------

struct Weir {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    seen: Vec<String>,
    /// The fingerprint weir printed, as printed.
    fingerprint: String,
    /// The TLS listener's address.
    addr: SocketAddr,
}

impl Weir {
    /// Starts `weir serve DIR --tls --listen 127.0.0.1:0` and reads its announcement.
    /// `scratch` is its TMPDIR and working directory: a fresh empty directory, where
    /// any file weir wrote (it must write none) would be found.
    fn start(dir: &Path, scratch: &Path) -> Weir {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.env_remove("WEIR_LOG")
            .env("TMPDIR", scratch)
            .current_dir(scratch)
            .arg("serve")
            .arg(dir)
            .args(["--tls", "--listen", "127.0.0.1:0"]);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let collected = Arc::new(Mutex::new(String::new()));
        let sink = collected.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut weir = Weir {
            child,
            lines,
            stderr: collected,
            seen: Vec::new(),
            fingerprint: String::new(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        weir.read_announcement();
        weir
    }

    /// One line (stdout is a pipe, so JSON): the https URL with the fingerprint folded in,
    /// `{"event":"listening","listeners":[{"urls":["https://..."]}],"fingerprint":..}`.
    fn read_announcement(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        let Some(first) = self.next_line(deadline) else {
            self.fail("the start-up line")
        };
        let Ok(line) = serde_json::from_str::<serde_json::Value>(&first) else {
            self.fail("the start-up line as JSON")
        };
        self.fingerprint = line["fingerprint"]
            .as_str()
            .unwrap_or_else(|| self.fail("the fingerprint in the start-up line"))
            .to_owned();
        let url = line["listeners"][0]["urls"][0]
            .as_str()
            .and_then(|u| u.strip_prefix("https://"))
            .unwrap_or_else(|| self.fail("an https URL in the start-up line"));
        self.addr = url.trim_end_matches('/').parse().expect("listener address");
    }

    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(wait).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "weir did not print {what} within {PATIENCE:?}\nstdout:\n{}\nstderr:\n{}",
            self.seen.join("\n"),
            self.stderr()
        )
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A site directory with `index.html`, and an empty one for weir's TMPDIR and
/// working directory.
fn site() -> (tempfile::TempDir, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("index.html"), INDEX).expect("write index.html");
    (dir, tempfile::tempdir().expect("tempdir"))
}

// ---------------------------------------------------------------------------
// Certificate pinning: the only trust anchor is the printed fingerprint.
// ---------------------------------------------------------------------------

/// SHA-256 of `der` as `AB:CD:...`, computed here, not by weir.
fn sha256_pairs(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha256_pairs(end_entity) != self.fingerprint {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn pinned(fingerprint: &str, alpn: &[&[u8]]) -> TlsConnector {
    let provider = weir::tls::certs::provider();
    let verifier = Arc::new(Pinned {
        fingerprint: fingerprint.to_owned(),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(PATIENCE, TcpStream::connect(addr))
        .await
        .expect("connect in time")?;
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
}

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(path)
        .header(http::header::HOST, "localhost")
        // A browser navigation: the SPA fallback answers these with index.html.
        .header(http::header::ACCEPT, "text/html")
        .body(Empty::new())
        .unwrap()
}

async fn body_text(response: http::Response<hyper::body::Incoming>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = tokio::time::timeout(PATIENCE, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// GET `paths` over HTTP/1.1 on one connection.
async fn get_h1(stream: TlsStream<TcpStream>, paths: &[&str]) -> Vec<(u16, String)> {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http/1.1 handshake");
    tokio::spawn(conn);
    let mut out = Vec::new();
    for path in paths {
        let response = tokio::time::timeout(PATIENCE, send.send_request(get(path)))
            .await
            .expect("response in time")
            .expect("response");
        assert_eq!(response.version(), http::Version::HTTP_11);
        out.push(body_text(response).await);
    }
    out
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pinned_client_gets_the_site_over_http11_and_h2() {
    let (site, scratch) = site();
    let weir = Weir::start(site.path(), scratch.path());

    let pairs: Vec<&str> = weir.fingerprint.split(':').collect();
    assert_eq!(pairs.len(), 32, "fingerprint {:?}", weir.fingerprint);
    assert!(
        pairs
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| matches!(c, '0'..='9' | 'A'..='F'))),
        "fingerprint {:?} is not uppercase hex pairs",
        weir.fingerprint
    );

    // HTTP/1.1: the index, and the SPA fallback for a client-side route.
    let stream = connect(weir.addr, &pinned(&weir.fingerprint, &[b"http/1.1"]))
        .await
        .expect("handshake with the pinned certificate");
    let (_, conn) = stream.get_ref();
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let served = conn.peer_certificates().expect("a certificate")[0].clone();
    assert_eq!(sha256_pairs(&served), weir.fingerprint);
    let responses = get_h1(stream, &["/", "/app/settings"]).await;
    for (status, body) in responses {
        assert_eq!(status, 200);
        assert_eq!(body, INDEX);
    }

    // h2 is offered and chosen when the client prefers it.
    let stream = connect(weir.addr, &pinned(&weir.fingerprint, &[b"h2", b"http/1.1"]))
        .await
        .expect("handshake with the pinned certificate");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let response = tokio::time::timeout(PATIENCE, send.send_request(get("https://localhost/")))
        .await
        .expect("h2 response in time")
        .expect("h2 response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(body_text(response).await, (200, INDEX.to_owned()));

    // Key material never reaches the terminal.
    let printed = format!("{}\n{}", weir.seen.join("\n"), weir.stderr());
    assert!(!printed.contains("PRIVATE KEY"), "{printed}");
}

#[tokio::test]
async fn a_client_pinned_to_another_fingerprint_is_refused() {
    let (site, scratch) = site();
    let weir = Weir::start(site.path(), scratch.path());

    // The printed fingerprint with its last pair changed.
    let (head, last) = weir.fingerprint.rsplit_once(':').unwrap();
    let other = format!(
        "{head}:{:02X}",
        u8::from_str_radix(last, 16).unwrap() ^ 0x01
    );
    let err = connect(weir.addr, &pinned(&other, &[b"http/1.1"]))
        .await
        .expect_err("a different pin must fail the handshake");
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a TLS error: {err}"));
    assert_eq!(
        *tls,
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    );

    // The refusal was the client's; the right pin still gets through.
    let stream = connect(weir.addr, &pinned(&weir.fingerprint, &[b"http/1.1"]))
        .await
        .expect("handshake with the right pin");
    assert_eq!(get_h1(stream, &["/"]).await, vec![(200, INDEX.to_owned())]);
}

#[tokio::test]
async fn every_run_has_a_fresh_certificate() {
    let (site, scratch) = site();
    let first = Weir::start(site.path(), scratch.path());
    let second = Weir::start(site.path(), scratch.path());
    assert_ne!(first.fingerprint, second.fingerprint);

    // Each serves its own certificate, not the other's.
    for (weir, other) in [(&first, &second), (&second, &first)] {
        let err = connect(weir.addr, &pinned(&other.fingerprint, &[b"http/1.1"])).await;
        assert!(err.is_err(), "{} accepted the other run's pin", weir.addr);
        connect(weir.addr, &pinned(&weir.fingerprint, &[b"http/1.1"]))
            .await
            .expect("handshake with its own pin");
    }
}

/// Everything under `dir`, as paths relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() {
                todo.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn the_certificate_lives_only_in_memory() {
    let (site, scratch) = site();
    let mut weir = Weir::start(site.path(), scratch.path());

    // HTTPS works with the certificate whose fingerprint was printed...
    let stream = connect(weir.addr, &pinned(&weir.fingerprint, &[b"http/1.1"]))
        .await
        .expect("handshake with the pinned certificate");
    let served = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .clone();
    assert_eq!(sha256_pairs(&served), weir.fingerprint);
    assert_eq!(get_h1(stream, &["/"]).await, vec![(200, INDEX.to_owned())]);

    // ...and no file holds it: not in TMPDIR, the working directory or the site.
    assert_eq!(tree(scratch.path()), Vec::<String>::new(), "TMPDIR and cwd");
    assert_eq!(tree(site.path()), vec!["index.html".to_owned()], "the site");

    // Nor after a kill that leaves weir no chance to clean up.
    weir.child.kill().expect("SIGKILL");
    weir.child.wait().expect("wait");
    assert_eq!(tree(scratch.path()), Vec::<String>::new(), "after SIGKILL");
}
