//! HTTP/1.1 on the wire, byte for byte: what weir's HTTP/1 server side must
//! do whatever codec implements it. Every test talks raw bytes over a
//! loopback socket to a weir started in-process, with a static site and/or
//! a proxied route to a real upstream, and parses the answers itself
//! (status line, headers, Content-Length / chunked / close-delimited
//! bodies) so that framing mistakes show. Every read is bounded.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};

use support::upstream::{Scripted, Upstream};
use support::{Weir, config, weir};

/// The longest one network step (a connect, a response) may take.
const T: Duration = Duration::from_secs(5);
/// How long a connection that should end gets to close.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

const A_TXT: &str = "first file\n";
const B_TXT: &str = "second file, a little longer\n";

// ---------------------------------------------------------------- setup

/// A config with `/api/` proxied to `api` (when given) and everything else
/// served from site `www`; `extra` is appended (e.g. a `[limits]` table).
fn site_and_api(api: Option<&str>, extra: &str) -> String {
    let api = match api {
        Some(endpoint) => format!(
            "[[routes]]\npath = \"/api/\"\nbackends = [{{ service = \"api\" }}]\n\n[services.api]\nendpoints = [\"{endpoint}\"]\n\n"
        ),
        None => String::new(),
    };
    config(&format!(
        "{extra}\n\n{api}[[routes]]\npath = \"/\"\nbackends = [{{ site = \"www\" }}]\n\n[sites.www]\nroot = \"www\"\n"
    ))
}

async fn start(api: Option<&str>, extra: &str) -> Weir {
    weir()
        .file("www/index.html", "<!doctype html><p>home</p>\n")
        .file("www/a.txt", A_TXT)
        .file("www/b.txt", B_TXT)
        .start(&site_and_api(api, extra))
        .await
}

// ---------------------------------------------------------------- raw client

