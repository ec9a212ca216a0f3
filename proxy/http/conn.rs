//! One client connection: HTTP/1.1 or HTTP/2 (chosen by the preface, so h2c
//! prior knowledge works on plain TCP) through hyper-util, with the head
//! deadline (408 for a partial head), head size limit, idle timeout and
//! graceful drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::app::App;
use crate::drain::Drain;
use crate::http::error::Reject;
use crate::snapshot::Limits;

/// What a request needs to know about the connection it came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub tls: bool,
    pub state: ConnState,
    /// `Alt-Svc` for every response on a TCP TLS listener with `http3 = true`.
    pub alt_svc: Option<http::HeaderValue>,
    /// `weir_open_connections` for this connection's protocol: counted from
    /// the start (HTTP/1.1 unless ALPN said h2), moved to h2 at the first
    /// request when the preface said otherwise.
    open: Mutex<Option<Gauge>>,
    /// Which protocol `open` counts (`Protocol` code), read per request
    /// without the lock.
    open_as: AtomicU8,
    /// The peer's IP as a header value, made at the first proxied request.
    peer_ip: OnceLock<http::HeaderValue>,
}

impl ConnInfo {
    pub fn new(
        listener: Arc<str>,
        peer: SocketAddr,
        tls: bool,
        alt_svc: Option<http::HeaderValue>,
    ) -> ConnInfo {
        ConnInfo {
            listener,
            peer,
            tls,
            state: ConnState::new(),
            alt_svc,
            open: Mutex::new(None),
            open_as: AtomicU8::new(0),
            peer_ip: OnceLock::new(),
        }
    }

    /// The peer's IP address as `X-Forwarded-For` names it.
    pub fn peer_ip(&self) -> &http::HeaderValue {
        self.peer_ip.get_or_init(|| {
            http::HeaderValue::from_str(&self.peer.ip().to_string())
                .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"))
        })
    }

    /// Counts this connection in `weir_open_connections` as `protocol`
    /// (`h1`, `h2`, `h3`), moving it from the protocol it was counted as.
    pub fn count_open(&self, protocol: &'static str, app: &App) {
        let code = match protocol {
            "h1" => 1,
            "h2" => 2,
            _ => 3,
        };
        if self.open_as.load(Ordering::Relaxed) == code {
            return;
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(before) = open.take() {
            before.dec();
        }
        let gauge = app.metrics.connections(&self.listener, protocol);
        gauge.inc();
        *open = Some(gauge);
        self.open_as.store(code, Ordering::Relaxed);
    }
}

impl Drop for ConnInfo {
    fn drop(&mut self) {
        let open = self.open.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(gauge) = open.take() {
            gauge.dec();
        }
    }
}

/// One request in flight on its connection, from its head to the end of its
/// response, or to the moment it is abandoned (an HTTP/2 stream reset, a
/// client gone mid-proxy): the idle and head watchdogs read the count.
#[derive(Debug)]
pub struct InFlight(Arc<ConnInfo>);

impl InFlight {
    pub fn start(conn: Arc<ConnInfo>) -> InFlight {
        conn.state.request_started();
        InFlight(conn)
    }
}

impl std::ops::Deref for InFlight {
    type Target = Arc<ConnInfo>;

    fn deref(&self) -> &Arc<ConnInfo> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.state.request_finished();
    }
}

/// `ConnState::head_since` while no request head is pending.
const NO_HEAD: u64 = u64::MAX;

/// Live counters of one connection, read by the idle and head watchdog.
#[derive(Debug)]
pub struct ConnState {
    opened: Instant,
    /// Milliseconds after `opened` of the last byte read or written.
    last_activity: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the pending request head began:
    /// the connection's start for its first request, else the first byte
    /// of the next head; `NO_HEAD` from a request's start to that byte.
    head_since: AtomicU64,
    /// Bytes of the pending head have arrived.
    head_bytes: AtomicBool,
    /// HTTP/2 (by ALPN or preface): its streams have no head deadline here.
    h2: AtomicBool,
    /// The head deadline passed with part of a head read: the next read
    /// answers 408 and ends the connection.
    head_timed_out: AtomicBool,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            opened: Instant::now(),
            last_activity: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            head_since: AtomicU64::new(0),
            head_bytes: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            head_timed_out: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_activity.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Bytes came in: between requests, they begin the next head.
    fn received(&self) {
        let now = self.now_ms();
        self.last_activity.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            self.head_bytes.store(true, Ordering::Relaxed);
            if self.head_since.load(Ordering::Relaxed) == NO_HEAD {
                self.head_since.store(now, Ordering::Relaxed);
            }
        }
    }

    /// Whether the pending HTTP/1 head has outlived `limit`, and if so
    /// whether any of it arrived.
    fn head_overdue(&self, limit: Duration) -> Option<bool> {
        if self.h2.load(Ordering::Relaxed) || self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let since = self.head_since.load(Ordering::Relaxed);
        if since == NO_HEAD || self.now_ms().saturating_sub(since) < limit.as_millis() as u64 {
            return None;
        }
        Some(self.head_bytes.load(Ordering::Relaxed))
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NO_HEAD, Ordering::Relaxed);
        self.head_bytes.store(false, Ordering::Relaxed);
    }

    fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }
}

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    alt_svc: Option<http::HeaderValue>,
    app: Arc<App>,
    drain: Drain,
) {
    let snapshot = app.snapshot();
    let limits = snapshot.limits.clone();
    let tls = snapshot
        .listener(&listener)
        .and_then(|l| l.tls.as_ref())
        .is_some();
    drop(snapshot);
    let info = Arc::new(ConnInfo::new(listener, peer, tls, alt_svc));
    if tls {
        let accepted = Box::pin(crate::tls::accept(
            stream,
            &info,
            &app,
            limits.header_read_timeout,
        ))
        .await;
        if let Some(stream) = accepted {
            // The protocol follows ALPN: a client that agreed on http/1.1
            // never gets HTTP/2, whatever its first bytes look like.
            let alpn = match stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Alpn::H2,
                Some(b"http/1.1") => Alpn::Http1,
                _ => Alpn::Any,
            };
            Box::pin(serve_io(stream, alpn, info, app, limits, drain)).await;
        }
    } else {
        // Boxed: the task of an idle connection holds only what its own
        // protocol needs, not the size of the largest branch.
        Box::pin(serve_io(stream, Alpn::Any, info, app, limits, drain)).await;
    }
}

