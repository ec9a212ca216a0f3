//! HTTP/1.1, served by weir itself: read a head (`head`), hand the request
//! with its body (`body`) to the request path, write the response
//! (`encode`), and either wait for the next head, close, or hand the
//! connection over (`upgrade`). An idle connection holds no buffer: reads
//! between requests go through the stack until bytes arrive.
//!
//! The connection owns its deadlines: the head's (`header_read_timeout`,
//! from accept for the first request, from its first byte for later ones;
//! 408 when part of a head came), the idle one between requests, and the
//! drain. While a request, its body read, waits for an upstream's answer,
//! a close by the client ends it (and the upstream request).

pub mod body;
pub mod encode;
pub mod head;
pub mod upgrade;

#[cfg(test)]
mod arrival;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use self::body::{BodyError, BodySender, Decoded, Decoder, Demand, IncomingBody};
use self::encode::{Asked, BodyFraming, Out};
use self::head::{Framing, Head, HeadError};
use self::upgrade::{ClientUpgrade, Upgraded};
use super::conn::ConnInfo;
use super::error::Reject;
use super::observe::{Observed, RefusedWith};
use super::raw::Beside;
use super::sendfile::{FileSlice, Transport};
use crate::app::App;
use crate::drain::{Drain, Watch};
use crate::snapshot::Limits;

/// What an HTTP/2 connection starts with (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes read at once while waiting for a head.
const HEAD_READ: usize = 4096;
/// Bytes read at once while reading a body.
const BODY_READ: usize = 16 * 1024;
/// A request body the handler left unread is skipped up to this much to
/// keep the connection; a longer one closes it.
const SKIP_UP_TO: u64 = 64 * 1024;
/// How long a refusal or a closing TLS alert may take to write.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// The connection is HTTP/2 after all: its stream and what was read of it.
pub struct SwitchToH2<I> {
    pub io: I,
    pub read: Bytes,
}

/// Serves HTTP/1.1 requests until the connection ends. With `h2c`, a first
/// read that is the HTTP/2 preface hands the connection back instead.
pub async fn serve<I>(
    io: I,
    h2c: bool,
    info: &Arc<ConnInfo>,
    app: &Arc<App>,
    limits: &Limits,
    drain: &Drain,
) -> Option<SwitchToH2<I>>
where
    I: Transport,
{
    let accepted = Instant::from_std(info.state.opened());
    let mut conn = Conn {
        io,
        buf: BytesMut::new(),
        out: Out::default(),
        drain: drain.watch(),
        draining: drain.is_draining(),
        timer: Box::pin(tokio::time::sleep_until(
            accepted + limits.header_read_timeout,
        )),
    };
    let mut first = true;
    loop {
        let head = match conn
            .next_head(first.then_some(accepted), h2c && first, limits)
            .await
        {
            Next::Head(head) => head,
            Next::Close => break,
            Next::Refuse(reject) => {
                conn.refuse(reject, app).await;
                break;
            }
            Next::H2 => {
                return Some(SwitchToH2 {
                    io: conn.io,
                    read: conn.buf.freeze(),
                });
            }
        };
        first = false;
        match conn.exchange(head, info, app, limits).await {
            Outcome::KeepAlive => {}
            Outcome::Close => break,
            Outcome::Upgrade(tx) => {
                let io: Box<dyn upgrade::Io> = Box::new(conn.io);
                let _ = tx.send(Upgraded::new(io, conn.buf.freeze()));
                return None;
            }
        }
    }
    let _ = tokio::time::timeout(LAST_WORDS, conn.io.shutdown()).await;
    None
}

// Returned once per request and never stored: boxing the head would cost
// an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(Head),
    Close,
    Refuse(Reject),
    H2,
}

enum Outcome {
    KeepAlive,
    Close,
    Upgrade(oneshot::Sender<Upgraded>),
}

