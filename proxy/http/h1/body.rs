//! A request body on its way from the connection to whoever reads it (a
//! site, or an upstream connection in another task): the framing decoder,
//! and a one-frame slot that hands data over only when the reader asks, so
//! the connection reads from the socket no faster than the body is used.
//!
//! A chunked body's trailer fields (RFC 9112 7.1.2) come out of the decoder
//! as one map after the data, within a size limit (the head's), without
//! the fields no trailer may carry on from here (see `allowed_in_trailers`).
//! Only the chunked coding's last chunk looks for them: a body without
//! trailers costs nothing more.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};

use super::head::Framing;

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: u16 = 4096;
/// Trailer fields a trailer section may carry, as a head may.
pub const MAX_TRAILER_FIELDS: usize = super::head::MAX_HEADERS;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("the client closed the connection before the body ended")]
    Truncated,
    #[error("reading the request body failed: {0}")]
    Io(String),
    #[error("the connection moved on before the body was read")]
    Abandoned,
    #[error("the request body is over max_body_bytes")]
    TooLarge,
}

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// Needs more bytes from the socket.
    More,
    End,
    /// The end of a chunked body that had trailer fields (boxed: the
    /// common answers stay small). The decoder is done.
    Trailers(Box<HeaderMap>),
}

/// Framing state of the body being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    Chunked {
        at: Chunk,
        /// The longest trailer section accepted, in bytes.
        max_trailers: u32,
    },
    Done,
}

/// Where in the chunked coding the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size {
        value: u64,
        digits: u8,
        line: u16,
    },
    Extension {
        value: u64,
        line: u16,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section, `seen` bytes into it (they stay in the
    /// buffer until the section is whole); `line_start` after each CRLF.
    Trailers {
        seen: u32,
        line_start: bool,
    },
    TrailersCr {
        seen: u32,
        last: bool,
    },
}

impl Chunk {
    /// Bytes of the trailer section looked at so far, when in it.
    fn trailer_bytes(self) -> Option<usize> {
        match self {
            Chunk::Trailers { seen, .. } | Chunk::TrailersCr { seen, .. } => Some(seen as usize),
            _ => None,
        }
    }
}

impl Decoder {
    /// A decoder of a body framed as `framing`; a chunked one accepts a
    /// trailer section of up to `max_trailers` bytes (the head's limit).
    pub fn new(framing: Framing, max_trailers: usize) -> Decoder {
        match framing {
            Framing::Empty => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked {
                at: Chunk::Size {
                    value: 0,
                    digits: 0,
                    line: 0,
                },
                max_trailers: u32::try_from(max_trailers).unwrap_or(u32::MAX),
            },
        }
    }

    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// Bytes still to come when the framing says (Content-Length).
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            Decoder::Chunked { .. } => None,
        }
    }

    /// Checks the framing in bytes already read, without taking them: a
    /// malformed chunked body that arrived with its head is refused before
    /// the request goes anywhere. `bytes` start where the body does.
    pub fn check(mut self, bytes: &[u8]) -> Result<(), BodyError> {
        let mut i = 0;
        while i < bytes.len() {
            match &mut self {
                Decoder::Chunked {
                    at: Chunk::Data(n), ..
                } => {
                    let skip = (*n).min((bytes.len() - i) as u64);
                    *n -= skip;
                    if *n == 0 {
                        self.data_read();
                    }
                    i += skip as usize;
                }
                Decoder::Chunked { at, max_trailers } => {
                    match step(*at, bytes[i], *max_trailers)? {
                        Some(next) => *at = next,
                        None => {
                            // The whole trailer section is here: its fields
                            // must read as they will when decoded.
                            let start = i - at.trailer_bytes().unwrap_or(i);
                            trailer_fields(&bytes[start..=i])?;
                            return Ok(());
                        }
                    }
                    i += 1;
                }
                Decoder::Length(_) | Decoder::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// Takes the next piece of body out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        loop {
            match self {
                Decoder::Done => return Ok(Decoded::End),
                Decoder::Length(0) => {
                    *self = Decoder::Done;
                    return Ok(Decoded::End);
                }
                Decoder::Length(n) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = (*n).min(buf.len() as u64) as usize;
                    *n -= take as u64;
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                Decoder::Chunked {
                    at: Chunk::Data(n), ..
                } => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = (*n).min(buf.len() as u64) as usize;
                    *n -= take as u64;
                    if *n == 0 {
                        self.data_read();
                    }
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                Decoder::Chunked {
                    at: Chunk::Trailers { .. } | Chunk::TrailersCr { .. },
                    ..
                } => return self.trailers(buf),
                Decoder::Chunked { at, max_trailers } => {
                    let Some(&byte) = buf.first() else {
                        return Ok(Decoded::More);
                    };
                    buf.advance(1);
                    match step(*at, byte, *max_trailers)? {
                        Some(next) => *at = next,
                        // Only the trailer section ends a body (above).
                        None => {
                            *self = Decoder::Done;
                            return Ok(Decoded::End);
                        }
                    }
                }
            }
        }
    }

    /// A chunk's data has all been read: its CRLF comes next.
    fn data_read(&mut self) {
        if let Decoder::Chunked { at, .. } = self {
            *at = Chunk::DataCr;
        }
    }

    /// The trailer section: looked through where it lies at the front of
    /// `buf`, and taken once whole (nothing is copied or allocated while
    /// it arrives; its limit bounds what waits). The usual empty one is
    /// just its CRLF.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        let Decoder::Chunked { at, max_trailers } = self else {
            return Ok(Decoded::End);
        };
        loop {
            let seen = at.trailer_bytes().unwrap_or(0);
            let Some(&byte) = buf.get(seen) else {
                return Ok(Decoded::More);
            };
            match step(*at, byte, *max_trailers)? {
                Some(next) => *at = next,
                None => {
                    let fields = trailer_fields(&buf[..=seen])?;
                    buf.advance(seen + 1);
                    *self = Decoder::Done;
                    return Ok(match fields {
                        Some(fields) => Decoded::Trailers(Box::new(fields)),
                        None => Decoded::End,
                    });
                }
            }
        }
    }
}

