//! A request body on its way from the connection to whoever reads it (a
//! site, or an upstream connection in another task): the framing decoder,
//! and a one-frame slot that hands data over only when the reader asks, so
//! the connection reads from the socket no faster than the body is used.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::head::Framing;

/// Longest chunk-size line (with extensions) and trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

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
}

/// Framing state of the body being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    Chunked(Chunk),
    Done,
}

/// Where in the chunked coding the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    Size {
        value: u64,
        digits: u8,
        line: usize,
    },
    Extension {
        value: u64,
        line: usize,
    },
    SizeLf {
        value: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer fields, discarded; `line_start` after each CRLF.
    Trailers {
        seen: usize,
        line_start: bool,
    },
    TrailersCr {
        seen: usize,
        last: bool,
    },
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        match framing {
            Framing::Empty => Decoder::Done,
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunk::Size {
                value: 0,
                digits: 0,
                line: 0,
            }),
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
            Decoder::Chunked(_) => None,
        }
    }

    /// Checks the framing in bytes already read, without taking them: a
    /// malformed chunked body that arrived with its head is refused before
    /// the request goes anywhere.
    pub fn check(mut self, mut bytes: &[u8]) -> Result<(), BodyError> {
        while let Some((&byte, rest)) = bytes.split_first() {
            match &mut self {
                Decoder::Chunked(Chunk::Data(n)) => {
                    let skip = (*n).min(bytes.len() as u64);
                    *n -= skip;
                    if *n == 0 {
                        self = Decoder::Chunked(Chunk::DataCr);
                    }
                    bytes = &bytes[skip as usize..];
                }
                Decoder::Chunked(state) => {
                    match step(*state, byte)? {
                        Some(next) => *state = next,
                        None => return Ok(()),
                    }
                    bytes = rest;
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
                Decoder::Chunked(Chunk::Data(n)) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let take = (*n).min(buf.len() as u64) as usize;
                    *n -= take as u64;
                    if *n == 0 {
                        *self = Decoder::Chunked(Chunk::DataCr);
                    }
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                Decoder::Chunked(state) => {
                    let Some(&byte) = buf.first() else {
                        return Ok(Decoded::More);
                    };
                    buf.advance(1);
                    match step(*state, byte)? {
                        Some(next) => *state = next,
                        None => {
                            *self = Decoder::Done;
                            return Ok(Decoded::End);
                        }
                    }
                }
            }
        }
    }
}

/// One byte of chunked framing; `None` once the body has ended.
fn step(state: Chunk, byte: u8) -> Result<Option<Chunk>, BodyError> {
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
            if seen >= MAX_TRAILERS {
                return bad("trailers too long");
            }
            match byte {
                b'\r' => Chunk::TrailersCr {
                    seen: seen + 1,
                    last: line_start,
                },
                b'\n' => return bad("bare LF in trailers"),
                _ => Chunk::Trailers {
                    seen: seen + 1,
                    line_start: false,
                },
            }
        }
        Chunk::TrailersCr { seen, last } => match byte {
            b'\n' if last => return Ok(None),
            b'\n' => Chunk::Trailers {
                seen,
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
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::from(raw);
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(data) => body.extend_from_slice(&data),
                Decoded::More => return Err(BodyError::Truncated),
                Decoded::End => return Ok((body, buf.len())),
            }
        }
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
        let chunked = Decoder::new(Framing::Chunked);
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