/// What TLS negotiated; plain TCP tells h1 from h2 by the preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alpn {
    Any,
    Http1,
    H2,
}

async fn serve_io<I>(
    io: I,
    alpn: Alpn,
    info: Arc<ConnInfo>,
    app: Arc<App>,
    limits: Limits,
    drain: Drain,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    info.state.h2.store(alpn == Alpn::H2, Ordering::Relaxed);
    // Counted from here, so sockets that never send a request show too.
    info.count_open(if alpn == Alpn::H2 { "h2" } else { "h1" }, &app);
    let io = TokioIo::new(ActivityIo {
        inner: io,
        info: info.clone(),
        first_read: true,
    });
    let service_info = info.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        let info = service_info.clone();
        // Boxed per request: hyper keeps one slot for the service future
        // per connection, which an idle connection then need not hold.
        Box::pin(async move { Ok::<_, Infallible>(super::service::handle(req, info, &app).await) })
    });
    let max_header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    match alpn {
        Alpn::Any => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            // The head deadline is weir's (see `drive`): hyper's would close
            // without the 408 SPEC asks for.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(None)
                .max_buf_size(limits.max_header_bytes);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_header_list_size(max_header_list);
            let conn = builder.serve_connection_with_upgrades(io, service);
            drive(conn, |c| c.graceful_shutdown(), &info, &limits, &drain).await;
        }
        // hyper-util's auto builder reads the preface whatever ALPN said,
        // so a negotiated protocol gets its own builder.
        Alpn::Http1 => {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(None)
                .max_buf_size(limits.max_header_bytes)
                .serve_connection(io, service)
                .with_upgrades();
            drive(conn, |c| c.graceful_shutdown(), &info, &limits, &drain).await;
        }
        Alpn::H2 => {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(max_header_list)
                .serve_connection(io, service);
            drive(conn, |c| c.graceful_shutdown(), &info, &limits, &drain).await;
        }
    }
    drop(drain);
}

/// Serves `conn` until it ends, starting a graceful close on drain or when
/// it has been idle (no request in flight, no byte moved) for `idle_timeout`.
async fn drive<C, E>(
    conn: C,
    shut: impl Fn(Pin<&mut C>),
    info: &ConnInfo,
    limits: &Limits,
    drain: &Drain,
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut stop = drain.signal();
    let mut closing = drain.is_draining();
    if closing {
        shut(conn.as_mut());
    }
    let check_every = (limits.idle_timeout.min(limits.header_read_timeout) / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut watchdog = tokio::time::interval(check_every);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %info.peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                shut(conn.as_mut());
            }
            _ = watchdog.tick(), if !closing => {
                match info.state.head_overdue(limits.header_read_timeout) {
                    // Part of a head came and the rest did not: the next
                    // read (the loop polls the connection again at once)
                    // answers 408 and ends the connection.
                    Some(true) => {
                        closing = true;
                        info.state.head_timed_out.store(true, Ordering::Relaxed);
                        tracing::debug!(peer = %info.peer, "request head not complete within header_read_timeout");
                        continue;
                    }
                    // A connection that never sent a byte.
                    Some(false) => {
                        closing = true;
                        shut(conn.as_mut());
                        continue;
                    }
                    None => {}
                }
                let idle = info.state.in_flight.load(Ordering::Relaxed) == 0
                    && info.state.idle_for() >= limits.idle_timeout;
                if idle {
                    closing = true;
                    shut(conn.as_mut());
                }
            }
        }
    }
}

/// Marks the connection active on every byte moved, tells HTTP/2 by its
/// preface, and answers 408 in place of a head that ran out of time.
struct ActivityIo<I> {
    inner: I,
    info: Arc<ConnInfo>,
    first_read: bool,
}

/// What an HTTP/2 connection starts with (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for ActivityIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.info.state.head_timed_out.load(Ordering::Relaxed) {
            return self.answer_head_timeout(cx);
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            if self.first_read {
                self.first_read = false;
                let n = read.len().min(H2_PREFACE.len());
                if read[..n] == H2_PREFACE[..n] {
                    self.info.state.h2.store(true, Ordering::Relaxed);
                }
            }
            self.info.state.received();
        }
        result
    }
}

impl<I: AsyncWrite + Unpin> ActivityIo<I> {
    /// Writes a 408 as far as the socket takes it at once (nothing was
    /// sent on this connection since the last response), then reads as
    /// end of stream, so hyper ends the connection.
    fn answer_head_timeout(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.info
            .state
            .head_timed_out
            .store(false, Ordering::Relaxed);
        let answer = Reject::HeadTimeout.http1_bytes();
        let mut inner = Pin::new(&mut self.inner);
        if let Poll::Ready(Ok(n)) = inner.as_mut().poll_write(cx, &answer)
            && n == answer.len()
        {
            let _ = inner.as_mut().poll_flush(cx);
            let _ = inner.poll_shutdown(cx);
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ActivityIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.info.state.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.info.state.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
