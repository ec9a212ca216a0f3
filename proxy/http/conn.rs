//! One client connection: TLS if its listener has it, then HTTP/1.1 (weir's
//! own, `http::h1`) or HTTP/2 (hyper), chosen by ALPN or, on plain TCP, by
//! the preface, so h2c prior knowledge works. HTTP/2 connections get their
//! idle timeout, graceful drain and request body limit here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Either;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::body::Body;
use super::body_limit::Limited;
use super::error::Reject;
use super::observe::{Observed, RefusedWith};
use crate::app::App;
use crate::drain::Drain;
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

/// Live counters of one connection, read by the HTTP/2 idle watchdog.
#[derive(Debug)]
pub struct ConnState {
    opened: Instant,
    /// Milliseconds after `opened` of the last byte read or written.
    last_activity: AtomicU64,
    in_flight: AtomicUsize,
    /// A request of this connection waits for an upstream's answer. Read
    /// for HTTP/1.1 only, where one request is in flight at a time.
    waits_upstream: AtomicBool,
}

/// Marks a connection as waiting for an upstream until dropped.
pub struct WaitingUpstream<'a>(&'a ConnState);

impl Drop for WaitingUpstream<'_> {
    fn drop(&mut self) {
        self.0.waits_upstream.store(false, Ordering::Relaxed);
    }
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            opened: Instant::now(),
            last_activity: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            waits_upstream: AtomicBool::new(false),
        }
    }

    /// Until the guard is dropped, a request of this connection waits for
    /// an upstream: an HTTP/1.1 client that closes meanwhile ends it.
    pub fn wait_upstream(&self) -> WaitingUpstream<'_> {
        self.waits_upstream.store(true, Ordering::Relaxed);
        WaitingUpstream(self)
    }

    pub fn waits_upstream(&self) -> bool {
        self.waits_upstream.load(Ordering::Relaxed)
    }

    /// When the connection was accepted (before any TLS handshake).
    pub fn opened(&self) -> Instant {
        self.opened
    }

    fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last_activity.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// No activity stamp here: the end of a response is its last bytes
    /// written (a reset stream, the frame read), and `ActivityIo` stamps
    /// those.
    fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
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
    I: super::sendfile::Transport,
{
    // Counted from here, so sockets that never send a request show too.
    info.count_open(if alpn == Alpn::H2 { "h2" } else { "h1" }, &app);
    // Each protocol's future boxed: the task of an HTTP/1.1 connection
    // does not carry the size of HTTP/2's state, nor the other way round.
    if alpn == Alpn::H2 {
        Box::pin(serve_h2(io, &info, app, &limits, &drain)).await;
    } else {
        let h2c = alpn == Alpn::Any;
        let serve = super::h1::serve(io, h2c, &info, &app, &limits, &drain);
        if let Some(h2) = Box::pin(serve).await {
            let io = super::h1::upgrade::Rewind::new(h2.io, h2.read);
            Box::pin(serve_h2(io, &info, app, &limits, &drain)).await;
        }
    }
    drop(drain);
}

async fn serve_h2<I>(io: I, info: &Arc<ConnInfo>, app: Arc<App>, limits: &Limits, drain: &Drain)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(ActivityIo {
        inner: io,
        info: info.clone(),
    });
    let service_info = info.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        let info = service_info.clone();
        // Boxed per request: hyper keeps one slot for the service future
        // per connection, which an idle connection then need not hold.
        Box::pin(async move { Ok::<_, Infallible>(answer_h2(req, info, &app).await) })
    });
    let max_header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_header_list_size(max_header_list)
        .serve_connection(io, service);
    drive(conn, |c| c.graceful_shutdown(), info, limits, drain).await;
}

/// An HTTP/2 response: the request's own, or the 413 the connection
/// answered instead.
type H2Response = http::Response<Either<Observed, Body>>;

/// Answers one HTTP/2 request, its body held to `max_body_bytes` (of the
/// config in force as it starts) as they arrive (a `Content-Length` over it is refused by `service`). A body
/// that goes over before the answer gets 413, as on HTTP/1.1: the handler
/// is dropped, and the upstream request with it, the upstream having had
/// at most `max_body_bytes`. hyper then ends the stream with
/// `RST_STREAM(NO_ERROR)`, which tells the client to stop sending (RFC
/// 9113 8.1). A body that goes over after the answer fails: the upstream
/// request is cut and the client's response ends in a reset.
async fn answer_h2(req: http::Request<Incoming>, info: Arc<ConnInfo>, app: &App) -> H2Response {
    let (mut parts, body) = req.into_parts();
    let max_body = if http_body::Body::is_end_stream(&body) {
        0
    } else {
        app.max_body_bytes()
    };
    let (body, watch) = Limited::new(body, max_body);
    let Some(watch) = watch else {
        let (response, _) = super::service::handle(&mut parts, body, info, app).await;
        return response.map(Either::Left);
    };
    let refused = RefusedWith::default();
    parts.extensions.insert(refused.clone());
    let mut handler = pin!(super::service::handle(&mut parts, body, info, app));
    match watch.guard(handler.as_mut()).await {
        Ok((response, _)) => response.map(Either::Left),
        Err(e) => {
            tracing::debug!(error = %e, "request body refused");
            // Set before the handler is dropped, which logs the request
            // with what its client got.
            refused.set(Reject::BodyTooLarge.status());
            Reject::BodyTooLarge.response().map(Either::Right)
        }
    }
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
    let stop = drain.watch();
    let mut closing = drain.is_draining();
    if closing {
        shut(conn.as_mut());
    }
    let check_every =
        (limits.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut watchdog = tokio::time::interval(check_every);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %info.peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.drained(), if !closing => {
                closing = true;
                shut(conn.as_mut());
            }
            _ = watchdog.tick(), if !closing => {
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

/// Marks the connection active on every byte moved.
struct ActivityIo<I> {
    inner: I,
    info: Arc<ConnInfo>,
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for ActivityIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.info.state.touch();
        }
        result
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
