//! One request and its response over an upstream HTTP/1.1 connection,
//! driven in the task of the request that needs it (no connection task, no
//! channel between them): the request head and body go out while the
//! response head is awaited; the response body is read from the socket as
//! the client takes it, and the connection goes back to the pool when it
//! has been read to the end.
//!
//! Trailer fields pass both ways on a chunked body: a request body's
//! trailers frame is written in its last chunk, and a chunked response's
//! trailer section becomes the response body's last frame.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use smallvec::SmallVec;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::forward;
use crate::http::body::Body;
use crate::http::h1::body::{Decoded, Decoder, strip_trailers};
use crate::http::h1::encode::{BodyFraming, LAST_CHUNK, Out, last_chunk, number};
use crate::http::h1::head::{Framing, content_length, tokens};
use crate::http::raw::{RawFields, Span};

#[cfg(test)]
mod tests;

/// Largest response head accepted from an upstream, and largest trailer
/// section.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
const FEW_HEADERS: usize = 24;
const READ: usize = 16 * 1024;
/// The largest request buffer a connection keeps from one exchange to the
/// next.
const KEPT_OUT: usize = 4 * 1024;

/// A request as it goes upstream, ahead of its body: borrowed from the
/// client's request, so a retry sends the same without a copy.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// Origin form: path and query.
    pub target: &'a str,
    /// The client's fields as they go upstream (hop-by-hop removed).
    pub headers: &'a HeaderMap,
    /// Fields weir adds (forwarding, request id), after `headers`.
    pub added: &'a [(HeaderName, HeaderValue)],
}