/// The fields of a whole trailer section (`section` ends with its empty
/// line), without those `allowed_in_trailers` refuses; `None` when none
/// are left. Fields that do not parse as a head's would are an error.
fn trailer_fields(section: &[u8]) -> Result<Option<HeaderMap>, BodyError> {
    if section == b"\r\n" {
        return Ok(None);
    }
    let bad = |what| Err(BodyError::Chunked(what));
    let mut parsed = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let fields = match httparse::parse_headers(section, &mut parsed) {
        Ok(httparse::Status::Complete((len, fields))) if len == section.len() => fields,
        Err(httparse::Error::TooManyHeaders) => return bad("too many trailer fields"),
        _ => return bad("trailer field"),
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for field in fields.iter() {
        let Ok(name) = HeaderName::from_bytes(field.name.as_bytes()) else {
            return bad("trailer field name");
        };
        let Ok(value) = HeaderValue::from_bytes(field.value) else {
            return bad("trailer field value");
        };
        map.append(name, value);
    }
    // Fields a `Connection` trailer names are this hop's too.
    let named = connection_named(&map);
    strip_trailers(&mut map, &named);
    Ok((!map.is_empty()).then_some(map))
}

/// Names no trailer field carries on from here, whoever sent it: what
/// frames the message, routes it, manages the connection (the hop-by-hop
/// fields; HTTP/2 refuses them outright), says how to read the content,
/// authenticates, or what weir itself says of the request on its way
/// upstream. A recipient that merged trailers into the head (RFC 9110
/// 6.5.1 lets it, for fields defined to allow it) could otherwise be told
/// these late, past the checks made on the head.
static DENIED_IN_TRAILERS: [HeaderName; 24] = [
    // Framing.
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::TRAILER,
    // Routing and request modifiers.
    header::HOST,
    header::EXPECT,
    header::MAX_FORWARDS,
    header::TE,
    // Connection management.
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    // How to read the content.
    header::CONTENT_ENCODING,
    header::CONTENT_TYPE,
    header::CONTENT_RANGE,
    // Authentication and state.
    header::AUTHORIZATION,
    header::COOKIE,
    header::SET_COOKIE,
    // What weir sets on the head.
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-request-id"),
];

/// Whether a trailer field named `name` may go on (see
/// `DENIED_IN_TRAILERS`).
pub fn allowed_in_trailers(name: &HeaderName) -> bool {
    !DENIED_IN_TRAILERS.contains(name)
}

/// The field names the `Connection` fields of `headers` list (its
/// options `close`, `keep-alive` and `upgrade` aside): hop-by-hop, so
/// not for trailers either. Empty, without an allocation, when none.
pub fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| super::head::tokens(value.as_bytes()))
        .filter(|token| {
            !token.is_empty()
                && !token.eq_ignore_ascii_case(b"close")
                && !token.eq_ignore_ascii_case(b"keep-alive")
                && !token.eq_ignore_ascii_case(b"upgrade")
        })
        .filter_map(|token| HeaderName::from_bytes(token).ok())
        .collect()
}