/// How a request body's reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyEnd {
    Complete,
    /// The reader dropped it before the end.
    Dropped,
    /// The framing was broken (400 if nothing was answered yet).
    Malformed,
    /// Over `max_body_bytes` (413 if nothing was answered yet).
    TooLarge,
    /// The client closed, or the socket failed.
    Failed,
}

struct Conn<I> {
    io: I,
    /// Bytes read and not yet used; empty (no allocation) while idle.
    buf: BytesMut,
    out: Out,
    drain: Watch,
    draining: bool,
    /// The head and idle deadline, kept from request to request: moving
    /// a registered timer later costs a store, where a new one per
    /// request was an insert into the timer wheel and a removal.
    timer: Pin<Box<Sleep>>,
}

impl<I: Transport> Conn<I> {
    /// Waits for the next request head. `first` is when the connection was
    /// accepted, for its first request.
    async fn next_head(&mut self, first: Option<Instant>, h2c: bool, limits: &Limits) -> Next {
        if self.draining && self.buf.is_empty() {
            return Next::Close;
        }
        let mut head_since = first.or_else(|| (!self.buf.is_empty()).then(Instant::now));
        // Bytes came for a head: its clock starts if it is not whole yet (a
        // head read whole at once, as most are, reads no clock for it).
        let mut arrived = false;
        let idle_until = Instant::now() + limits.idle_timeout;
        let deadline = |since: Option<Instant>| {
            since.map_or(idle_until, |since| since + limits.header_read_timeout)
        };
        loop {
            if !self.buf.is_empty() {
                let preface = self.buf.len().min(H2_PREFACE.len());
                if h2c && self.buf[..preface] == H2_PREFACE[..preface] {
                    if preface == H2_PREFACE.len() {
                        return Next::H2;
                    }
                } else {
                    match head::parse(&mut self.buf, limits.max_header_bytes) {
                        Ok(Some(head)) => return Next::Head(head),
                        Ok(None) => {}
                        Err(HeadError::TooLarge) => return Next::Refuse(Reject::HeadTooLarge),
                        Err(e @ HeadError::Malformed(_)) => {
                            tracing::debug!(error = %e, "refused a request head");
                            return Next::Refuse(Reject::BadRequest);
                        }
                    }
                }
            }
            if arrived {
                head_since.get_or_insert_with(Instant::now);
            }
            // A timer due earlier than `due` stays as it is, and is moved
            // on when it fires early: a reset per request cost more than
            // one early firing per idle timeout.
            let due = deadline(head_since);
            if self.timer.deadline() > due {
                self.timer.as_mut().reset(due);
            }
            tokio::select! {
                biased;
                read = poll_fn(|cx| fill(&mut self.io, &mut self.buf, cx, HEAD_READ)) => match read {
                    Ok(0) | Err(_) => return Next::Close,
                    Ok(_) => arrived = true,
                },
                () = &mut self.timer => {
                    if Instant::now() < due {
                        self.timer.as_mut().reset(due);
                        continue;
                    }
                    return if self.buf.is_empty() {
                        Next::Close
                    } else {
                        Next::Refuse(Reject::HeadTimeout)
                    };
                }
                () = poll_fn(|cx| self.drain.poll_drained(cx)), if !self.draining => {
                    self.draining = true;
                    if self.buf.is_empty() {
                        return Next::Close;
                    }
                }
            }
        }
    }

    /// Whether the client closed (or its socket failed) while its request,
    /// body read, waits for an upstream's answer. Bytes that come instead
    /// (the next request, pipelined) are kept for later and end the watch:
    /// as nginx does, a close behind them is noticed only when read.
    fn client_gone(&mut self, cx: &mut Context<'_>) -> bool {
        self.buf.is_empty() && matches!(self.poll_fill(cx, HEAD_READ), Poll::Ready(Ok(0) | Err(_)))
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>, size: usize) -> Poll<std::io::Result<usize>> {
        fill(&mut self.io, &mut self.buf, cx, size)
    }