/// An open connection to an upstream and the bytes read from it ahead.
#[derive(Debug)]
pub struct Connection {
    pub io: TcpStream,
    buf: BytesMut,
    /// Request bytes on their way out; empty between exchanges.
    out: Out,
    /// The deadline of the exchange in progress, kept from one exchange to
    /// the next: moving a registered timer later is a store, where a new
    /// one per request was an insert into the timer wheel and a removal.
    timer: Option<Pin<Box<Sleep>>>,
    /// Fields the response head's `Connection` names (hop-by-hop): kept
    /// out of its trailers. Empty, unallocated, almost always.
    named: Vec<HeaderName>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Writing or reading failed, or the upstream closed before its
    /// response head (a request body's own error comes through here too).
    #[error("upstream connection: {0}")]
    Io(#[source] std::io::Error),
    #[error("malformed response from the upstream: {0}")]
    Malformed(&'static str),
    /// No response head by the deadline.
    #[error("no response from the upstream in time")]
    TimedOut,
}

impl Connection {
    /// Boxed: a connection moves from the pool to an exchange, into the
    /// response body and back, and a pointer is quicker to move.
    pub fn new(io: TcpStream) -> Box<Connection> {
        Box::new(Connection {
            io,
            buf: BytesMut::new(),
            out: Out::default(),
            timer: None,
            named: Vec::new(),
        })
    }

    /// Whether an idle connection can take a request: nothing arrived on
    /// it since its last response (the upstream's close would have). Asks
    /// the socket only when the runtime has seen it readable.
    pub fn is_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Sends `request` and its body, and reads the response head, which
    /// must come by `deadline`. The connection is then in the response
    /// body, or handed back with a body-less response. The response's own
    /// fields come apart from it when nothing needs them in its map.
    pub async fn send(
        mut self: Box<Self>,
        request: Outgoing<'_>,
        mut body: Body,
        deadline: Instant,
    ) -> Result<(Response<()>, Option<Box<RawFields>>, ResponseBody), ExchangeError> {
        // A timer due earlier stays as it is, and is moved on if it fires
        // early (see the poll below): cheaper than a reset per request.
        let mut timer = match self.timer.take() {
            Some(mut timer) => {
                if timer.deadline() > deadline {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let head_request = *request.method == Method::HEAD;
        let mut out = std::mem::take(&mut self.out);
        let framing = request_head(&mut out.buf, request, &body);
        let mut sending = framing != BodyFraming::None;
        let mut sent = 0u64;
        let mut write_error = None;
        // Bytes ahead of this exchange (none, on a connection in good
        // order) are looked at once.
        let mut unparsed = !self.buf.is_empty();
        let head = poll_fn(|cx| {
            // Readiness changes only between polls: once a read found
            // nothing, another in the same poll would find nothing too.
            let mut drained = false;
            loop {
                let mut progress = false;
                // Request bytes out, as far as the socket takes them.
                if write_error.is_none() && !out.is_empty() {
                    match out.poll_send(&mut self.io, cx) {
                        Poll::Ready(Ok(())) => progress = true,
                        Poll::Ready(Err(e)) => write_error = Some(e),
                        Poll::Pending => {}
                    }
                }
                if sending && write_error.is_none() && out.is_empty() {
                    match Pin::new(&mut body).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => {
                            progress = true;
                            match frame.into_data() {
                                Ok(mut data) => {
                                    if let BodyFraming::Length(length) = framing {
                                        let room = length.saturating_sub(sent);
                                        data.truncate(room.min(data.len() as u64) as usize);
                                    }
                                    sent += data.len() as u64;
                                    if !data.is_empty() {
                                        out.data(data, framing);
                                    }
                                }
                                // Trailers end a chunked body, in its last
                                // chunk; a length leaves no place for them.
                                Err(frame) => {
                                    if framing == BodyFraming::Chunked
                                        && let Ok(trailers) = frame.into_trailers()
                                    {
                                        last_chunk(&mut out.buf, &trailers);
                                        sending = false;
                                    }
                                }
                            }
                        }
                        Poll::Ready(None) => {
                            progress = true;
                            sending = false;
                            match framing {
                                BodyFraming::Chunked => out.buf.extend_from_slice(LAST_CHUNK),
                                BodyFraming::Length(length) if sent < length => {
                                    write_error = Some(std::io::Error::other(
                                        "request body shorter than its Content-Length",
                                    ));
                                }
                                _ => {}
                            }
                        }
                        Poll::Ready(Some(Err(e))) => {
                            // The client's body failed: the request cannot
                            // be completed; the error says whose fault.
                            return Poll::Ready(Err(ExchangeError::Io(std::io::Error::other(e))));
                        }
                        Poll::Pending => {}
                    }
                }
                // The response head, whenever it comes (an upstream may
                // answer before the request body is through); parsed again
                // only when more of it came.
                if unparsed {
                    unparsed = false;
                    match parse_head(&mut self.buf, head_request, &mut self.named) {
                        Ok(Some(head)) => return Poll::Ready(Ok(head)),
                        Ok(None) => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                let filled = if drained {
                    Poll::Pending
                } else {
                    fill(&mut self.io, &mut self.buf, cx)
                };
                match filled {
                    Poll::Ready(Ok(0)) => {
                        let error = write_error.take().unwrap_or_else(|| {
                            std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "closed before a response head",
                            )
                        });
                        return Poll::Ready(Err(ExchangeError::Io(error)));
                    }
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        unparsed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(ExchangeError::Io(e))),
                    Poll::Pending => drained = true,
                }
                if !progress {
                    while timer.as_mut().poll(cx).is_ready() {
                        if Instant::now() >= deadline {
                            return Poll::Ready(Err(ExchangeError::TimedOut));
                        }
                        timer.as_mut().reset(deadline);
                    }
                    return Poll::Pending;
                }
            }
        })
        .await?;
        self.timer = Some(timer);
        let Head {
            response,
            fields,
            framing: response_framing,
            keep_alive,
        } = head;
        // A request body still going (the upstream answered early) or
        // failed leaves the connection in no state to reuse.
        let reusable = keep_alive && !sending && write_error.is_none() && out.is_empty();
        // The head buffer serves the next request too, unless a body made
        // it large.
        if out.buf.capacity() <= KEPT_OUT {
            out.clear();
            self.out = out;
        }
        let decoder = response_framing.map(|framing| Decoder::new(framing, MAX_HEAD));
        let length = match response_framing {
            Some(Framing::Length(n)) => Some(n),
            Some(Framing::Empty) => Some(0),
            _ => None,
        };
        let body = ResponseBody {
            conn: Some(self),
            decoder,
            reusable,
            remaining: length,
        };
        Ok((response, fields, body))
    }
}

/// What the response head said.
struct Head {
    /// Its own fields are in `fields`, or (when they must be looked at or
    /// changed on the way) in its map.
    response: Response<()>,
    fields: Option<Box<RawFields>>,
    /// `None`: read until the upstream closes.
    framing: Option<Framing>,
    keep_alive: bool,
}

/// Appends the request line and fields, and says how the body goes.
fn request_head(out: &mut Vec<u8>, request: Outgoing<'_>, body: &Body) -> BodyFraming {
    let Outgoing {
        method,
        target,
        headers,
        added,
    } = request;
    out.reserve(512);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut length = None;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            length = content_length(value.as_bytes());
            continue;
        }
        // The framing written below is this connection's own.
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        field(out, name, value);
    }
    for (name, value) in added {
        field(out, name, value);
    }
    let framing = match length.or(body.size_hint().exact()) {
        Some(0) if body.is_end_stream() && !needs_length(method) => BodyFraming::None,
        Some(0) if body.is_end_stream() => BodyFraming::Length(0),
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::Chunked,
    };
    match framing {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            number(out, n, 10);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    match framing {
        BodyFraming::Length(0) => BodyFraming::None,
        framing => framing,
    }
}

fn field(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Methods whose empty body is still announced (`Content-Length: 0`), as
/// some servers insist on one.
fn needs_length(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Parses a response head off `buf`, skipping interim (1xx but 101) ones;
/// `named` gets the field names its `Connection` lists.
fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
    named: &mut Vec<HeaderName>,
) -> Result<Option<Head>, ExchangeError> {
    named.clear();
    loop {
        // Most answers have a few fields: a small array to zero first, a
        // large one on the heap for the rare response with many.
        let mut few = [httparse::EMPTY_HEADER; FEW_HEADERS];
        let mut many;
        let mut parsed = httparse::Response::new(&mut few);
        let mut result = parsed.parse(buf);
        if let Err(httparse::Error::TooManyHeaders) = result {
            many = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
            parsed = httparse::Response::new(&mut many);
            result = parsed.parse(buf);
        }
        let len = match result {
            Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
                return Err(ExchangeError::Malformed("response head too large"));
            }
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(ExchangeError::Malformed("response head too large"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ExchangeError::Malformed("response head")),
        };
        let status = StatusCode::from_u16(parsed.code.unwrap_or(0))
            .map_err(|_| ExchangeError::Malformed("status"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            let _ = buf.split_to(len);
            continue;
        }
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let spans: SmallVec<[Span; 16]> = parsed
            .headers
            .iter()
            .map(|field| Span::within(buf, field.name.as_bytes(), field.value))
            .collect();
        let mut fields = RawFields::new(buf.split_to(len).freeze());
        let no_body = head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::SWITCHING_PROTOCOLS;
        // The fields go to the client as they came unless a rule must look
        // at them in a map: what a body-less answer says of its length, or
        // what `forward::strip_hop_by_hop` removes.
        let mut to_map = no_body;
        let mut length: Option<u64> = None;
        let mut transfer_encoding = false;
        let mut chunked = false;
        let mut close = false;
        // What HTTP/1.0 needs to keep the connection: decided after every
        // field, so that a `close` anywhere wins over a `keep-alive`.
        let mut keep_alive_asked = false;
        for span in spans {
            let name = &fields.head()[span.name()];
            let value = &fields.head()[span.value()];
            match name.len() {
                14 if name.eq_ignore_ascii_case(b"content-length") => {
                    let n =
                        content_length(value).ok_or(ExchangeError::Malformed("Content-Length"))?;
                    if length.is_some_and(|seen| seen != n) {
                        return Err(ExchangeError::Malformed("differing Content-Length"));
                    }
                    if length.is_none() {
                        fields.set_length(Some(span));
                    }
                    length = Some(n);
                    continue;
                }
                17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                    transfer_encoding = true;
                    chunked = tokens(value)
                        .next_back()
                        .is_some_and(|last| last.eq_ignore_ascii_case(b"chunked"));
                    if !chunked {
                        // Some other coding last (so far): delimited by
                        // the close, if a later field does not end in
                        // chunked after all.
                        close = true;
                    }
                    // Framing is this connection's alone: the client's side
                    // gets its own.
                    continue;
                }
                10 if name.eq_ignore_ascii_case(b"connection") => {
                    let mut names_others = false;
                    for token in tokens(value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            keep_alive_asked = true;
                        } else {
                            names_others = true;
                            if let Ok(name) = HeaderName::from_bytes(token) {
                                named.push(name);
                            }
                        }
                    }
                    // Hop-by-hop: kept only when it names fields that must
                    // go with it (`forward::strip_hop_by_hop` removes them
                    // all), or for a 101.
                    if !names_others && !no_body {
                        continue;
                    }
                    to_map = true;
                }
                10 if name.eq_ignore_ascii_case(b"keep-alive") => continue,
                2 | 7 | 16 | 18 | 19 if forward::is_hop_by_hop(name) => to_map = true,
                _ => {}
            }
            fields.push(span);
        }
        // HTTP/1.0 keeps the connection only when asked, and never after a
        // Transfer-Encoding, which HTTP/1.0 does not have: one that came
        // leaves the framing in doubt (RFC 9112 6.1).
        if version == Version::HTTP_10 && (!keep_alive_asked || transfer_encoding) {
            close = true;
        }
        // A coding weir does not decode would reach the client re-framed,
        // with nothing to say how to read it: refused, as nginx does.
        if transfer_encoding && !chunked && !no_body {
            return Err(ExchangeError::Malformed(
                "transfer coding other than chunked",
            ));
        }
        let framing = if no_body {
            Some(Framing::Empty)
        } else if transfer_encoding {
            // Transfer-Encoding wins over Content-Length (RFC 9112 6.3);
            // such a connection is not trusted again.
            if length.is_some() {
                close = true;
                fields.set_length(None);
            }
            chunked.then_some(Framing::Chunked)
        } else {
            match length {
                Some(0) => Some(Framing::Empty),
                Some(n) => Some(Framing::Length(n)),
                None => {
                    close = true;
                    None
                }
            }
        };
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = Version::HTTP_11;
        let fields = if to_map {
            fields.into_map(response.headers_mut());
            None
        } else {
            Some(Box::new(fields))
        };
        return Ok(Some(Head {
            response,
            fields,
            framing,
            keep_alive: !close && status != StatusCode::SWITCHING_PROTOCOLS,
        }));
    }
}

fn fill(
    io: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<usize>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// A response body read straight from the upstream connection.
#[derive(Debug)]
pub struct ResponseBody {
    conn: Option<Box<Connection>>,
    /// `None`: until the upstream closes.
    decoder: Option<Decoder>,
    /// The connection may be pooled once the body is read to the end.
    reusable: bool,
    remaining: Option<u64>,
}

impl ResponseBody {
    /// A body with nothing left, holding no connection.
    pub fn ended() -> ResponseBody {
        ResponseBody {
            conn: None,
            decoder: Some(Decoder::Done),
            reusable: false,
            remaining: Some(0),
        }
    }

    /// The connection back, when the body has ended and it can be reused.
    pub fn finished(&mut self) -> Option<Box<Connection>> {
        let done = self.decoder.as_ref().is_some_and(Decoder::is_done);
        if done && self.reusable {
            self.conn.take()
        } else {
            None
        }
    }

    /// The connection itself, for a `101 Switching Protocols`.
    pub fn into_upgraded(mut self) -> Option<crate::http::h1::upgrade::Rewind<TcpStream>> {
        let conn = self.conn.take()?;
        Some(crate::http::h1::upgrade::Rewind::new(
            conn.io,
            conn.buf.freeze(),
        ))
    }

    pub fn is_end_stream(&self) -> bool {
        self.decoder.as_ref().is_some_and(Decoder::is_done) || self.remaining == Some(0)
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            let decoded = match self.decoder.as_mut() {
                Some(decoder) => decoder.decode(&mut conn.buf),
                None if conn.buf.is_empty() => Ok(Decoded::More),
                None => Ok(Decoded::Data(conn.buf.split().freeze())),
            };
            match decoded {
                Ok(Decoded::Data(data)) => {
                    if let Some(remaining) = self.remaining.as_mut() {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                    }
                    if let Some(decoder) = self.decoder.as_mut()
                        && decoder.remaining() == Some(0)
                    {
                        *decoder = Decoder::Done;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::Trailers(mut trailers)) => {
                    if !conn.named.is_empty() {
                        strip_trailers(&mut trailers, &conn.named);
                    }
                    if trailers.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::trailers(*trailers))));
                }
                Ok(Decoded::More) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
            }
            match ready!(fill(&mut conn.io, &mut conn.buf, cx)) {
                Ok(0) if self.decoder.is_none() => {
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "upstream closed before the body ended",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}