/// Removes from trailer fields `map` what may not go on: the names
/// `allowed_in_trailers` refuses, and `named` (those a `Connection` field
/// lists).
pub fn strip_trailers(map: &mut HeaderMap, named: &[HeaderName]) {
    for name in DENIED_IN_TRAILERS.iter().chain(named) {
        map.remove(name);
    }
}

/// One byte of chunked framing; `None` once the body has ended (at the
/// end of its trailer section, of at most `max_trailers` bytes).
fn step(state: Chunk, byte: u8, max_trailers: u32) -> Result<Option<Chunk>, BodyError> {
    let bad = |what| Err(BodyError::Chunked(what));
    let next = match state {
        Chunk::Size {
            value,
            digits,
            line,
        } => {
            if let Some(digit) = (byte as char).to_digit(16) {
                if digits >= 16 {
                    return bad("chunk size too long");
                }
                Chunk::Size {
                    value: value << 4 | u64::from(digit),
                    digits: digits + 1,
                    line: line + 1,
                }
            } else if digits == 0 {
                return bad("chunk size");
            } else if byte == b';' {
                Chunk::Extension { value, line }
            } else if byte == b'\r' {
                Chunk::SizeLf { value }
            } else {
                return bad("chunk size");
            }
        }
        Chunk::Extension { value, line } => {
            if line >= MAX_CHUNK_LINE {
                return bad("chunk extension too long");
            }
            match byte {
                b'\r' => Chunk::SizeLf { value },
                b'\t' | b' '..=b'~' | 0x80.. => Chunk::Extension {
                    value,
                    line: line + 1,
                },
                _ => return bad("chunk extension"),
            }
        }
        Chunk::SizeLf { value } => match byte {
            b'\n' if value == 0 => Chunk::Trailers {
                seen: 0,
                line_start: true,
            },
            b'\n' => Chunk::Data(value),
            _ => return bad("chunk size line end"),
        },
        // `decode` takes data in bulk and never steps through it.
        Chunk::Data(_) => return bad("data read byte by byte"),
        Chunk::DataCr => match byte {
            b'\r' => Chunk::DataLf,
            _ => return bad("chunk data not followed by CRLF"),
        },
        Chunk::DataLf => match byte {
            b'\n' => Chunk::Size {
                value: 0,
                digits: 0,
                line: 0,
            },
            _ => return bad("chunk data not followed by CRLF"),
        },
        Chunk::Trailers { seen, line_start } => {
            if seen >= max_trailers {
                return bad("trailers too long");
            }
            match byte {
                b'\r' => Chunk::TrailersCr {
                    seen: seen.saturating_add(1),
                    last: line_start,
                },
                b'\n' => return bad("bare LF in trailers"),
                _ => Chunk::Trailers {
                    seen: seen.saturating_add(1),
                    line_start: false,
                },
            }
        }
        // Counted to its last byte: a section of `max_trailers` passes.
        Chunk::TrailersCr { seen, .. } if seen >= max_trailers => {
            return bad("trailers too long");
        }
        Chunk::TrailersCr { seen, last } => match byte {
            b'\n' if last => return Ok(None),
            b'\n' => Chunk::Trailers {
                seen: seen.saturating_add(1),
                line_start: true,
            },
            _ => return bad("trailer line end"),
        },
    };
    Ok(Some(next))
}