/// One response as it came off the wire.
#[derive(Debug)]
struct Resp {
    /// `HTTP/1.1` or `HTTP/1.0`.
    version: String,
    status: u16,
    /// Names lowercased, in order, repeats kept.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The lines of a chunked body's trailer section, as they came.
    trailers: Vec<String>,
    /// The body came with `Transfer-Encoding: chunked`.
    chunked: bool,
    /// The body was delimited by the connection closing.
    close_delimited: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Connection` lists `token`.
    fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// A raw connection with a read buffer; every read has a deadline.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = timeout(T, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        timeout(T, self.stream.write_all(bytes.as_ref()))
            .await
            .expect("write in time")
            .expect("write");
    }

    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Reads more into the buffer; panics on timeout or end of stream.
    async fn fill(&mut self, deadline: Instant, what: &str) {
        let mut chunk = [0u8; 16 * 1024];
        match timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => panic!("timed out waiting for {what}; unparsed: {:?}", self.seen()),
            Ok(Ok(0)) => panic!(
                "connection closed before {what}; unparsed: {:?}",
                self.seen()
            ),
            Ok(Err(e)) => panic!(
                "read failed ({e}) before {what}; unparsed: {:?}",
                self.seen()
            ),
            Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
        }
    }

    /// One CRLF-terminated line, without its CRLF.
    async fn line(&mut self, deadline: Instant, what: &str) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return line;
            }
            self.fill(deadline, what).await;
        }
    }

    async fn take(&mut self, n: usize, deadline: Instant, what: &str) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill(deadline, what).await;
        }
        self.buf.drain(..n).collect()
    }

    /// The next response (1xx included) to a request with `method`.
    async fn response_to(&mut self, method: &str) -> Resp {
        let deadline = Instant::now() + T;
        let status_line = self.line(deadline, "a status line").await;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        assert!(
            version == "HTTP/1.1" || version == "HTTP/1.0",
            "not a status line: {status_line:?}"
        );
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status code in {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line(deadline, "the response head").await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?} after {status_line:?}"));
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut resp = Resp {
            version,
            status,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
            chunked: false,
            close_delimited: false,
        };
        if method == "HEAD" || status / 100 == 1 || status == 204 || status == 304 {
            return resp;
        }
        if let Some(te) = resp.header("transfer-encoding") {
            assert!(
                te.eq_ignore_ascii_case("chunked"),
                "unexpected transfer-encoding {te:?}"
            );
            resp.chunked = true;
            (resp.body, resp.trailers) = self.chunked_body(deadline).await;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .unwrap_or_else(|_| panic!("bad content-length {len:?}"));
            resp.body = self.take(len, deadline, "the response body").await;
        } else {
            resp.close_delimited = true;
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match timeout_at(deadline, self.stream.read(&mut chunk)).await {
                    Err(_) => panic!(
                        "close-delimited body not ended by a close; have {:?}",
                        self.seen()
                    ),
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    async fn response(&mut self) -> Resp {
        self.response_to("GET").await
    }

    /// The body and the lines of its trailer section.
    async fn chunked_body(&mut self, deadline: Instant) -> (Vec<u8>, Vec<String>) {
        let mut body = Vec::new();
        loop {
            let line = self.line(deadline, "a chunk size line").await;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                // Trailer section, up to the empty line.
                let mut trailers = Vec::new();
                loop {
                    let line = self.line(deadline, "the trailer section").await;
                    if line.is_empty() {
                        return (body, trailers);
                    }
                    trailers.push(line);
                }
            }
            body.extend(self.take(size, deadline, "chunk data").await);
            let crlf = self.take(2, deadline, "the CRLF after chunk data").await;
            assert_eq!(crlf, b"\r\n", "chunk data not followed by CRLF");
        }
    }

    /// Ok when the peer closes (or resets) within `wait` without sending
    /// anything more.
    async fn closes(&mut self, wait: Duration) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!("unexpected bytes: {:?}", self.seen()));
        }
        let mut chunk = [0u8; 4096];
        match timeout(wait, self.stream.read(&mut chunk)).await {
            Err(_) => Err(format!("connection still open after {wait:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
            Ok(Ok(n)) => Err(format!(
                "more bytes instead of a close: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            )),
        }
    }
}

/// The response has a `Date` that is a valid HTTP date close to now.
fn assert_date(resp: &Resp, what: &str) {
    let date = resp
        .header("date")
        .unwrap_or_else(|| panic!("{what}: no date header in {resp:?}"));
    let when = httpdate::parse_http_date(date)
        .unwrap_or_else(|e| panic!("{what}: bad date {date:?}: {e}"));
    let now = SystemTime::now();
    let skew = now.duration_since(when).unwrap_or_else(|e| e.duration());
    assert!(
        skew < Duration::from_secs(60),
        "{what}: date {date:?} is off"
    );
}

/// How many status lines (`HTTP/1.x NNN `) `answer` holds; an echoed
/// `"version":"HTTP/1.1"` in a body is not one.
fn status_lines(answer: &str) -> usize {
    let bytes = answer.as_bytes();
    answer
        .match_indices("HTTP/1.")
        .filter(|(i, _)| {
            let rest = &bytes[i + 7..];
            rest.len() >= 6
                && matches!(rest[0], b'0' | b'1')
                && rest[1] == b' '
                && rest[2..5].iter().all(u8::is_ascii_digit)
        })
        .count()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

// ---------------------------------------------------------------- upstreams

/// What the mirror upstream received: method, path and whole body.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A hyper HTTP/1.1 upstream answering every request with its own body
/// (`Content-Length` set) and recording what it got.
struct Mirror {
    addr: SocketAddr,
    received: Received,
    task: JoinHandle<()>,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mirror {
    async fn start() -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received: Received = Arc::default();
        let task = tokio::spawn({
            let received = received.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let received = received.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<Incoming>| {
                            let received = received.clone();
                            async move {
                                let method = req.method().to_string();
                                let path = req.uri().to_string();
                                let body = match req.into_body().collect().await {
                                    Ok(collected) => collected.to_bytes(),
                                    Err(_) => Bytes::from_static(b"<body error>"),
                                };
                                received.lock().unwrap().push((method, path, body.to_vec()));
                                let response = Response::builder()
                                    .header("content-type", "application/octet-stream")
                                    .body(Full::new(body))
                                    .expect("response");
                                Ok::<_, Infallible>(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Mirror {
            addr,
            received,
            task,
        }
    }

    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    fn received(&self) -> Vec<(String, String, Vec<u8>)> {
        self.received.lock().unwrap().clone()
    }
}

/// A hand-written upstream whose response has no length: head without
/// `Content-Length` or `Transfer-Encoding`, `pieces` written one by one
/// with pauses, then the connection closed.
struct Unframed {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Unframed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Unframed {
    async fn start(pieces: Vec<Vec<u8>>) -> Unframed {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pieces = Arc::new(pieces);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let pieces = pieces.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match timeout(T, stream.read(&mut chunk)).await {
                            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    for piece in pieces.iter() {
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        if stream.write_all(piece).await.is_err() {
                            return;
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Unframed { addr, task }
    }
}

// ---------------------------------------------------------------- 1. pipelining

#[tokio::test]
async fn pipelined_requests_in_one_write_are_answered_in_order() {
    // The first request is proxied to an upstream that takes its time, the
    // second is a static file that is ready at once: the answers must
    // still come back in request order.
    let slow = Upstream::echo().slow(300).start().await;
    let w = start(Some(&slow.endpoint()), "").await;
    let mut c = Client::connect(w.addr("web")).await;
    c.send(format!("{}{}", get("/api/first"), get("/b.txt")))
        .await;
    let first = c.response().await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        first.header("x-upstream"),
        Some("echo"),
        "first answer is the proxied one: {first:?}"
    );
    assert!(first.text().contains("/api/first"), "{}", first.text());
    let second = c.response().await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.text(), B_TXT);

    // Two static GETs in one write, then a third after both answers: the
    // connection is still in a clean state.
    c.send(format!("{}{}", get("/a.txt"), get("/b.txt"))).await;
    assert_eq!(c.response().await.text(), A_TXT);
    assert_eq!(c.response().await.text(), B_TXT);
    c.send(get("/a.txt")).await;
    assert_eq!(c.response().await.text(), A_TXT);
    assert!(
        c.buf.is_empty(),
        "extra bytes after the responses: {:?}",
        c.seen()
    );
}

// ---------------------------------------------------------------- 2. keep-alive

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_still_gets_a_file() {
    // `printf ... | nc -N` sends a request and shuts its writing side. A
    // file is served whatever comes after; only a request waiting for an
    // upstream is ended by its client's close.
    let w = start(None, "").await;
    for path in ["/a.txt", "/b.txt", "/a.txt"] {
        let mut s = TcpStream::connect(w.addr("web")).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let (all, closed) = support::read_until_closed(&mut s, T).await;
        assert!(closed, "{path}: an answer in time: {all}");
        assert!(all.starts_with("HTTP/1.1 200"), "{path}: {all}");
        let want = if path == "/a.txt" { A_TXT } else { B_TXT };
        assert!(all.ends_with(want), "{path}: {all}");
    }
}

#[tokio::test]
async fn a_file_after_a_proxied_answer_is_served_to_a_client_that_half_closed() {
    // The proxied request's mark is gone with its answer: the next request
    // on the connection, a file, is not ended by the client's half-close.
    let up = Upstream::echo().start().await;
    let w = start(Some(&up.endpoint()), "").await;
    let mut c = Client::connect(w.addr("web")).await;
    c.send(get("/api/one")).await;
    let first = c.response().await;
    assert_eq!(first.status, 200, "{first:?}");
    c.send("GET /a.txt HTTP/1.1\r\nhost: a\r\n\r\n").await;
    c.stream.shutdown().await.unwrap();
    let file = c.response().await;
    assert_eq!(file.status, 200, "{file:?}");
    assert_eq!(file.text(), A_TXT);
}

#[tokio::test]
async fn keep_alive_serves_sequential_requests_and_connection_close_ends_it() {
    let w = start(None, "").await;
    let mut c = Client::connect(w.addr("web")).await;
    for (path, body) in [("/a.txt", A_TXT), ("/b.txt", B_TXT), ("/a.txt", A_TXT)] {
        c.send(get(path)).await;
        let resp = c.response().await;
        assert_eq!(resp.status, 200, "{path}: {resp:?}");
        assert_eq!(resp.version, "HTTP/1.1", "{resp:?}");
        assert_eq!(resp.text(), body, "{path}");
        assert!(
            !resp.connection_has("close"),
            "{path}: keep-alive answer says close: {resp:?}"
        );
    }
    c.send("GET /b.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    let last = c.response().await;
    assert_eq!(last.status, 200, "{last:?}");
    assert_eq!(last.text(), B_TXT);
    assert!(
        last.connection_has("close"),
        "answer to Connection: close says close: {last:?}"
    );
    if let Err(e) = c.closes(CLOSE_WAIT).await {
        panic!("after Connection: close: {e}");
    }
}

// ---------------------------------------------------------------- 3. HTTP/1.0

#[tokio::test]
async fn http10_closes_by_default_and_keeps_alive_when_asked() {
    let w = start(None, "").await;

    // Plain HTTP/1.0: answered, then closed.
    let mut c = Client::connect(w.addr("web")).await;
    c.send("GET /a.txt HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), A_TXT);
    assert!(
        !resp.connection_has("keep-alive"),
        "HTTP/1.0 without keep-alive was told keep-alive: {resp:?}"
    );
    if let Err(e) = c.closes(CLOSE_WAIT).await {
        panic!("HTTP/1.0 without keep-alive: {e}");
    }

    // HTTP/1.0 with Connection: keep-alive: kept, and told so.
    let mut c = Client::connect(w.addr("web")).await;
    c.send("GET /a.txt HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), A_TXT);
    assert!(
        !resp.close_delimited,
        "kept-alive body needs a length: {resp:?}"
    );
    assert!(
        resp.connection_has("keep-alive"),
        "HTTP/1.0 keep-alive answer lacks connection: keep-alive: {resp:?}"
    );
    c.send("GET /b.txt HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
        .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), B_TXT);
    assert!(resp.connection_has("keep-alive"), "{resp:?}");
    // A last HTTP/1.0 request without keep-alive ends the connection.
    c.send("GET /a.txt HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await;
    assert_eq!(c.response().await.text(), A_TXT);
    if let Err(e) = c.closes(CLOSE_WAIT).await {
        panic!("HTTP/1.0 without keep-alive after kept ones: {e}");
    }
}

// ---------------------------------------------------------------- 4. Date, HEAD

#[tokio::test]
async fn every_response_has_date_and_head_has_get_length_without_body() {
    let up = Upstream::echo().start().await;
    let w = start(Some(&up.endpoint()), "").await;
    let mut c = Client::connect(w.addr("web")).await;

    // HEAD then GET of the same file, pipelined: the HEAD answer has the
    // GET's Content-Length and no body, so the GET's answer follows
    // immediately.
    c.send(format!(
        "HEAD /b.txt HTTP/1.1\r\nHost: localhost\r\n\r\n{}",
        get("/b.txt")
    ))
    .await;
    let head = c.response_to("HEAD").await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_date(&head, "HEAD");
    let got = c.response().await;
    assert_eq!(got.status, 200, "the answer after HEAD: {got:?}");
    assert_eq!(got.text(), B_TXT, "body bytes were sent for the HEAD");
    assert_date(&got, "GET");
    assert_eq!(
        head.header("content-length"),
        Some(B_TXT.len().to_string().as_str()),
        "HEAD Content-Length: {head:?}"
    );
    assert_eq!(head.header("content-length"), got.header("content-length"));

    // Other kinds of answer: 404, 405, proxied.
    for (request, status, what) in [
        (get("/missing.txt"), 404, "404"),
        (
            "DELETE /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            405,
            "405",
        ),
        (get("/api/date"), 200, "proxied"),
    ] {
        c.send(request).await;
        let resp = c.response().await;
        assert_eq!(resp.status, status, "{what}: {resp:?}");
        assert_date(&resp, what);
    }
    assert!(c.buf.is_empty(), "extra bytes: {:?}", c.seen());

    // An answer the HTTP/1 layer makes itself: 400 for a bad head.
    let mut c = Client::connect(w.addr("web")).await;
    c.send("GET /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n")
        .await;
    let bad = c.response().await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_date(&bad, "400");
}

// ---------------------------------------------------------------- 5. chunked request

#[tokio::test]
async fn chunked_request_body_with_extensions_and_trailers_reaches_upstream_intact() {
    let mirror = Mirror::start().await;
    let w = start(Some(&mirror.endpoint()), "").await;
    let mut c = Client::connect(w.addr("web")).await;
    let expected = "hello, 0123456789abcdefghijklmnopqrstuvwxyz";
    let wire = concat!(
        "POST /api/chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n",
        "5;x=y\r\nhello\r\n",
        "2\r\n, \r\n",
        "A;ext=\"quoted; value\"\r\n0123456789\r\n",
        "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n",
        "0\r\nx-checksum: 42\r\nx-other: yes\r\n\r\n",
    );
    // In awkward pieces: inside a size line, between CR and LF, inside the
    // trailer section.
    let at = |s: &str| wire.find(s).expect("in wire");
    let cuts = [
        at("5;x=y") + 3,
        at("5;x=y\r") + 6,
        at("A;ext") + 1,
        at("0123") + 4,
        at("0123456789\r") + 11,
        at("x-checksum: 42") + 4,
        wire.len() - 1,
        wire.len(),
    ];
    let mut from = 0;
    for to in cuts {
        c.send(&wire.as_bytes()[from..to]).await;
        from = to;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And a request after it on the same connection: the trailer section
    // was consumed as part of the body, not taken for a request.
    c.send(get("/a.txt")).await;
    let resp = c.response().await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), expected, "the body the upstream echoed");
    let received = mirror.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].0, "POST");
    assert_eq!(
        String::from_utf8_lossy(&received[0].2),
        expected,
        "body at the upstream"
    );
    let next = c.response().await;
    assert_eq!(next.status, 200, "request after the chunked one: {next:?}");
    assert_eq!(next.text(), A_TXT);
}

// ---------------------------------------------------------------- 5b. trailers

#[tokio::test]
async fn chunked_request_trailers_reach_the_upstream_in_its_last_chunk() {
    let up = Scripted::start(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"[..]).await;
    let w = start(Some(&up.endpoint()), "").await;
    let mut c = Client::connect(w.addr("web")).await;
    let wire = concat!(
        "POST /api/t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: x-hop\r\nTrailer: x-checksum, grpc-status\r\n\r\n",
        "5\r\nhello\r\n",
        "0\r\nX-Checksum: 42\r\nContent-Length: 99\r\nHost: evil.test\r\nTransfer-Encoding: chunked\r\nX-Hop: 1\r\n",
        "X-Forwarded-For: 203.0.113.66\r\nGrpc-Status: 0\r\nx-checksum: 43\r\n\r\n",
    );
    // Cut inside the trailer section, and between its last CR and LF.
    let at = wire.find("Host: evil").expect("in wire") + 3;
    for piece in [
        &wire[..at],
        &wire[at..wire.len() - 1],
        &wire[wire.len() - 1..],
    ] {
        c.send(piece).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.send(get("/a.txt")).await;
    let resp = c.response().await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "{resp:?}");
    let requests = up.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let sent = &requests[0];
    assert!(sent.starts_with("POST /api/t HTTP/1.1\r\n"), "{sent:?}");
    assert!(
        sent.ends_with(
            "\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: 42\r\nx-checksum: 43\r\ngrpc-status: 0\r\n\r\n"
        ),
        "the trailers in the last chunk, without framing, routing, hop-by-hop or forwarding fields: {sent:?}"
    );
    // The trailer section was the body's, not a request of its own.
    let next = c.response().await;
    assert_eq!(
        (next.status, next.text()),
        (200, A_TXT.to_owned()),
        "{next:?}"
    );
}

#[tokio::test]
async fn an_upstreams_chunked_trailers_reach_the_client_after_the_last_chunk() {
    let up = Scripted::start(
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-hop\r\nTrailer: X-Checksum\r\n\r\n5\r\nhello\r\n0\r\nX-Checksum: 42\r\nX-Hop: 1\r\nContent-Length: 7\r\nKeep-Alive: timeout=5\r\nGrpc-Status: 0\r\n\r\n"[..],
    )
    .await;
    let w = start(Some(&up.endpoint()), "").await;
    let mut c = Client::connect(w.addr("web")).await;
    for round in 0..2 {
        c.send(get("/api/x")).await;
        let resp = c.response().await;
        assert_eq!(resp.status, 200, "{resp:?}");
        assert!(resp.chunked, "{resp:?}");
        assert_eq!(resp.text(), "hello");
        assert_eq!(
            resp.trailers,
            ["x-checksum: 42", "grpc-status: 0"],
            "round {round}: {resp:?}"
        );
    }
    assert_eq!(up.connections(), 1, "the upstream connection was reused");
    // An HTTP/1.0 client's body ends with the close: no place for them.
    c.send("GET /api/x HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await;
    let old = c.response().await;
    assert!(old.close_delimited, "{old:?}");
    assert_eq!(old.text(), "hello", "{old:?}");
}

#[tokio::test]
async fn an_oversized_or_malformed_trailer_section_is_400_and_closes_the_connection() {
    let big = "a".repeat(10 * 1024);
    let probes = [
        (
            "trailer section over max_header_bytes (8KiB)",
            format!(
                "POST /api/t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Big: {big}\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "trailer line without a colon",
            format!(
                "POST /api/t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nno colon\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "folded trailer line",
            format!(
                "POST /api/t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-A: 1\r\n folded\r\n\r\n{SMUGGLED}"
            ),
        ),
    ];
    let mut failures = Vec::new();
    for (name, probe) in &probes {
        let up = Upstream::echo().start().await;
        let w = start(
            Some(&up.endpoint()),
            "[limits]\nmax_header_bytes = \"8KiB\"",
        )
        .await;
        // The head alone first, so the body is read as it streams on.
        let mut c = Client::connect(w.addr("web")).await;
        let head_end = probe.find("\r\n\r\n").expect("head") + 4;
        c.send(&probe[..head_end]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.send(&probe[head_end..]).await;
        let resp = c.response().await;
        if resp.status != 400 {
            failures.push(format!("{name}: answered {}, not 400", resp.status));
        }
        if let Err(e) = c.closes(CLOSE_WAIT).await {
            failures.push(format!("{name}: {e}"));
        }
        let paths = up.stats.paths();
        if paths.iter().any(|p| p.contains("smuggled")) {
            failures.push(format!("{name}: the upstream saw {paths:?}"));
        }
        // And whole, read with the head.
        let (answer, closed) = support::raw(w.addr("web"), probe.as_bytes(), CLOSE_WAIT).await;
        if !answer.starts_with("HTTP/1.1 400") || !closed || status_lines(&answer) != 1 {
            failures.push(format!(
                "{name} (with the head): {answer:?}, closed: {closed}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------- 6. 100-continue

#[tokio::test]
async fn expect_100_continue_gets_interim_response_before_the_body_is_sent() {
    let mirror = Mirror::start().await;
    let w = start(Some(&mirror.endpoint()), "").await;
    let mut c = Client::connect(w.addr("web")).await;
    let body = "the body, sent only once weir asked for it";
    c.send(format!(
        "POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    ))
    .await;
    // Nothing of the body has been sent: what comes now is the 100.
    let interim = c.response().await;
    assert_eq!(
        (interim.version.as_str(), interim.status),
        ("HTTP/1.1", 100),
        "expected 100 Continue first: {interim:?}"
    );
    assert!(c.buf.is_empty(), "bytes after the 100: {:?}", c.seen());
    c.send(body).await;
    let fin = c.response().await;
    assert_eq!(fin.status, 200, "{fin:?}");
    assert_eq!(fin.text(), body);
    let received = mirror.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(String::from_utf8_lossy(&received[0].2), body);
    // The connection carries on.
    c.send(get("/a.txt")).await;
    assert_eq!(c.response().await.text(), A_TXT);
}

// ---------------------------------------------------------------- 7. smuggling

const SMUGGLED: &str = "GET /api/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[tokio::test]
async fn ambiguous_or_bad_framing_is_400_and_closes_the_connection() {
    let probes: Vec<(&str, String)> = vec![
        (
            "CL then TE (strict 400, not close-after)",
            format!(
                "POST /api/probe HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "TE then CL (strict 400, not close-after)",
            format!(
                "POST /api/probe HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /api/probe HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 8\r\n\r\nabcdefgh{SMUGGLED}"
            ),
        ),
        (
            "Content-Length list 5, 0",
            format!(
                "POST /api/probe HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 0\r\n\r\nhello{SMUGGLED}"
            ),
        ),
        (
            "Content-Length: -1",
            format!(
                "POST /api/probe HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\nx{SMUGGLED}"
            ),
        ),
        (
            "Content-Length: +5",
            format!(
                "POST /api/probe HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello{SMUGGLED}"
            ),
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            format!(
                "POST /api/probe HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            format!(
                "POST /api/probe HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "chunk size with too many hex digits",
            format!(
                "POST /api/probe HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n{SMUGGLED}"
            ),
        ),
        (
            "HTTP/1.1 without Host (RFC 9112 3.2)",
            format!("GET /api/probe HTTP/1.1\r\nX-Probe: 1\r\n\r\n{SMUGGLED}"),
        ),
        (
            "chunk data not followed by CRLF",
            format!(
                "POST /api/probe HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n{SMUGGLED}"
            ),
        ),
    ];
    let mut failures = Vec::new();
    for (name, probe) in &probes {
        let up = Upstream::echo().start().await;
        let w = start(Some(&up.endpoint()), "").await;
        let (answer, closed) = support::raw(w.addr("web"), probe.as_bytes(), CLOSE_WAIT).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first = answer.lines().next().unwrap_or("").to_owned();
        let status_400 = first.starts_with("HTTP/1.1 400")
            || (name.contains("HTTP/1.0") && first.starts_with("HTTP/1.0 400"));
        if !status_400 {
            failures.push(format!("{name}: answered {first:?}, not 400"));
        }
        if !closed {
            failures.push(format!("{name}: connection left open"));
        }
        let responses = status_lines(&answer);
        if responses > 1 {
            failures.push(format!("{name}: {responses} responses on one connection"));
        }
        let paths = up.stats.paths();
        if paths.len() > 1 || paths.iter().any(|p| p.contains("smuggled")) {
            failures.push(format!("{name}: the upstream saw {paths:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------- 8. head limits

#[tokio::test]
async fn head_over_max_header_bytes_or_over_100_fields_gets_431() {
    let w = start(None, "[limits]\nmax_header_bytes = \"8KiB\"").await;

    // Many ordinary-sized lines adding up to more than 8 KiB.
    let lines: String = (0..20)
        .map(|i| format!("X-Filler-{i}: {}\r\n", "v".repeat(480)))
        .collect();
    let mut c = Client::connect(w.addr("web")).await;
    c.send(format!(
        "GET /a.txt HTTP/1.1\r\nHost: localhost\r\n{lines}\r\n"
    ))
    .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 431, "{resp:?}");
    assert!(resp.connection_has("close"), "431 says close: {resp:?}");
    assert_date(&resp, "431");
    if let Err(e) = c.closes(CLOSE_WAIT).await {
        panic!("after 431 for size: {e}");
    }

    // Within the limit (about 6 KiB) is served.
    let lines: String = (0..12)
        .map(|i| format!("X-Filler-{i}: {}\r\n", "v".repeat(480)))
        .collect();
    let mut c = Client::connect(w.addr("web")).await;
    c.send(format!(
        "GET /a.txt HTTP/1.1\r\nHost: localhost\r\n{lines}\r\n"
    ))
    .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 200, "6 KiB head: {resp:?}");

    // Exactly 100 fields (Host + 99) is served...
    let fields = |n: usize| -> String { (0..n).map(|i| format!("X-F{i}: {i}\r\n")).collect() };
    let mut c = Client::connect(w.addr("web")).await;
    c.send(format!(
        "GET /a.txt HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        fields(99)
    ))
    .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 200, "100 header fields: {resp:?}");

    // ...101 (Host + 100), though small, is 431.
    let mut c = Client::connect(w.addr("web")).await;
    c.send(format!(
        "GET /a.txt HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        fields(100)
    ))
    .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 431, "101 header fields: {resp:?}");
    assert!(resp.connection_has("close"), "431 says close: {resp:?}");
    if let Err(e) = c.closes(CLOSE_WAIT).await {
        panic!("after 431 for field count: {e}");
    }
}

// ---------------------------------------------------------------- 9. unknown length

#[tokio::test]
async fn response_of_unknown_length_is_chunked_for_http11_and_close_delimited_for_http10() {
    let big: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let pieces = vec![b"alpha-".to_vec(), big, b"-omega".to_vec()];
    let expected: Vec<u8> = pieces.concat();
    let up = Unframed::start(pieces).await;
    let w = start(Some(&up.addr.to_string()), "").await;

    let mut c = Client::connect(w.addr("web")).await;
    c.send(get("/api/stream")).await;
    let resp = c.response().await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.chunked,
        "HTTP/1.1 answer without a length is not chunked: {:?}",
        resp.headers
    );
    assert!(
        resp.header("content-length").is_none(),
        "{:?}",
        resp.headers
    );
    assert!(
        resp.body == expected,
        "chunked body differs ({} bytes)",
        resp.body.len()
    );
    // Chunked framing keeps the connection usable.
    c.send(get("/a.txt")).await;
    assert_eq!(c.response().await.text(), A_TXT);

    let mut c = Client::connect(w.addr("web")).await;
    c.send("GET /api/stream HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.header("transfer-encoding").is_none(),
        "chunked sent to an HTTP/1.0 client: {:?}",
        resp.headers
    );
    assert!(
        resp.close_delimited,
        "HTTP/1.0 answer of unknown length not close-delimited: {:?}",
        resp.headers
    );
    assert!(
        resp.body == expected,
        "close-delimited body differs ({} bytes)",
        resp.body.len()
    );
}

// ---------------------------------------------------------------- 10. unread body

#[tokio::test]
async fn unread_small_body_is_skipped_and_the_connection_stays_usable() {
    let w = start(None, "").await;
    let mut c = Client::connect(w.addr("web")).await;
    // Content-Length body the 405 never reads, a GET right behind it. The
    // body looks like a request line on purpose.
    c.send(format!(
        "POST /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nGET /x 1.1{}",
        get("/a.txt")
    ))
    .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 405, "{resp:?}");
    let next = c.response().await;
    assert_eq!(next.status, 200, "request after an unread body: {next:?}");
    assert_eq!(next.text(), A_TXT);
    // And once more: the connection is still in step.
    c.send(get("/b.txt")).await;
    assert_eq!(c.response().await.text(), B_TXT);
    assert!(c.buf.is_empty(), "extra bytes: {:?}", c.seen());
}

#[tokio::test]
async fn unread_small_chunked_body_is_skipped_and_the_connection_stays_usable() {
    let w = start(None, "").await;
    let mut c = Client::connect(w.addr("web")).await;
    // A small chunked body (several chunks, an extension, a trailer) the
    // 405 never reads, a GET right behind it.
    c.send(format!(
        "POST /a.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nGET \r\n6\r\n/ HTTP\r\n2\r\n/1\r\n0\r\nx-t: 1\r\n\r\n{}",
        get("/b.txt")
    ))
    .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 405, "{resp:?}");
    let next = c.response().await;
    assert_eq!(
        next.status, 200,
        "request after an unread chunked body: {next:?}"
    );
    assert_eq!(next.text(), B_TXT);
    assert!(c.buf.is_empty(), "extra bytes: {:?}", c.seen());
}

// ---------------------------------------------------------------- 11. big unread body

#[tokio::test]
async fn large_unread_body_is_answered_then_the_connection_closed() {
    let w = start(None, "").await;
    let mut c = Client::connect(w.addr("web")).await;
    // 10 MB announced (within max_body_bytes), none of it sent.
    c.send("POST /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n")
        .await;
    let resp = c.response().await;
    assert_eq!(resp.status, 405, "{resp:?}");
    if let Err(e) = c.closes(CLOSE_WAIT).await {
        panic!("weir waited for a body it will never use: {e}");
    }
}

// ---------------------------------------------------------------- 12. absolute form

#[tokio::test]
async fn absolute_form_target_is_routed_by_its_host() {
    let routes = "[[routes]]\nhost = \"a.test\"\npath = \"/\"\nbackends = [{ site = \"a\" }]\n\n[[routes]]\nhost = \"b.test\"\npath = \"/\"\nbackends = [{ site = \"b\" }]\n\n[sites.a]\nroot = \"a\"\n\n[sites.b]\nroot = \"b\"\n";
    let w = weir()
        .file("a/who.txt", "site a\n")
        .file("b/who.txt", "site b\n")
        .start(&config(routes))
        .await;
    let mut c = Client::connect(w.addr("web")).await;
    let cases = [
        // Origin form: by Host.
        ("GET /who.txt HTTP/1.1\r\nHost: b.test\r\n\r\n", "site b\n"),
        // Absolute form with a matching Host.
        (
            "GET http://a.test/who.txt HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "site a\n",
        ),
        // Absolute form wins over a different Host (RFC 9112 3.2.2).
        (
            "GET http://a.test/who.txt HTTP/1.1\r\nHost: b.test\r\n\r\n",
            "site a\n",
        ),
        // With a port in the target.
        (
            "GET http://b.test:80/who.txt HTTP/1.1\r\nHost: a.test\r\n\r\n",
            "site b\n",
        ),
    ];
    for (request, body) in cases {
        c.send(request).await;
        let resp = c.response().await;
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, body),
            "{request:?}: {resp:?}"
        );
    }
}
