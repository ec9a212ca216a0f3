//! Real upstream servers for proxy tests, each on 127.0.0.1:0 and stopped
//! (listener and every connection) when dropped.
//!
//! - `Upstream::echo()` / `Upstream::named("a")`: a hyper HTTP/1.1 server
//!   answering 200 with a JSON body naming the method, the path and query,
//!   every request header and the number of body bytes it read, plus
//!   `x-upstream: NAME`. Builder methods change the behaviour: `slow`,
//!   `status`, `header`, `body`, `big_body`, `reset`, `dies_mid_body`,
//!   `closes_every`, `closes_on_reuse`.
//! - `Upstream::grpc()`: h2c (prior knowledge) server echoing the request's
//!   data frames as they arrive, ending with `grpc-status: 0` trailers.
//! - `Upstream::websocket()`: HTTP/1.1 `Upgrade: websocket` answered with
//!   101, after which bytes are echoed back until the client closes.
//!
//! - `silent()`: reads one request and never answers; says when the
//!   request came and when the connection was closed.
//! - `Scripted::start(response)`: hand-written HTTP/1.1 that reads each
//!   request whole (a chunked body to the end of its trailer section),
//!   keeps its bytes as they came, and answers `response` to each.
//!
//! `stats` counts accepted connections, requests, request body bytes and the
//! paths seen.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// What an upstream saw.
#[derive(Debug, Default)]
pub struct Stats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    body_bytes: AtomicU64,
    /// Upgraded (WebSocket) sessions that ended.
    sessions_ended: AtomicUsize,
    paths: Mutex<Vec<String>>,
}

impl Stats {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::SeqCst)
    }

    pub fn sessions_ended(&self) -> usize {
        self.sessions_ended.load(Ordering::SeqCst)
    }

    /// Path and query of every request, in arrival order.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    /// Records a request; returns how many there have been, this one included.
    fn request(&self, path: &str) -> usize {
        self.paths.lock().unwrap().push(path.to_owned());
        self.requests.fetch_add(1, Ordering::SeqCst) + 1
    }
}

#[derive(Debug, Clone)]
enum Mode {
    /// hyper HTTP/1.1; echo (or the fixed/big body).
    Hyper,
    /// Accepts, reads what comes, then resets the connection (RST).
    Reset,
    /// Head with `Content-Length: 1000`, 10 body bytes, close.
    DiesMidBody,
    /// Hand-written keep-alive HTTP/1.1: after `n` responses on a
    /// connection it is closed abruptly (no `Connection: close`), either at
    /// once or when the next request arrives on it (`on_reuse`).
    ClosesEvery {
        n: usize,
        on_reuse: bool,
    },
    Grpc,
    WebSocket,
}

#[derive(Debug, Clone)]
enum Payload {
    Echo,
    Fixed(Bytes),
    Big(u64),
}

/// A configured, not yet started upstream.
#[derive(Debug, Clone)]
pub struct Spec {
    name: String,
    delay: Option<Duration>,
    status: StatusCode,
    headers: Vec<(String, String)>,
    payload: Payload,
    mode: Mode,
    /// Every n-th request answers 500 instead.
    fail_every: Option<usize>,
}

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub stats: Arc<Stats>,
    _stop: watch::Sender<()>,
}

impl Upstream {
    pub fn echo() -> Spec {
        Self::named("echo")
    }

    pub fn named(name: &str) -> Spec {
        Spec {
            name: name.to_owned(),
            delay: None,
            status: StatusCode::OK,
            headers: Vec::new(),
            payload: Payload::Echo,
            mode: Mode::Hyper,
            fail_every: None,
        }
    }

    pub async fn grpc() -> Upstream {
        Spec {
            mode: Mode::Grpc,
            ..Self::named("grpc")
        }
        .start()
        .await
    }

    pub async fn websocket() -> Upstream {
        Spec {
            mode: Mode::WebSocket,
            ..Self::named("ws")
        }
        .start()
        .await
    }

    /// `127.0.0.1:PORT` for a config's `endpoints`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }
}