/// The hand-over point between the connection and the body's reader.
#[derive(Debug, Default)]
struct Slot {
    frame: Option<Result<Bytes, BodyError>>,
    /// The trailer fields, after `frame`; the body has ended.
    trailers: Option<Box<HeaderMap>>,
    /// Fields the request head's `Connection` names: not for trailers.
    named: Vec<HeaderName>,
    /// No frame follows the one in `frame` (or none at all).
    ended: bool,
    /// The connection stopped feeding the body before its end: after the
    /// frame in `frame`, the reader gets an error, never a clean end.
    abandoned: bool,
    /// The reader asked for a frame and has not got one.
    wanted: bool,
    reader_gone: bool,
    reader: Option<Waker>,
    conn: Option<Waker>,
}

fn lock(shared: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The request body as the request path sees it.
#[derive(Debug)]
pub struct IncomingBody {
    shared: Option<Arc<Mutex<Slot>>>,
    /// Bytes still to come when Content-Length said.
    remaining: Option<u64>,
}

impl IncomingBody {
    pub fn empty() -> IncomingBody {
        IncomingBody {
            shared: None,
            remaining: Some(0),
        }
    }

    /// A body fed by the returned sender.
    pub fn channel(framing: Framing) -> (IncomingBody, BodySender) {
        let shared = Arc::new(Mutex::new(Slot::default()));
        let remaining = match framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(n),
            Framing::Chunked => None,
        };
        (
            IncomingBody {
                shared: Some(shared.clone()),
                remaining,
            },
            BodySender { shared },
        )
    }
}

impl http_body::Body for IncomingBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(shared) = &self.shared else {
            return Poll::Ready(None);
        };
        let mut slot = lock(shared);
        if let Some(frame) = slot.frame.take() {
            if let Some(conn) = slot.conn.take() {
                conn.wake();
            }
            drop(slot);
            if let (Ok(data), Some(remaining)) = (&frame, self.remaining.as_mut()) {
                *remaining = remaining.saturating_sub(data.len() as u64);
            }
            return Poll::Ready(Some(frame.map(Frame::data)));
        }
        if let Some(trailers) = slot.trailers.take() {
            drop(slot);
            self.shared = None;
            return Poll::Ready(Some(Ok(Frame::trailers(*trailers))));
        }
        if slot.abandoned {
            drop(slot);
            self.shared = None;
            return Poll::Ready(Some(Err(BodyError::Abandoned)));
        }
        if slot.ended {
            drop(slot);
            self.shared = None;
            return Poll::Ready(None);
        }
        slot.wanted = true;
        slot.reader = Some(cx.waker().clone());
        if let Some(conn) = slot.conn.take() {
            conn.wake();
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.shared.is_none() || self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for IncomingBody {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            let mut slot = lock(shared);
            slot.reader_gone = true;
            if let Some(conn) = slot.conn.take() {
                conn.wake();
            }
        }
    }
}

/// The connection's side of an `IncomingBody`.
#[derive(Debug)]
pub struct BodySender {
    shared: Arc<Mutex<Slot>>,
}

/// What the reader of a body wants from the connection now.
#[derive(Debug, PartialEq, Eq)]
pub enum Demand {
    /// A frame: read and decode one.
    Frame,
    /// Nothing until it takes the frame it has (the waker is kept).
    Waiting,
    /// The reader dropped the body.
    Gone,
}

impl BodySender {
    pub fn demand(&self, cx: &mut Context<'_>) -> Demand {
        let mut slot = lock(&self.shared);
        if slot.reader_gone {
            Demand::Gone
        } else if slot.wanted && slot.frame.is_none() {
            Demand::Frame
        } else {
            slot.conn = Some(cx.waker().clone());
            Demand::Waiting
        }
    }

    /// Whether the reader has asked for data yet (for `100 Continue`).
    pub fn wanted(&self) -> bool {
        lock(&self.shared).wanted
    }

    pub fn send(&self, frame: Result<Bytes, BodyError>, ended: bool) {
        let mut slot = lock(&self.shared);
        slot.frame = Some(frame);
        slot.ended = ended;
        slot.wanted = false;
        if let Some(reader) = slot.reader.take() {
            reader.wake();
        }
    }

