//! Keep-alive HTTP/1.1 connections to plain-TCP endpoints, pooled per
//! endpoint address.
//!
//! The common case of a sidecar or ingress (HTTP/1.1 upstreams on the same
//! host or network) goes through here instead of hyper-util's general
//! client: a request takes an idle connection of its endpoint (or opens
//! one), runs its exchange on it in its own task (`upstream::exchange`),
//! and the connection goes back to the pool when the response body has
//! been read to its end. No pool key to build and hash, no absolute URI to
//! format and parse, no connection task to hand requests to.
//!
//! Bounds: at most `MAX_IDLE` idle connections per endpoint (the oldest is
//! closed to make room), none reused after `IDLE_TIMEOUT`; a connection
//! whose response body is dropped before its end is closed, never reused.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::exchange::{Connection, ExchangeError, Outgoing, ResponseBody};
use crate::http::body::Body;
use crate::http::h1::upgrade::Rewind;
use crate::http::raw::WithFields;

/// Idle keep-alive connections kept per endpoint.
pub const MAX_IDLE: usize = 64;
/// An idle connection is not reused after this long; upstream servers
/// commonly close theirs after 60-75 s, so ours goes first.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Endpoints with idle connections kept per service.
const MAX_ENDPOINTS: usize = 1024;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be opened: nothing was sent.
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {addr}: timed out after {CONNECT_TIMEOUT:?}")]
    ConnectTimeout { addr: SocketAddr },
    /// No response head by the attempt's deadline (connecting included).
    #[error("no response from {addr} in time")]
    TimedOut { addr: SocketAddr },
    /// The HTTP exchange failed (before or after the request was sent).
    #[error("upstream exchange")]
    Exchange(#[source] ExchangeError),
}

/// Where an attempt goes, and by when its response head must come.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub addr: SocketAddr,
    /// `false` opens a new connection whatever is idle (the retry after a
    /// stale one).
    pub reuse: bool,
    pub deadline: Instant,
}

/// The idle connections of a service, by endpoint (a service has few
/// endpoints: a list is quicker to search than a map is to hash).
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<Vec<(SocketAddr, Vec<Idle>)>>,
}

#[derive(Debug)]
struct Idle {
    conn: Box<Connection>,
    /// When it stops being reused (`IDLE_TIMEOUT` after it came back):
    /// kept as a deadline, compared without a subtraction.
    until: Instant,
}

/// In the extensions of a `101` response from a pooled upstream: the
/// upstream's connection, for the tunnel. Clone, as extensions must be;
/// the first `take` gets it.
#[derive(Debug, Clone)]
pub struct UpstreamUpgrade(Arc<Mutex<Option<Rewind<TcpStream>>>>);