    /// Writes a refusal (counted among requests no route took) and lets
    /// the connection end.
    async fn refuse(&mut self, reject: Reject, app: &App) {
        app.metrics.unrouted().observe(reject.status().as_u16());
        self.out.buf.extend_from_slice(&reject.http1_bytes());
        let send = poll_fn(|cx| {
            ready!(self.out.poll_send(&mut self.io, cx))?;
            Pin::new(&mut self.io).poll_flush(cx)
        });
        let _ = tokio::time::timeout(LAST_WORDS, send).await;
    }

    /// One request and its response.
    async fn exchange(
        &mut self,
        head: Head,
        info: &Arc<ConnInfo>,
        app: &Arc<App>,
        limits: &Limits,
    ) -> Outcome {
        let Head {
            mut parts,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
        } = head;
        if framing == Framing::Chunked
            && let Err(e) = Decoder::new(framing, limits.max_header_bytes).check(&self.buf)
        {
            tracing::debug!(error = %e, "request body refused");
            self.refuse(Reject::BadRequest, app).await;
            return Outcome::Close;
        }
        let asked = Asked {
            head: parts.method == http::Method::HEAD,
            version: parts.version,
            keep_alive,
        };
        let (body, sender) = match framing {
            Framing::Empty => (IncomingBody::empty(), None),
            framing => {
                let (body, sender) = IncomingBody::channel(framing);
                if framing == Framing::Chunked {
                    let named = body::connection_named(&parts.headers);
                    if !named.is_empty() {
                        sender.not_in_trailers(named);
                    }
                }
                (body, Some(sender))
            }
        };
        // Only a request with a body can be refused while its handler runs.
        let refused = sender.is_some().then(|| {
            let refused = RefusedWith::default();
            parts.extensions.insert(refused.clone());
            refused
        });
        // An upgrade with a body is served as a plain request: the bytes
        // after its head are body, not the new protocol's.
        let handover = (upgrade && framing == Framing::Empty).then(|| {
            let (tx, upgrade) = ClientUpgrade::pair();
            parts.extensions.insert(upgrade);
            tx
        });
        let handler = Box::pin(super::service::handle(&mut parts, body, info.clone(), app));
        let mut exchange = Exchange {
            phase: Phase::Handler(handler),
            decoder: Decoder::new(framing, limits.max_header_bytes),
            sender,
            body_end: (framing == Framing::Empty).then_some(BodyEnd::Complete),
            continue_due: expect_continue,
            body_limit: match framing {
                Framing::Empty => limits.max_body_bytes,
                _ => app.max_body_bytes(),
            },
            received: 0,
            asked,
            keep_alive: false,
            broken: false,
            switching: false,
            refused,
            info,
        };
        let upgraded = poll_fn(|cx| exchange.poll(self, cx)).await;
        if exchange.broken {
            return Outcome::Close;
        }
        if upgraded {
            return match handover {
                Some(tx) => Outcome::Upgrade(tx),
                None => Outcome::Close,
            };
        }
        if !exchange.keep_alive || self.draining || self.drain.is_draining() {
            return Outcome::Close;
        }
        match exchange.body_end {
            Some(BodyEnd::Complete) => {}
            Some(BodyEnd::Malformed | BodyEnd::TooLarge | BodyEnd::Failed) => {
                return Outcome::Close;
            }
            // Unread: skip a short rest the client is already sending, so
            // the connection can be reused; close on anything longer (or a
            // client still waiting for `100 Continue`).
            None | Some(BodyEnd::Dropped) => {
                drop(exchange.sender.take());
                let short = exchange.decoder.remaining().is_none_or(|n| n <= SKIP_UP_TO);
                if exchange.continue_due || !short {
                    return Outcome::Close;
                }
                let skip = self.skip(&mut exchange.decoder);
                match tokio::time::timeout(limits.header_read_timeout, skip).await {
                    Ok(true) => {}
                    _ => return Outcome::Close,
                }
            }
        }
        self.out.release();
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        Outcome::KeepAlive
    }

