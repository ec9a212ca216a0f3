//! Writing responses: how the body is framed, the head's bytes, and the
//! queue of bytes on their way to the socket (small pieces copied into one
//! buffer, a large one written beside it without a copy).

use std::cell::{Cell, RefCell};
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use http::header::{self, HeaderMap, HeaderValue};
use http::{StatusCode, Version};
use http_body::SizeHint;

use crate::http::raw::Beside;
use crate::http::sendfile::{FileSlice, Transport};

const KEEP_ALIVE: header::HeaderName = header::HeaderName::from_static("keep-alive");

/// Data up to this size is copied into the write buffer; larger pieces are
/// written from where they are.
const COPY_UP_TO: usize = 8 * 1024;
/// Buffered bytes at which the writer sends before taking more.
pub const SEND_AT: usize = 16 * 1024;

/// How the response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body bytes at all (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client, unknown length).
    Close,
}

/// What the request said that shapes its response.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    pub head: bool,
    pub version: Version,
    /// The client and weir both let the connection be reused.
    pub keep_alive: bool,
}

/// The framing chosen for a response, and whether the connection stays
/// open after it. Adjusts `headers` to match: framing headers are weir's.
pub fn plan(
    status: StatusCode,
    headers: &mut HeaderMap,
    hint: &SizeHint,
    asked: Asked,
) -> (BodyFraming, bool) {
    // One pass over the names, so that the fields a response rarely
    // carries (a proxied one has lost them already) cost no lookups.
    let (mut connection, mut keep_alive_field, mut transfer_encoding) = (false, false, false);
    let mut length_field = false;
    // Names the `http` crate knows compare as numbers.
    for name in headers.keys() {
        if *name == header::CONNECTION {
            connection = true;
        } else if *name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
        } else if *name == KEEP_ALIVE {
            keep_alive_field = true;
        } else if *name == header::CONTENT_LENGTH {
            length_field = true;
        }
    }
    let mut keep_alive = asked.keep_alive
        && !(connection
            && headers
                .get_all(header::CONNECTION)
                .iter()
                .any(|v| has_token(v, b"close")));
    if transfer_encoding {
        headers.remove(header::TRANSFER_ENCODING);
    }
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        // The connection leaves HTTP/1 (or, unasked for, closes).
        return (BodyFraming::None, false);
    }
    if connection {
        headers.remove(header::CONNECTION);
    }
    if keep_alive_field {
        headers.remove(&KEEP_ALIVE);
    }
    let framing = if status.is_informational() || status == StatusCode::NO_CONTENT {
        headers.remove(header::CONTENT_LENGTH);
        BodyFraming::None
    } else if asked.head || status == StatusCode::NOT_MODIFIED {
        BodyFraming::None
    } else if let Some((length, plain)) = length_field.then(|| content_length(headers)).flatten() {
        // One Content-Length, in its plain form, whatever came before.
        if !plain {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
        BodyFraming::Length(length)
    } else if let Some(length) = hint.exact() {
        // `head` writes the length the body has.
        if length_field {
            headers.remove(header::CONTENT_LENGTH);
        }
        BodyFraming::Length(length)
    } else if asked.version == Version::HTTP_11 {
        headers.remove(header::CONTENT_LENGTH);
        BodyFraming::Chunked
    } else {
        headers.remove(header::CONTENT_LENGTH);
        keep_alive = false;
        BodyFraming::Close
    };
    (framing, keep_alive)
}