impl Spec {
    /// Sleeps this long before sending the response head.
    pub fn slow(mut self, ms: u64) -> Self {
        self.delay = Some(Duration::from_millis(ms));
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).expect("status");
        self
    }

    /// An extra response header (may repeat).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers this body instead of the echo.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.payload = Payload::Fixed(body.into());
        self
    }

    /// Answers `len` bytes (`Content-Length` set), streamed in 64 KiB chunks.
    pub fn big_body(mut self, len: u64) -> Self {
        self.payload = Payload::Big(len);
        self
    }

    pub fn reset(mut self) -> Self {
        self.mode = Mode::Reset;
        self
    }

    /// Answers every `n`-th request (counted over all connections) with 500.
    pub fn fails_every(mut self, n: usize) -> Self {
        self.fail_every = Some(n.max(1));
        self
    }

    pub fn dies_mid_body(mut self) -> Self {
        self.mode = Mode::DiesMidBody;
        self
    }

    /// Serves `n` requests on a connection, then closes it right after the
    /// n-th response without having said so.
    pub fn closes_every(mut self, n: usize) -> Self {
        self.mode = Mode::ClosesEvery { n, on_reuse: false };
        self
    }

    /// Serves `n` requests on a connection, keeps it open, and closes it
    /// (unanswered, with a reset) the moment the next request arrives on it:
    /// the client's pooled connection dies exactly when it is reused.
    pub fn closes_on_reuse(mut self, n: usize) -> Self {
        self.mode = Mode::ClosesEvery { n, on_reuse: true };
        self
    }

    pub async fn start(self) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let stats = Arc::new(Stats::default());
        let (stop, stopped) = watch::channel(());
        let spec = Arc::new(self);
        let name = spec.name.clone();
        {
            let stats = stats.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let mut stop_accepting = stopped.clone();
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                        _ = stop_accepting.changed() => return,
                    };
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_nodelay(true);
                    let spec = spec.clone();
                    let stats = stats.clone();
                    let mut stopped = stopped.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = serve(stream, spec, stats) => {}
                            _ = stopped.changed() => {}
                        }
                    });
                }
            });
        }
        Upstream {
            addr,
            name,
            stats,
            _stop: stop,
        }
    }
}

type RespBody = BoxBody<Bytes, std::io::Error>;

async fn serve(stream: TcpStream, spec: Arc<Spec>, stats: Arc<Stats>) {
    match spec.mode.clone() {
        Mode::Hyper => {
            let service = service_fn(move |req| {
                let spec = spec.clone();
                let stats = stats.clone();
                async move { Ok::<_, Infallible>(answer(req, &spec, &stats).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Mode::Reset => {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            // Let the request arrive, then reset without a word.
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
            stats.requests.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        Mode::DiesMidBody => {
            let mut stream = stream;
            let mut buf = Vec::new();
            if read_head(&mut stream, &mut buf).await.is_none() {
                return;
            }
            stats.requests.fetch_add(1, Ordering::SeqCst);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/octet-stream\r\n\r\n0123456789")
                .await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(stream);
        }
        Mode::ClosesEvery { n, on_reuse } => closes_every(stream, &spec, &stats, n, on_reuse).await,
        Mode::Grpc => {
            let service = service_fn(move |req: Request<Incoming>| {
                let stats = stats.clone();
                async move {
                    stats.request(&path_and_query(&req));
                    let body = EchoFrames {
                        inner: req.into_body(),
                        done: false,
                    };
                    let response = Response::builder()
                        .status(200)
                        .header(header::CONTENT_TYPE, "application/grpc")
                        .body(body)
                        .expect("grpc response");
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Mode::WebSocket => {
            let service = service_fn(move |mut req: Request<Incoming>| {
                let stats = stats.clone();
                async move {
                    stats.request(&path_and_query(&req));
                    let wants = req
                        .headers()
                        .get(header::UPGRADE)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
                    if !wants {
                        return Ok::<_, Infallible>(full(
                            StatusCode::BAD_REQUEST,
                            "upgrade required",
                        ));
                    }
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(upgraded) = upgrade.await {
                            let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                            let _ = w.shutdown().await;
                        }
                        stats.sessions_ended.fetch_add(1, Ordering::SeqCst);
                    });
                    let response = Response::builder()
                        .status(StatusCode::SWITCHING_PROTOCOLS)
                        .header(header::UPGRADE, "websocket")
                        .header(header::CONNECTION, "upgrade")
                        // RFC 6455's example answer to the example key.
                        .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                        .body(empty())
                        .expect("101");
                    Ok(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        }
    }
}

fn path_and_query<B>(req: &Request<B>) -> String {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned())
}

fn empty() -> RespBody {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<RespBody> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// The hyper-mode answer: read (and count) the whole body, wait, respond.
async fn answer(req: Request<Incoming>, spec: &Spec, stats: &Stats) -> Response<RespBody> {
    let path = path_and_query(&req);
    let nth = stats.request(&path);
    let spec = &Spec {
        status: match spec.fail_every {
            Some(n) if nth.is_multiple_of(n) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => spec.status,
        },
        ..spec.clone()
    };
    let (parts, mut body) = req.into_parts();
    let mut read = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    read += data.len() as u64;
                    stats
                        .body_bytes
                        .fetch_add(data.len() as u64, Ordering::SeqCst);
                }
            }
            Err(_) => break,
        }
    }
    if let Some(delay) = spec.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = match &spec.payload {
        Payload::Echo => {
            let headers: Vec<serde_json::Value> = parts
                .headers
                .iter()
                .map(|(n, v)| {
                    serde_json::json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())])
                })
                .collect();
            let echo = serde_json::json!({
                "upstream": spec.name,
                "method": parts.method.as_str(),
                "uri": path,
                "version": format!("{:?}", parts.version),
                "headers": headers,
                "body_bytes": read,
            });
            let mut r = full(spec.status, echo.to_string());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Payload::Fixed(bytes) => full(spec.status, bytes.clone()),
        Payload::Big(len) => {
            let mut r = Response::new(
                Repeat {
                    remaining: *len,
                    chunk: Bytes::from(vec![b'x'; 64 * 1024]),
                }
                .boxed(),
            );
            *r.status_mut() = spec.status;
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(*len));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            r
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        "x-upstream",
        HeaderValue::from_str(&spec.name).expect("upstream name"),
    );
    for (name, value) in &spec.headers {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    response
}

/// Reads one request head into `buf` (which may already hold bytes);
/// returns its length, or `None` when the connection ended first.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

async fn closes_every(mut stream: TcpStream, spec: &Spec, stats: &Stats, n: usize, on_reuse: bool) {
    let mut buf = Vec::new();
    let mut served = 0;
    loop {
        let Some(head_len) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        if on_reuse && served == n {
            // The request arrived on a connection we are done with: reset.
            let _ = stream.set_zero_linger();
            return;
        }
        let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        let content_length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + content_length {
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        buf.drain(..head_len + content_length);
        stats.request(&path);
        stats
            .body_bytes
            .fetch_add(content_length as u64, Ordering::SeqCst);
        let body = format!("{{\"upstream\":\"{}\",\"uri\":\"{}\"}}", spec.name, path);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-upstream: {}\r\n\r\n{}",
            body.len(),
            spec.name,
            body
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        served += 1;
        if !on_reuse && served == n {
            return;
        }
    }
}

/// `remaining` bytes of `chunk` repeated.
struct Repeat {
    remaining: u64,
    chunk: Bytes,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// The request's data frames sent straight back, then gRPC trailers.
struct EchoFrames {
    inner: Incoming,
    done: bool,
}

impl Body for EchoFrames {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) if frame.is_data() => return Poll::Ready(Some(Ok(frame))),
                Some(Ok(_trailers)) => continue,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    self.done = true;
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    trailers.insert("grpc-message", HeaderValue::from_static("ok"));
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
            }
        }
    }
}

/// A request body fed from a channel: each `Bytes` sent is one data frame;
/// dropping the sender ends the body.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

pub fn channel_body(capacity: usize) -> (mpsc::Sender<Bytes>, ChannelBody) {
    let (tx, rx) = mpsc::channel(capacity);
    (tx, ChannelBody { rx })
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// An upstream that reads one request, never answers, and says when the
/// request reached it and when weir closed the connection.
pub async fn silent() -> (String, oneshot::Receiver<()>, oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let (got_tx, got) = oneshot::channel();
    let (closed_tx, closed) = oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        let mut got_tx = Some(got_tx);
        let mut seen = Vec::new();
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n")
                        && let Some(tx) = got_tx.take()
                    {
                        let _ = tx.send(());
                    }
                }
            }
        }
        let _ = closed_tx.send(());
    });
    (endpoint, got, closed)
}

/// An address nothing listens on: bound, then closed.
pub fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr.to_string()
}