impl UpstreamUpgrade {
    pub fn take(&self) -> Option<Rewind<TcpStream>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Pool {
    pub fn new() -> Arc<Pool> {
        Arc::new(Pool::default())
    }

    /// Sends `request` and `body` as `to` says. Returns the response and
    /// whether it went over a pooled connection (only those can be stale:
    /// closed by the upstream as they were taken).
    pub async fn send(
        self: &Arc<Self>,
        to: Attempt,
        request: Outgoing<'_>,
        body: Body,
    ) -> (Result<WithFields<PooledBody>, SendError>, bool) {
        let Attempt {
            addr,
            reuse,
            deadline,
        } = to;
        let pooled = if reuse { self.take(addr) } else { None };
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(conn) => conn,
            None => match connect(addr, deadline).await {
                Ok(conn) => conn,
                Err(e) => return (Err(e), false),
            },
        };
        let (head, fields, body) = match conn.send(request, body, deadline).await {
            Ok(sent) => sent,
            Err(ExchangeError::TimedOut) => return (Err(SendError::TimedOut { addr }), reused),
            Err(e) => return (Err(SendError::Exchange(e)), reused),
        };
        if head.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // The connection belongs to the tunnel now.
            let io = body.into_upgraded();
            let mut response = head.map(|()| PooledBody {
                inner: ResponseBody::ended(),
                back: None,
            });
            response
                .extensions_mut()
                .insert(UpstreamUpgrade(Arc::new(Mutex::new(io))));
            return (Ok((response, fields)), reused);
        }
        let mut response = head.map(|()| PooledBody {
            inner: body,
            back: Some(Return {
                pool: self.clone(),
                addr,
            }),
        });
        let body = response.body_mut();
        // An empty body (HEAD, 204, 304, Content-Length: 0) ends here.
        if body.inner.is_end_stream() {
            body.release();
        }
        (Ok((response, fields)), reused)
    }

    /// The most recently used idle connection of `addr` that is still open
    /// (nothing came on it since its last response).
    fn take(&self, addr: SocketAddr) -> Option<Box<Connection>> {
        let mut all = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let (_, list) = all.iter_mut().find(|(a, _)| *a == addr)?;
        let now = Instant::now();
        while let Some(Idle { mut conn, until }) = list.pop() {
            if now <= until && conn.is_usable() {
                return Some(conn);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, conn: Box<Connection>) {
        let mut all = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let at = match all.iter().position(|(a, _)| *a == addr) {
            Some(at) => at,
            None => {
                // Addresses come and go with DNS: forget the emptied ones,
                // and past a bound the oldest, so the list stays short.
                if all.len() >= 64 {
                    all.retain(|(_, list)| !list.is_empty());
                }
                if all.len() >= MAX_ENDPOINTS {
                    all.remove(0);
                }
                all.push((addr, Vec::new()));
                all.len() - 1
            }
        };
        let list = &mut all[at].1;
        let now = Instant::now();
        // The oldest idle connections are at the front.
        let expired = list.iter().take_while(|i| now > i.until).count();
        list.drain(..expired);
        if list.len() >= MAX_IDLE {
            list.remove(0);
        }
        list.push(Idle {
            conn,
            until: now + IDLE_TIMEOUT,
        });
    }

    /// Idle connections held now, over every endpoint.
    pub fn idle_count(&self) -> usize {
        let all = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|(_, list)| list.len()).sum()
    }
}

/// Opens a connection within `CONNECT_TIMEOUT`, and by the attempt's
/// `deadline` when that comes first.
async fn connect(addr: SocketAddr, deadline: Instant) -> Result<Box<Connection>, SendError> {
    let connect_by = Instant::now() + CONNECT_TIMEOUT;
    let stream =
        match tokio::time::timeout_at(deadline.min(connect_by), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(SendError::Connect { addr, source }),
            Err(_) if deadline < connect_by => return Err(SendError::TimedOut { addr }),
            Err(_) => return Err(SendError::ConnectTimeout { addr }),
        };
    let _ = stream.set_nodelay(true);
    Ok(Connection::new(stream))
}

#[derive(Debug)]
struct Return {
    pool: Arc<Pool>,
    addr: SocketAddr,
}