    /// Reads and drops the rest of a body; false when it is longer than
    /// `SKIP_UP_TO` or broken.
    async fn skip(&mut self, decoder: &mut Decoder) -> bool {
        let mut skipped = 0u64;
        loop {
            match decoder.decode(&mut self.buf) {
                Ok(Decoded::Data(data)) => {
                    skipped += data.len() as u64;
                    if skipped > SKIP_UP_TO {
                        return false;
                    }
                }
                Ok(Decoded::End | Decoded::Trailers(_)) => return true,
                Ok(Decoded::More) => match poll_fn(|cx| self.poll_fill(cx, BODY_READ)).await {
                    Ok(0) | Err(_) => return false,
                    Ok(_) => {}
                },
                Err(_) => return false,
            }
        }
    }

    /// Feeds the request body as its reader asks; ready when it has ended
    /// one way or another.
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        sender: &BodySender,
        decoder: &mut Decoder,
        continue_due: &mut bool,
        answered: bool,
        (received, limit): (&mut u64, u64),
    ) -> Poll<BodyEnd> {
        loop {
            match sender.demand(cx) {
                Demand::Gone => return Poll::Ready(BodyEnd::Dropped),
                Demand::Waiting => return Poll::Pending,
                Demand::Frame => {}
            }
            if std::mem::take(continue_due) && !answered {
                self.out
                    .buf
                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            match decoder.decode(&mut self.buf) {
                Ok(Decoded::Data(data)) => {
                    *received += data.len() as u64;
                    if *received > limit {
                        sender.send(Err(BodyError::TooLarge), true);
                        return Poll::Ready(BodyEnd::TooLarge);
                    }
                    let ended = decoder.remaining() == Some(0);
                    if ended {
                        *decoder = Decoder::Done;
                    }
                    sender.send(Ok(data), ended);
                    if ended {
                        return Poll::Ready(BodyEnd::Complete);
                    }
                }
                Ok(Decoded::End) => {
                    sender.end();
                    return Poll::Ready(BodyEnd::Complete);
                }
                Ok(Decoded::Trailers(trailers)) => {
                    sender.trailers(trailers);
                    return Poll::Ready(BodyEnd::Complete);
                }
                Ok(Decoded::More) => {
                    // A `100 Continue` goes out before waiting for the body.
                    if !self.out.is_empty() && !answered {
                        let _ = self.out.poll_send(&mut self.io, cx);
                    }
                    match ready!(self.poll_fill(cx, BODY_READ)) {
                        Ok(0) => {
                            sender.send(Err(BodyError::Truncated), true);
                            return Poll::Ready(BodyEnd::Failed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            sender.send(Err(BodyError::Io(e.to_string())), true);
                            return Poll::Ready(BodyEnd::Failed);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "request body refused");
                    sender.send(Err(e), true);
                    return Poll::Ready(BodyEnd::Malformed);
                }
            }
        }
    }
}

/// Reads more into `buf`. An empty buffer reads through the stack so that
/// a connection waiting for bytes holds no allocation.
fn fill<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
    size: usize,
) -> Poll<std::io::Result<usize>> {
    if buf.is_empty() && size <= HEAD_READ {
        // Uninitialised: zeroing 4 KiB per read cost a fifth of a proxied
        // request's instructions.
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); HEAD_READ];
        let mut read = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
        *buf = BytesMut::from(read.filled());
        return Poll::Ready(Ok(read.filled().len()));
    }
    if buf.capacity() - buf.len() < size / 4 {
        buf.reserve(size);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

type Handler<'a> = Pin<Box<dyn Future<Output = (Response<Observed>, Beside)> + Send + 'a>>;

enum Phase<'a> {
    /// Waiting for the request path's response.
    Handler(Handler<'a>),
    /// Writing its body.
    Body {
        body: Observed,
        framing: BodyFraming,
        /// Body bytes queued so far.
        sent: u64,
        /// The body's bytes as a file the kernel can send.
        file: Option<FileSlice>,
    },
    /// Sending what is queued; then the exchange is over.
    Flush,
    Done,
}

struct Exchange<'a> {
    phase: Phase<'a>,
    decoder: Decoder,
    sender: Option<BodySender>,
    body_end: Option<BodyEnd>,
    continue_due: bool,
    /// `max_body_bytes`, and the body bytes read so far (a chunked body
    /// has no length to check up front).
    body_limit: u64,
    received: u64,
    asked: Asked,
    /// Decided when the head is written.
    keep_alive: bool,
    /// The response could not be completed: the connection must close.
    broken: bool,
    /// The response was `101 Switching Protocols`.
    switching: bool,
    /// Where a refusal's status goes for the access log.
    refused: Option<RefusedWith>,
    info: &'a ConnInfo,
}

