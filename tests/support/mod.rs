//! Test support: start weir in-process from a config string on ephemeral
//! loopback ports, and talk to it with a real hyper client or a raw socket.
//! Every wait is bounded.

#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use weir::app::{App, Server};

pub mod dns;
pub mod pki;
pub mod toggle;
pub mod upstream;

/// The longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(10);

/// A running weir with its config directory.
pub struct Weir {
    pub dir: tempfile::TempDir,
    addrs: HashMap<String, Vec<SocketAddr>>,
    pub admin: SocketAddr,
    pub app: std::sync::Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<bool>>,
}

/// Files to lay out next to the config before it is loaded.
#[derive(Default)]
pub struct Builder {
    files: Vec<(PathBuf, Vec<u8>)>,
    dirs: Vec<PathBuf>,
}

impl Builder {
    pub fn file(mut self, path: &str, contents: impl AsRef<[u8]>) -> Self {
        self.files.push((path.into(), contents.as_ref().to_vec()));
        self
    }

    pub fn dir(mut self, path: &str) -> Self {
        self.dirs.push(path.into());
        self
    }

    /// Writes the files and `weir.toml`, then starts weir on it.
    pub async fn start(self, config: &str) -> Weir {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in &self.dirs {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        for (path, contents) in &self.files {
            let path = dir.path().join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(path, contents).expect("write file");
        }
        let file = dir.path().join("weir.toml");
        std::fs::write(&file, config).expect("write config");
        start_file(dir, &file).await
    }
}

pub fn weir() -> Builder {
    Builder::default()
}

async fn start_file(dir: tempfile::TempDir, file: &Path) -> Weir {
    let doc = match weir::config::load(file) {
        Ok(doc) => doc,
        Err(e) => panic!("test config is invalid:\n{e}"),
    };
    let server = Server::bind(&doc).await.expect("bind");
    let addrs = doc
        .config
        .listeners
        .iter()
        .map(|l| (l.name.clone(), server.local_addrs(&l.name)))
        .collect();
    let admin = server.admin_addr().expect("admin addr");
    let app = server.app().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Weir {
        dir,
        addrs,
        admin,
        app,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Weir {
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.addrs
            .get(listener)
            .and_then(|a| a.first().copied())
            .unwrap_or_else(|| panic!("no listener {listener}"))
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Rewrites `weir.toml` (for reload tests).
    pub fn write_config(&self, config: &str) {
        std::fs::write(self.dir.path().join("weir.toml"), config).expect("write config");
    }

    /// Starts the drain and waits for the server to finish; returns
    /// whether everything finished within the grace.
    pub async fn stop(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("server stopped in time")
            .expect("server task")
    }

    /// Begins the drain without waiting.
    pub fn begin_stop(&mut self) -> tokio::task::JoinHandle<bool> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("running")
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response with its body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(addr, request("GET", path, &[])).await
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path);
    let has_host = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"));
    if !has_host {
        builder = builder.header("host", "localhost");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Empty::new()).expect("request")
}

pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> Reply
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let response = sender.send_request(req).await.expect("response");
        collect(response).await
    })
    .await
    .expect("request finished in time")
}

/// One HTTP/2 (prior knowledge) request on a fresh connection.
pub async fn send_h2<B>(addr: SocketAddr, req: Request<B>) -> Reply
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::time::timeout(STEP, async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        let response = sender.send_request(req).await.expect("response");
        collect(response).await
    })
    .await
    .expect("request finished in time")
}

async fn collect(response: Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// An h2c (prior knowledge) connection to `addr`: its sender, and the
/// task driving it, which ends when the connection closes.
pub async fn h2c(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    (sender, tokio::spawn(conn))
}

/// Sends `GET /` on `stream` and returns the start of the answer (one read).
pub async fn first_answer(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(STEP, stream.read(&mut buf))
        .await
        .expect("answer within STEP")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Writes `bytes` on a raw connection and reads until the server closes it
/// (or `wait` passes). Returns what was read and whether it was closed.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (String, bool) {
    let (out, closed) = raw_bytes(addr, bytes, wait).await;
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Writes `bytes` on a new connection and reads until the server closes
/// it or `wait` passes (then `false`), keeping binary bodies intact.
pub async fn raw_bytes(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    read_bytes_until_closed(&mut stream, wait).await
}

pub async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let (out, closed) = read_bytes_until_closed(stream, wait).await;
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

async fn read_bytes_until_closed(stream: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// Polls `check` every 20 ms until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minimal config: one plain listener `web`, admin, and `extra` appended.
pub fn config(extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\n\n[access_log]\nformat = \"off\"\n\n{extra}"
    )
}

/// A config whose one route sends every path to the service `api` at
/// `endpoint`, with `extra` lines in the service's table.
pub fn one_service(endpoint: impl std::fmt::Display, extra: &str) -> String {
    config(&format!(
        "[[routes]]\npath = \"/\"\nbackends = [{{ service = \"api\" }}]\n\n\
         [services.api]\nendpoints = [\"{endpoint}\"]\n{extra}\n"
    ))
}