/// Appends the status line and header fields: the upstream's own as they
/// came, `headers`, the request id, then `date`, `content-length`,
/// `connection` and `transfer-encoding` as `plan` decided.
pub fn head(
    out: &mut Vec<u8>,
    status: StatusCode,
    beside: &Beside,
    headers: &HeaderMap,
    framing: BodyFraming,
    keep_alive: bool,
    asked: Asked,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    if let Some(fields) = &beside.fields {
        fields.write(out);
        dated = fields.dated();
    }
    let mut lengthed = false;
    for (name, value) in headers {
        dated |= *name == header::DATE;
        lengthed |= *name == header::CONTENT_LENGTH;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(id) = &beside.request_id {
        out.extend_from_slice(b"x-request-id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let BodyFraming::Length(length) = framing
        && !lengthed
    {
        out.extend_from_slice(b"content-length: ");
        number(out, length, 10);
        out.extend_from_slice(b"\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    if framing == BodyFraming::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if asked.version == Version::HTTP_10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The Content-Length the handler set, if every field says the same
/// number, and whether it is already one field in its plain form.
fn content_length(headers: &HeaderMap) -> Option<(u64, bool)> {
    let mut fields = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = fields.next()?.as_bytes();
    let length = super::head::content_length(first)?;
    let mut single = true;
    for other in fields {
        if other.as_bytes() != first {
            return None;
        }
        single = false;
    }
    let plain = single
        && (first == b"0" || first.first().is_some_and(|&d| d != b'0'))
        && first.iter().all(u8::is_ascii_digit);
    Some((length, plain))
}

fn has_token(value: &HeaderValue, token: &[u8]) -> bool {
    super::head::tokens(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(token))
}

/// The current time as an HTTP date, formatted once a second per thread.
pub fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [b' '; 29])) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = second;
            }
        }
        out.extend_from_slice(&cached.1);
    });
}

/// The largest emptied buffer a thread keeps for its next response.
const SPARE_MAX: usize = 8 * 1024;

thread_local! {
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Bytes queued for the socket, in order: `buf[pos..]`, `big`, `tail`.
#[derive(Debug, Default)]
pub struct Out {
    pub buf: Vec<u8>,
    pos: usize,
    big: Bytes,
    tail: &'static [u8],
    /// Body bytes the kernel sends from a file, after everything else.
    file: Option<FileSlice>,
}

impl Out {
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
            && self.big.is_empty()
            && self.tail.is_empty()
            && self.file.is_none()
    }

    /// Whether it should be sent before more is queued.
    pub fn is_full(&self) -> bool {
        !self.big.is_empty() || self.file.is_some() || self.buf.len() - self.pos >= SEND_AT
    }

    /// Queues body data, framed as `framing` says. Call only when not
    /// `is_full`.
    pub fn data(&mut self, data: Bytes, framing: BodyFraming) {
        let chunked = framing == BodyFraming::Chunked;
        if chunked {
            chunk_size(&mut self.buf, data.len());
        }
        if data.len() <= COPY_UP_TO {
            self.buf.extend_from_slice(&data);
            if chunked {
                self.buf.extend_from_slice(b"\r\n");
            }
        } else {
            self.big = data;
            self.tail = if chunked { b"\r\n" } else { b"" };
        }
    }

    /// Queues body bytes the kernel sends from a file: a Content-Length
    /// body's data, on a transport that `sends_files`. Call only when not
    /// `is_full`.
    pub fn file(&mut self, slice: FileSlice) {
        self.file = Some(slice);
    }

    /// Drops everything queued and not yet written.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.big = Bytes::new();
        self.tail = b"";
        self.file = None;
    }

    /// Room for `n` more bytes. An empty buffer first takes this thread's
    /// spare one (see `release`).
    pub fn reserve(&mut self, n: usize) {
        if self.buf.capacity() == 0 {
            self.buf = SPARE.take();
        }
        self.buf.reserve(n);
    }

    /// Gives the buffer up between requests, so an idle connection holds
    /// none. A small one becomes this thread's spare: keep-alive
    /// connections take turns, so the next response to be written would
    /// otherwise allocate what this one just freed.
    pub fn release(&mut self) {
        if self.is_empty() {
            let mut buf = std::mem::take(&mut self.buf);
            self.pos = 0;
            if buf.capacity() <= SPARE_MAX {
                buf.clear();
                SPARE.set(buf);
            }
        }
    }

    /// Writes everything queued.
    pub fn poll_send<I: Transport>(
        &mut self,
        io: &mut I,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let buffered = &self.buf[self.pos..];
            let parts = [buffered, &self.big[..], self.tail];
            let written = if self.file.is_some() {
                let slices = parts.map(IoSlice::new);
                if parts.iter().all(|p| p.is_empty()) {
                    break;
                }
                ready!(io.poll_write_more(cx, &slices))?
            } else if io.is_write_vectored() {
                let slices = parts.map(IoSlice::new);
                let count = parts.iter().filter(|p| !p.is_empty()).count();
                if count == 0 {
                    break;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?
            } else {
                let Some(first) = parts.into_iter().find(|p| !p.is_empty()) else {
                    break;
                };
                ready!(Pin::new(&mut *io).poll_write(cx, first))?
            };
            if written == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.advance(written);
        }
        self.buf.clear();
        self.pos = 0;
        while let Some(file) = &mut self.file {
            if file.remaining() == 0 {
                self.file = None;
                break;
            }
            match ready!(io.poll_sendfile(cx, file))? {
                0 => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "file shorter than its cached length",
                    )));
                }
                sent => file.advance(sent),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn advance(&mut self, mut n: usize) {
        let buffered = (self.buf.len() - self.pos).min(n);
        self.pos += buffered;
        n -= buffered;
        let big = self.big.len().min(n);
        self.big.advance(big);
        n -= big;
        self.tail = &self.tail[n.min(self.tail.len())..];
    }
}