    /// Trailer fields the head's `Connection` names are dropped too (for
    /// a chunked body; asked before any trailers arrive).
    pub fn not_in_trailers(&self, named: Vec<HeaderName>) {
        lock(&self.shared).named = named;
    }

    /// Ends the body with its trailer fields (as `strip_trailers` leaves
    /// them; the end alone when none are left).
    pub fn trailers(&self, mut trailers: Box<HeaderMap>) {
        let mut slot = lock(&self.shared);
        if !slot.named.is_empty() {
            strip_trailers(&mut trailers, &slot.named);
        }
        if !trailers.is_empty() {
            slot.trailers = Some(trailers);
        }
        slot.ended = true;
        slot.wanted = false;
        if let Some(reader) = slot.reader.take() {
            reader.wake();
        }
    }

    pub fn end(&self) {
        let mut slot = lock(&self.shared);
        slot.ended = true;
        slot.wanted = false;
        if let Some(reader) = slot.reader.take() {
            reader.wake();
        }
    }
}

impl Drop for BodySender {
    /// A body the connection stopped feeding before its end fails rather
    /// than looking complete.
    fn drop(&mut self) {
        let mut slot = lock(&self.shared);
        if !slot.ended {
            slot.abandoned = true;
            slot.ended = true;
            if let Some(reader) = slot.reader.take() {
                reader.wake();
            }
        }
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(framing: Framing, raw: &[u8]) -> Result<(Vec<u8>, usize), BodyError> {
        decode_with_trailers(framing, raw).map(|(body, left, _)| (body, left))
    }

    /// The body, the bytes left after it, and its trailer fields.
    fn decode_with_trailers(
        framing: Framing,
        raw: &[u8],
    ) -> Result<(Vec<u8>, usize, Option<HeaderMap>), BodyError> {
        let mut decoder = Decoder::new(framing, 16 * 1024);
        let mut buf = BytesMut::from(raw);
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::More => return Err(BodyError::Truncated),
                Decoded::End => return Ok((body, buf.len(), None)),
                Decoded::Trailers(trailers) => return Ok((body, buf.len(), Some(*trailers))),
            }
        }
    }

    fn fields(map: &HeaderMap) -> Vec<(&str, &[u8])> {
        map.iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect()
    }

    #[test]
    fn trailer_fields_come_after_the_data_without_those_that_may_not_go_on() {
        let raw = b"5\r\nhello\r\n0\r\nX-Checksum:  42 \r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nHost: evil\r\nConnection: x-hop\r\nX-Hop: 1\r\nX-Forwarded-For: 1.2.3.4\r\nGrpc-Status: 0\r\nx-checksum: 43\r\n\r\nNEXT";
        let (body, left, trailers) = decode_with_trailers(Framing::Chunked, raw).unwrap();
        assert_eq!((body.as_slice(), left), (&b"hello"[..], 4));
        let trailers = trailers.expect("trailers");
        assert_eq!(
            fields(&trailers),
            [
                ("x-checksum", &b"42"[..]),
                ("x-checksum", b"43"),
                ("grpc-status", b"0")
            ]
        );
        // Only denied fields: the body just ends.
        let (_, _, none) =
            decode_with_trailers(Framing::Chunked, b"0\r\nContent-Length: 1\r\nTE: x\r\n\r\n")
                .unwrap();
        assert_eq!(none, None);
        assert!(
            Decoder::new(Framing::Chunked, 1024)
                .check(b"0\r\nx: 1\r\nbad field\r\n\r\n")
                .is_err()
        );
    }

    #[test]
    fn a_trailer_section_waits_in_the_buffer_until_whole_and_within_its_limit() {
        let mut decoder = Decoder::new(Framing::Chunked, 32);
        let mut buf = BytesMut::from(&b"0\r\nX-A: 1\r\nX-B"[..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::More));
        assert_eq!(&buf[..], b"X-A: 1\r\nX-B", "left where it is");
        buf.extend_from_slice(b": 2\r\n\r\nGET");
        let Ok(Decoded::Trailers(trailers)) = decoder.decode(&mut buf) else {
            panic!("trailers");
        };
        assert_eq!(fields(&trailers), [("x-a", &b"1"[..]), ("x-b", b"2")]);
        assert_eq!(&buf[..], b"GET");
        assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));

        // 32 bytes pass, 33 do not.
        let within = b"0\r\nx-long: 01234567890123456789\r\n\r\n";
        assert_eq!(within.len() - 3, 32);
        let mut decoder = Decoder::new(Framing::Chunked, 32);
        assert!(matches!(
            decoder.decode(&mut BytesMut::from(&within[..])),
            Ok(Decoded::Trailers(_))
        ));
        let over = b"0\r\nx-long: 012345678901234567890\r\n\r\n";
        let mut decoder = Decoder::new(Framing::Chunked, 32);
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&over[..])),
            Err(BodyError::Chunked("trailers too long"))
        );
        assert!(Decoder::new(Framing::Chunked, 32).check(over).is_err());
        // Too many fields, each short.
        let mut many = b"0\r\n".to_vec();
        for i in 0..=MAX_TRAILER_FIELDS {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let mut decoder = Decoder::new(Framing::Chunked, 1 << 20);
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&many[..])),
            Err(BodyError::Chunked("too many trailer fields"))
        );
    }

    #[test]
    fn the_reader_gets_trailers_after_the_data_without_what_connection_named() {
        use http_body::Body as _;
        let (mut body, sender) = IncomingBody::channel(Framing::Chunked);
        sender.not_in_trailers(vec![HeaderName::from_static("x-hop")]);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        sender.send(Ok(Bytes::from_static(b"part")), false);
        let mut next = || match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(frame) => frame.map(|f| f.unwrap()),
            Poll::Pending => panic!("pending"),
        };
        assert_eq!(next().unwrap().into_data().unwrap(), "part");
        let mut trailers = HeaderMap::new();
        trailers.insert("x-hop", HeaderValue::from_static("1"));
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        sender.trailers(Box::new(trailers));
        let trailers = next().unwrap().into_trailers().unwrap();
        assert_eq!(fields(&trailers), [("grpc-status", &b"0"[..])]);
        assert!(next().is_none());
        assert!(body.is_end_stream());
    }

    #[test]
    fn chunked_bodies_decode_and_leave_what_follows() {
        let raw = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let (body, left) = decode_all(Framing::Chunked, raw).unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(left, 4);
        let (body, left) = decode_all(Framing::Chunked, b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
        assert_eq!((body.len(), left), (10, 0));
    }

    #[test]
    fn bad_chunked_framing_is_an_error() {
        for raw in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"fffffffffffffffffff\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
        ] {
            assert!(
                matches!(
                    decode_all(Framing::Chunked, raw),
                    Err(BodyError::Chunked(_))
                ),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(
            decode_all(Framing::Chunked, b"5\r\nhel"),
            Err(BodyError::Truncated)
        );
    }

    #[test]
    fn a_body_the_connection_abandons_ends_in_an_error_after_its_last_frame() {
        use http_body::Body as _;
        let (mut body, sender) = IncomingBody::channel(Framing::Chunked);
        sender.send(Ok(Bytes::from_static(b"part")), false);
        drop(sender);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut next = || match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(frame) => frame.map(|f| f.map(|f| f.into_data().ok())),
            Poll::Pending => panic!("pending"),
        };
        assert_eq!(next(), Some(Ok(Some(Bytes::from_static(b"part")))));
        assert_eq!(next(), Some(Err(BodyError::Abandoned)));
    }

    #[test]
    fn check_finds_bad_framing_in_what_was_read() {
        let chunked = Decoder::new(Framing::Chunked, 16 * 1024);
        assert!(
            chunked
                .check(b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1")
                .is_ok()
        );
        assert!(chunked.check(b"5\r\nhel").is_ok());
        assert!(chunked.check(b"zz\r\nhello\r\n").is_err());
        assert!(chunked.check(b"5\r\nhelloXX").is_err());
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (body, left) = decode_all(Framing::Length(5), b"helloGET").unwrap();
        assert_eq!((body.as_slice(), left), (&b"hello"[..], 3));
    }
}
