//! One request and its response over an upstream HTTP/1.1 connection,
//! driven in the task of the request that needs it (no connection task, no
//! channel between them): the request head and body go out while the
//! response head is awaited; the response body is read from the socket as
//! the client takes it, and the connection goes back to the pool when it
//! has been read to the end.

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

use crate::http::body::Body;
use crate::http::h1::body::{Decoded, Decoder};
use crate::http::h1::encode::{BodyFraming, Out, number};
use crate::http::h1::head::{Framing, content_length, tokens};

/// Largest response head accepted from an upstream.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
const FEW_HEADERS: usize = 24;
const READ: usize = 16 * 1024;
/// The largest request buffer a connection keeps from one exchange to the
/// next.
const KEPT_OUT: usize = 4 * 1024;
/// Field names remembered per connection (see `field_name`).
const REMEMBERED_NAMES: usize = 32;

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
    /// The field names of the last response head, in order.
    names: Vec<HeaderName>,
    /// The deadline of the exchange in progress, kept from one exchange to
    /// the next: moving a registered timer later is a store, where a new
    /// one per request was an insert into the timer wheel and a removal.
    timer: Option<Pin<Box<Sleep>>>,
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
            names: Vec::new(),
            timer: None,
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
    /// body, or handed back with a body-less response.
    pub async fn send(
        mut self: Box<Self>,
        request: Outgoing<'_>,
        mut body: Body,
        deadline: Instant,
    ) -> Result<(Response<()>, ResponseBody), ExchangeError> {
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
                            if let Ok(mut data) = frame.into_data() {
                                if let BodyFraming::Length(length) = framing {
                                    let room = length.saturating_sub(sent);
                                    data.truncate(room.min(data.len() as u64) as usize);
                                }
                                sent += data.len() as u64;
                                if !data.is_empty() {
                                    out.data(data, framing);
                                }
                            }
                        }
                        Poll::Ready(None) => {
                            progress = true;
                            sending = false;
                            match framing {
                                BodyFraming::Chunked => out.buf.extend_from_slice(b"0\r\n\r\n"),
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
                    match parse_head(&mut self.buf, head_request, &mut self.names) {
                        Ok(Some(head)) => return Poll::Ready(Ok(head)),
                        Ok(None) => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                match fill(&mut self.io, &mut self.buf, cx) {
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
                    Poll::Pending => {}
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
        let decoder = response_framing.map(Decoder::new);
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
        Ok((response, body))
    }
}

/// Where a field's name and value lie in the head (which is at most
/// `MAX_HEAD` long): small, as the spans are copied about on the stack.
#[derive(Debug, Clone, Copy)]
struct Span {
    name: u32,
    name_len: u32,
    value: u32,
    value_len: u32,
}

impl Span {
    fn name(self) -> std::ops::Range<usize> {
        self.name as usize..(self.name + self.name_len) as usize
    }

    fn value(self) -> std::ops::Range<usize> {
        self.value as usize..(self.value + self.value_len) as usize
    }
}

/// What the response head said.
struct Head {
    response: Response<()>,
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

/// Parses a response head off `buf`, skipping interim (1xx but 101) ones.
fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
    names: &mut Vec<HeaderName>,
) -> Result<Option<Head>, ExchangeError> {
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
        let start = buf.as_ptr() as usize;
        let count = parsed.headers.len();
        let spans: SmallVec<[Span; 16]> = parsed
            .headers
            .iter()
            .map(|field| Span {
                name: (field.name.as_ptr() as usize - start) as u32,
                name_len: field.name.len() as u32,
                value: (field.value.as_ptr() as usize - start) as u32,
                value_len: field.value.len() as u32,
            })
            .collect();
        let bytes = buf.split_to(len).freeze();
        // Room for what weir adds on the way back (X-Request-Id, cookies,
        // Alt-Svc, HSTS) without growing the map.
        let mut headers = HeaderMap::with_capacity(count + 4);
        let mut length: Option<u64> = None;
        let mut transfer_encoding = false;
        let mut chunked = false;
        let mut close = version == Version::HTTP_10;
        for (i, &span) in spans.iter().enumerate() {
            let name = field_name(names, i, &bytes[span.name()])?;
            let value = HeaderValue::from_maybe_shared(bytes.slice(span.value()))
                .map_err(|_| ExchangeError::Malformed("header value"))?;
            if name == header::CONTENT_LENGTH {
                let n = content_length(value.as_bytes())
                    .ok_or(ExchangeError::Malformed("Content-Length"))?;
                if length.is_some_and(|seen| seen != n) {
                    return Err(ExchangeError::Malformed("differing Content-Length"));
                }
                length = Some(n);
            } else if name == header::TRANSFER_ENCODING {
                transfer_encoding = true;
                chunked = tokens(value.as_bytes())
                    .next_back()
                    .is_some_and(|last| last.eq_ignore_ascii_case(b"chunked"));
                if !chunked {
                    // Some other coding last: delimited by the close.
                    close = true;
                }
                // Framing is this connection's alone: the client's side
                // gets its own.
                continue;
            } else if name == header::CONNECTION {
                let mut names_others = false;
                for token in tokens(value.as_bytes()) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        if version == Version::HTTP_10 {
                            close = false;
                        }
                    } else {
                        names_others = true;
                    }
                }
                // Hop-by-hop: kept only when it names fields that must go
                // with it (`forward::strip_hop_by_hop` removes them all).
                if !names_others {
                    continue;
                }
            } else if name.as_str() == "keep-alive" {
                continue;
            }
            headers.append(name, value);
        }
        let no_body = head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::SWITCHING_PROTOCOLS;
        let framing = if no_body {
            Some(Framing::Empty)
        } else if transfer_encoding {
            // Transfer-Encoding wins over Content-Length (RFC 9112 6.3);
            // such a connection is not trusted again.
            if length.is_some() {
                close = true;
                headers.remove(header::CONTENT_LENGTH);
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
        *response.headers_mut() = headers;
        return Ok(Some(Head {
            response,
            framing,
            keep_alive: !close && status != StatusCode::SWITCHING_PROTOCOLS,
        }));
    }
}

/// The `i`th field's name: most upstreams send the same names in the same
/// order every time, so the name at `i` in the last head is tried first
/// (a comparison where parsing a name costs several times that).
fn field_name(
    names: &mut Vec<HeaderName>,
    i: usize,
    raw: &[u8],
) -> Result<HeaderName, ExchangeError> {
    // A valid lowercase name matches only a raw name that parses to it.
    if let Some(known) = names.get(i)
        && raw.eq_ignore_ascii_case(known.as_str().as_bytes())
    {
        return Ok(known.clone());
    }
    let name = HeaderName::from_bytes(raw).map_err(|_| ExchangeError::Malformed("header name"))?;
    if i < names.len() {
        names[i] = name.clone();
    } else if i == names.len() && i < REMEMBERED_NAMES {
        names.push(name.clone());
    }
    Ok(name)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, head_request: bool) -> Result<Option<Head>, ExchangeError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_head(&mut buf, head_request, &mut Vec::new())
    }

    fn framing(raw: &str) -> (Option<Framing>, bool) {
        let head = head(raw, false).unwrap().expect("complete head");
        (head.framing, head.keep_alive)
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                (Some(Framing::Length(5)), true),
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                (Some(Framing::Empty), true),
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                (Some(Framing::Chunked), true),
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
                (Some(Framing::Chunked), false),
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", (None, false)),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
                (None, false),
            ),
            (
                "HTTP/1.1 204 No Content\r\n\r\n",
                (Some(Framing::Empty), true),
            ),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                (Some(Framing::Empty), true),
            ),
            (
                "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n",
                (Some(Framing::Length(1)), false),
            ),
            (
                "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
                (Some(Framing::Length(1)), true),
            ),
            (
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n",
                (Some(Framing::Length(1)), false),
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(framing(raw), want, "{raw:?}");
        }
        let to_head = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(to_head.framing, Some(Framing::Empty));
        assert_eq!(to_head.response.headers()["content-length"], "5");
    }

    fn names_of(head: &Head) -> Vec<&str> {
        head.response.headers().keys().map(|k| k.as_str()).collect()
    }

    #[test]
    fn names_remembered_from_the_last_head_are_only_ever_the_same_names() {
        let mut names = Vec::new();
        let mut parse = |raw: &str| {
            let mut buf = BytesMut::from(raw.as_bytes());
            parse_head(&mut buf, false, &mut names).map(|head| head.expect("complete head"))
        };
        let first =
            parse("HTTP/1.1 200 OK\r\nServer: up\r\nX-Trace: 1\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        assert_eq!(names_of(&first), ["server", "x-trace", "content-length"]);
        // Same names in another case, then other names at the same places.
        let again =
            parse("HTTP/1.1 200 OK\r\nSERVER: up\r\nx-TRACE: 2\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        assert_eq!(again.response.headers()["x-trace"], "2");
        assert_eq!(again.response.headers().len(), 3);
        let other =
            parse("HTTP/1.1 200 OK\r\nserver-timing: a\r\nx-trac: 3\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        assert_eq!(
            names_of(&other),
            ["server-timing", "x-trac", "content-length"]
        );
        // A name that is no name never passes for the one remembered.
        let mut names = vec![header::CONTENT_TYPE];
        assert!(field_name(&mut names, 0, b"content type").is_err());
        assert!(field_name(&mut names, 0, "content-typ\u{e9}".as_bytes()).is_err());
        assert_eq!(
            field_name(&mut names, 0, b"Content-Type").unwrap(),
            header::CONTENT_TYPE
        );
    }

    #[test]
    fn bad_and_interim_heads() {
        for raw in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert!(head(raw, false).is_err(), "{raw:?}");
        }
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"[..],
        );
        let created = parse_head(&mut buf, false, &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(created.response.status(), StatusCode::CREATED);
        assert_eq!(&buf[..], b"ok");
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-le", false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn responses_with_many_fields_are_read() {
        let mut raw = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..100 {
            raw.push_str(&format!("set-cookie: c{i}=v\r\n"));
        }
        raw.push_str("content-length: 0\r\n\r\n");
        let many = head(&raw, false).unwrap().unwrap();
        assert_eq!(
            many.response.headers().get_all("set-cookie").iter().count(),
            100
        );
        let mut too_many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..=MAX_HEADERS {
            too_many.push_str(&format!("x-{i}: v\r\n"));
        }
        too_many.push_str("\r\n");
        assert!(head(&too_many, false).is_err());
    }
}