impl Exchange<'_> {
    /// Drives the request body, the handler and the response together (a
    /// proxied upload streams while its response may already be coming).
    /// Ready with whether the connection switched protocols.
    fn poll<I: Transport>(&mut self, conn: &mut Conn<I>, cx: &mut Context<'_>) -> Poll<bool> {
        loop {
            let answered = !matches!(self.phase, Phase::Handler(_));
            if let Some(sender) = &self.sender
                && let Poll::Ready(end) = conn.poll_body(
                    cx,
                    sender,
                    &mut self.decoder,
                    &mut self.continue_due,
                    answered,
                    (&mut self.received, self.body_limit),
                )
            {
                self.sender = None;
                self.body_end = Some(end);
                let refusal = match end {
                    BodyEnd::Malformed => Some(Reject::BadRequest),
                    BodyEnd::TooLarge => Some(Reject::BodyTooLarge),
                    _ => None,
                };
                if let Some(reject) = refusal
                    && !answered
                {
                    // Nothing answered yet: the request is refused whole
                    // (the handler, and any upstream request, dropped).
                    if let Some(refused) = &self.refused {
                        refused.set(reject.status());
                    }
                    conn.out.clear();
                    conn.out.buf.extend_from_slice(&reject.http1_bytes());
                    self.broken = true;
                    self.phase = Phase::Flush;
                }
            }
            match &mut self.phase {
                Phase::Handler(handler) => {
                    if !conn.out.is_empty()
                        && let Poll::Ready(Err(_)) = conn.out.poll_send(&mut conn.io, cx)
                    {
                        self.broken = true;
                        return Poll::Ready(false);
                    }
                    let Poll::Ready((response, beside)) = handler.as_mut().poll(cx) else {
                        // A client that closes while its request waits for
                        // an upstream takes the handler with it, and the
                        // upstream request (logged as 499). Files are
                        // quick: a client that half-closed gets its file.
                        if self.sender.is_none()
                            && self.info.state.waits_upstream()
                            && conn.client_gone(cx)
                        {
                            self.phase = Phase::Done;
                            self.broken = true;
                            return Poll::Ready(false);
                        }
                        return Poll::Pending;
                    };
                    self.start(conn, response, beside);
                }
                Phase::Body {
                    body,
                    framing,
                    sent,
                    file,
                } => {
                    if conn.out.is_full() && ready!(conn.out.poll_send(&mut conn.io, cx)).is_err() {
                        self.broken = true;
                        return Poll::Ready(false);
                    }
                    match Pin::new(&mut *body).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                            Ok(mut data) => {
                                if data.is_empty() {
                                    continue;
                                }
                                // Never more than the Content-Length sent:
                                // the rest would read as the next response.
                                if let BodyFraming::Length(length) = *framing {
                                    let room = length.saturating_sub(*sent);
                                    if data.len() as u64 > room {
                                        data.truncate(room as usize);
                                        self.broken = true;
                                    }
                                }
                                *sent += data.len() as u64;
                                match file.take() {
                                    Some(slice) if slice.is(&data) => conn.out.file(slice),
                                    _ => conn.out.data(data, *framing),
                                }
                                if self.broken {
                                    self.phase = Phase::Flush;
                                }
                            }
                            // Trailers go in the last chunk of a chunked
                            // answer, and end it; a length or a close
                            // delimits a body with no place for them.
                            Err(frame) => {
                                if *framing == BodyFraming::Chunked
                                    && let Ok(trailers) = frame.into_trailers()
                                {
                                    encode::last_chunk(&mut conn.out.buf, &trailers);
                                    self.phase = Phase::Flush;
                                }
                            }
                        },
                        Poll::Ready(None) => {
                            match *framing {
                                BodyFraming::Chunked => {
                                    conn.out.buf.extend_from_slice(encode::LAST_CHUNK);
                                }
                                // Short of its length: only a close tells
                                // the client the body is incomplete.
                                BodyFraming::Length(length) if *sent < length => {
                                    self.broken = true;
                                }
                                _ => {}
                            }
                            self.phase = Phase::Flush;
                        }
                        Poll::Ready(Some(Err(e))) => {
                            tracing::debug!(error = %e, "response body failed");
                            self.broken = true;
                            self.phase = Phase::Flush;
                        }
                        Poll::Pending => {
                            // Send what there is while the body waits.
                            if ready!(conn.out.poll_send(&mut conn.io, cx)).is_err()
                                || ready!(Pin::new(&mut conn.io).poll_flush(cx)).is_err()
                            {
                                self.broken = true;
                                return Poll::Ready(false);
                            }
                            return Poll::Pending;
                        }
                    }
                }
                Phase::Flush => {
                    let sent = ready!(conn.out.poll_send(&mut conn.io, cx));
                    if sent.is_err() || ready!(Pin::new(&mut conn.io).poll_flush(cx)).is_err() {
                        self.broken = true;
                    }
                    self.phase = Phase::Done;
                    return Poll::Ready(self.switching && !self.broken);
                }
                Phase::Done => return Poll::Ready(self.switching && !self.broken),
            }
        }
    }

    /// Queues the response head (with the fields `beside` its map) and
    /// moves on to its body.
    fn start<I: Transport>(
        &mut self,
        conn: &mut Conn<I>,
        mut response: Response<Observed>,
        mut beside: Beside,
    ) {
        // An interim answer in place of a final one would leave the client
        // waiting for the real one: only 101 leaves the handler as 1xx.
        if response.status().is_informational()
            && response.status() != StatusCode::SWITCHING_PROTOCOLS
        {
            let (parts, body) = Reject::UpstreamFailed.response().into_parts();
            let mut observed = response.into_body();
            observed.replace(body);
            response = Response::from_parts(parts, observed);
            beside.fields = None;
        }
        let (mut parts, body) = response.into_parts();
        let draining = conn.draining || conn.drain.is_draining();
        let asked = Asked {
            keep_alive: self.asked.keep_alive && !draining,
            ..self.asked
        };
        let (framing, keep_alive) =
            encode::plan(parts.status, &mut parts.headers, &body.size_hint(), asked);
        // A request body nobody has asked for yet, on a client waiting for
        // `100 Continue`, will not come: the connection closes after this.
        self.keep_alive = keep_alive && !(self.continue_due && self.body_end.is_none());
        self.switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        conn.out.reserve(1024);
        encode::head(
            &mut conn.out.buf,
            parts.status,
            &beside,
            &parts.headers,
            framing,
            self.keep_alive,
            asked,
        );
        let file = match framing {
            BodyFraming::Length(_) if conn.io.sends_files() => parts.extensions.remove(),
            _ => None,
        };
        self.phase = match framing {
            BodyFraming::None => Phase::Flush,
            framing => Phase::Body {
                body,
                framing,
                sent: 0,
                file,
            },
        };
    }
}