/// The end of a chunked body without trailer fields.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The end of a chunked body with `trailers` (RFC 9112 7.1.2): the last
/// chunk, the fields `allowed_in_trailers` lets through, the empty line.
pub fn last_chunk(out: &mut Vec<u8>, trailers: &HeaderMap) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        if super::body::allowed_in_trailers(name) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// `{len:X}\r\n` without the formatting machinery.
fn chunk_size(out: &mut Vec<u8>, len: usize) {
    number(out, len as u64, 16);
    out.extend_from_slice(b"\r\n");
}

/// `n` in base 10 or 16 (upper case), without the formatting machinery
/// or an allocation.
pub fn number(out: &mut Vec<u8>, mut n: u64, base: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789ABCDEF"[(n % base) as usize];
        n /= base;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(version: Version, head: bool) -> Asked {
        Asked {
            head,
            version,
            keep_alive: true,
        }
    }

    #[test]
    fn framing_follows_status_method_length_and_version() {
        let unknown = SizeHint::default();
        let cases = [
            (
                200,
                false,
                Version::HTTP_11,
                None,
                &unknown,
                BodyFraming::Chunked,
                true,
            ),
            (
                200,
                false,
                Version::HTTP_10,
                None,
                &unknown,
                BodyFraming::Close,
                false,
            ),
            (
                200,
                false,
                Version::HTTP_11,
                Some("12"),
                &unknown,
                BodyFraming::Length(12),
                true,
            ),
            (
                200,
                true,
                Version::HTTP_11,
                Some("12"),
                &unknown,
                BodyFraming::None,
                true,
            ),
            (
                204,
                false,
                Version::HTTP_11,
                Some("0"),
                &unknown,
                BodyFraming::None,
                true,
            ),
            (
                304,
                false,
                Version::HTTP_11,
                None,
                &unknown,
                BodyFraming::None,
                true,
            ),
        ];
        for (status, head, version, length, hint, want, keep) in cases {
            let mut headers = HeaderMap::new();
            if let Some(length) = length {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static(length));
            }
            let status = StatusCode::from_u16(status).unwrap();
            let got = plan(status, &mut headers, hint, asked(version, head));
            assert_eq!(got, (want, keep), "{status} head={head} {version:?}");
        }
        // A 200 to an HTTP/1.1 GET whose body has 5 bytes.
        let five = |headers: &mut HeaderMap| {
            let exact = SizeHint::with_exact(5);
            plan(
                StatusCode::OK,
                headers,
                &exact,
                asked(Version::HTTP_11, false),
            )
        };
        let mut headers = HeaderMap::new();
        assert_eq!(five(&mut headers), (BodyFraming::Length(5), true));
        assert!(headers.is_empty(), "the length is written with the head");
        // A length field the body disagrees with goes; the body's is written.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(five(&mut headers), (BodyFraming::Length(5), true));
        assert!(headers.is_empty());
        let mut closing = HeaderMap::new();
        closing.insert(header::CONNECTION, HeaderValue::from_static("close"));
        assert!(!five(&mut closing).1);
    }

    #[test]
    fn framing_fields_are_weirs() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "007"),
            ("x-kept", "1"),
        ] {
            headers.append(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let unknown = SizeHint::default();
        let got = plan(
            StatusCode::OK,
            &mut headers,
            &unknown,
            asked(Version::HTTP_11, false),
        );
        assert_eq!(got, (BodyFraming::Length(7), true));
        let mut left: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [("content-length", &b"7"[..]), ("x-kept", &b"1"[..])],
            "framing fields gone, the length in its plain form"
        );
    }

    #[test]
    fn head_bytes() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        headers.insert(header::DATE, HeaderValue::from_static("x"));
        let mut out = Vec::new();
        let asked = asked(Version::HTTP_10, false);
        head(
            &mut out,
            StatusCode::OK,
            &Beside::default(),
            &headers,
            BodyFraming::Length(2),
            true,
            asked,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: x\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn head_bytes_with_fields_as_they_came() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: up\r\nDate: y\r\nContent-Length: 2\r\n\r\n";
        let mut parsed = [httparse::EMPTY_HEADER; 4];
        let mut response = httparse::Response::new(&mut parsed);
        response.parse(raw).unwrap();
        let mut fields = crate::http::raw::RawFields::new(Bytes::from_static(raw));
        for field in &response.headers[..2] {
            fields.push(crate::http::raw::Span::within(
                raw,
                field.name.as_bytes(),
                field.value,
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
        let beside = Beside {
            fields: Some(Box::new(fields)),
            request_id: Some(HeaderValue::from_static("id")),
        };
        let mut out = Vec::new();
        head(
            &mut out,
            StatusCode::OK,
            &beside,
            &headers,
            BodyFraming::Length(2),
            true,
            asked(Version::HTTP_11, false),
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nServer: up\r\nDate: y\r\ncache-control: no-store\r\nx-request-id: id\r\ncontent-length: 2\r\n\r\n",
            "their own Date kept, no second one; the length from the framing"
        );
    }

    #[test]
    fn trailers_end_a_chunked_body_without_the_fields_they_may_not_carry() {
        let mut trailers = HeaderMap::new();
        for (name, value) in [
            ("grpc-status", "0"),
            ("content-length", "5"),
            ("x-checksum", "a"),
            ("x-checksum", "b"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
        ] {
            trailers.append(
                header::HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut out = Vec::new();
        last_chunk(&mut out, &trailers);
        assert_eq!(
            out,
            b"0\r\ngrpc-status: 0\r\nx-checksum: a\r\nx-checksum: b\r\n\r\n"
        );
        let mut out = Vec::new();
        last_chunk(&mut out, &HeaderMap::new());
        assert_eq!(out, LAST_CHUNK);
    }

    #[test]
    fn chunk_sizes_are_hex() {
        for (len, want) in [(0, "0\r\n"), (10, "A\r\n"), (0x1234f, "1234F\r\n")] {
            let mut out = Vec::new();
            chunk_size(&mut out, len);
            assert_eq!(out, want.as_bytes());
        }
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            number(&mut out, n, 10);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