/// A hand-written HTTP/1.1 upstream: every request is read whole (its
/// body framed by Content-Length or chunked, trailer section included)
/// and kept as its raw bytes, and answered with the same raw `response`
/// on a kept-alive connection. Stops when dropped.
pub struct Scripted {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    connections: Arc<AtomicUsize>,
    _stop: watch::Sender<()>,
}

impl Scripted {
    pub async fn start(response: impl Into<Bytes>) -> Scripted {
        let response: Bytes = response.into();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = watch::channel(());
        {
            let requests = requests.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let mut stream = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => stream,
                            Err(_) => continue,
                        },
                        _ = stopped.changed() => return,
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let requests = requests.clone();
                    let response = response.clone();
                    let mut stopped = stopped.clone();
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        loop {
                            while let Some(len) = whole_request(&buf) {
                                requests.lock().unwrap().push(buf.drain(..len).collect());
                                if stream.write_all(&response).await.is_err() {
                                    return;
                                }
                            }
                            let mut chunk = [0u8; 8192];
                            tokio::select! {
                                read = stream.read(&mut chunk) => match read {
                                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                                    _ => return,
                                },
                                _ = stopped.changed() => return,
                            }
                        }
                    });
                }
            });
        }
        Scripted {
            addr,
            requests,
            connections,
            _stop: stop,
        }
    }

    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Every request read so far, as it came.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// The length of the request at the start of `buf` when it is all there:
/// head, and body as Content-Length or the chunked coding frames it.
fn whole_request(buf: &[u8]) -> Option<usize> {
    let find = |from: usize, what: &[u8]| {
        buf.get(from..)?
            .windows(what.len())
            .position(|w| w == what)
            .map(|i| from + i)
    };
    let head = find(0, b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]).to_ascii_lowercase();
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    if field("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        let mut at = head;
        loop {
            let line_end = find(at, b"\r\n")?;
            let line = String::from_utf8_lossy(&buf[at..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // The trailer section, to its empty line.
                if buf.get(at..at + 2)? == b"\r\n" {
                    return Some(at + 2);
                }
                return Some(find(at, b"\r\n\r\n")? + 4);
            }
            at += size + 2;
            if buf.len() < at {
                return None;
            }
        }
    }
    let length: usize = field("content-length").map_or(0, |v| v.parse().unwrap_or(0));
    (buf.len() >= head + length).then_some(head + length)
}