/// A response body that gives its connection back to the pool once it has
/// been read to the end; dropped earlier, the connection closes.
#[derive(Debug)]
pub struct PooledBody {
    inner: ResponseBody,
    back: Option<Return>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(back) = self.back.take()
            && let Some(conn) = self.inner.finished()
        {
            back.pool.put(back.addr, conn);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = self.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            // A broken body: the connection is not reused.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::Response;
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use http::Request;

    use super::*;

    /// An HTTP/1.1 upstream on loopback that counts its connections and
    /// answers `/close` with `Connection: close`, `/big` with 1 MiB.
    async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<Incoming>| async move {
                        let mut response =
                            Response::new(http_body_util::Full::new(match req.uri().path() {
                                "/big" => Bytes::from(vec![b'x'; 1 << 20]),
                                _ => Bytes::from_static(b"hello"),
                            }));
                        if req.uri().path() == "/close" {
                            response.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    pub(super) async fn send(
        pool: &Arc<Pool>,
        addr: SocketAddr,
        req: Request<Body>,
        reuse: bool,
    ) -> (Result<Response<PooledBody>, SendError>, bool) {
        let (parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Outgoing {
            method: &parts.method,
            target,
            headers: &parts.headers,
            added: &[],
        };
        let to = Attempt {
            addr,
            reuse,
            deadline: Instant::now() + Duration::from_secs(30),
        };
        let (sent, reused) = pool.send(to, request, body).await;
        (sent.map(|(response, _)| response), reused)
    }

    fn get(path: &'static str) -> Request<Body> {
        let mut req = Request::new(crate::http::body::empty());
        *req.uri_mut() = http::Uri::from_static(path);
        req.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("up"));
        req
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_is_reused() {
        let (addr, accepted) = upstream().await;
        let pool = Pool::new();
        for round in 0..3 {
            let (sent, reused) = send(&pool, addr, get("/"), true).await;
            assert_eq!(reused, round > 0, "round {round}");
            let body = sent.unwrap().into_body().collect().await.unwrap();
            assert_eq!(body.to_bytes(), "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_early_closes_its_connection() {
        let (addr, accepted) = upstream().await;
        let pool = Pool::new();
        let (sent, _) = send(&pool, addr, get("/big"), true).await;
        let mut body = sent.unwrap().into_body();
        let _ = body.frame().await;
        drop(body);
        assert_eq!(pool.idle_count(), 0);
        let (sent, reused) = send(&pool, addr, get("/"), true).await;
        assert!(!reused);
        sent.unwrap().into_body().collect().await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connection_close_is_not_kept_and_reuse_false_opens_anew() {
        let (addr, accepted) = upstream().await;
        let pool = Pool::new();
        let (sent, _) = send(&pool, addr, get("/close"), true).await;
        sent.unwrap().into_body().collect().await.unwrap();
        assert_eq!(pool.idle_count(), 0);
        let (sent, _) = send(&pool, addr, get("/"), true).await;
        sent.unwrap().into_body().collect().await.unwrap();
        let (sent, reused) = send(&pool, addr, get("/"), false).await;
        assert!(!reused);
        sent.unwrap().into_body().collect().await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        assert_eq!(pool.idle_count(), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let (sent, reused) = send(&Pool::new(), addr, get("/"), true).await;
        assert!(!reused);
        assert!(matches!(sent, Err(SendError::Connect { .. })), "{sent:?}");
    }
}

#[cfg(test)]
mod busy_tests {
    use std::time::Duration;

    use super::tests::send;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use http::Request;

    use super::*;

    /// An upstream that answers as soon as it has a request head and then
    /// neither reads on nor closes: a connection whose request body is still
    /// being sent stays busy.
    async fn answers_early() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        addr
    }

    /// A request body that sends what the test gives it and ends only when
    /// the test drops its sender.
    struct Stalled(mpsc::Receiver<Bytes>);

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn a_connection_answered_before_its_body_was_sent_is_not_reused() {
        let addr = answers_early().await;
        let pool = Pool::new();
        let (chunks, body) = mpsc::channel(1);
        chunks.send(Bytes::from_static(b"part")).await.unwrap();
        let mut post = Request::new(Stalled(body).boxed());
        *post.method_mut() = http::Method::POST;
        *post.uri_mut() = http::Uri::from_static("/upload");
        post.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("up"));
        let (sent, _) = send(&pool, addr, post, true).await;
        let body = sent.unwrap().into_body().collect().await.unwrap();
        assert_eq!(body.to_bytes(), "ok");
        // The upload stopped with the answer; a GET must not wait for it.
        let mut get = Request::new(crate::http::body::empty());
        *get.uri_mut() = http::Uri::from_static("/");
        get.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("up"));
        let (sent, reused) =
            tokio::time::timeout(Duration::from_secs(2), send(&pool, addr, get, true))
                .await
                .expect("the GET waited for a busy connection");
        assert!(!reused);
        assert_eq!(
            sent.unwrap()
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes(),
            "ok"
        );
        // The upload's connection is mid-body: never pooled, never waited on.
        assert_eq!(pool.idle_count(), 1, "only the GET's connection is idle");
        drop(chunks);
    }
}
