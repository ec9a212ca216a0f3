//! A request head: the request line and header fields (httparse), then how
//! its body is framed. Anything that could be read two ways is refused
//! (RFC 9112 6.3): Content-Length beside Transfer-Encoding, differing or
//! malformed lengths, a Transfer-Encoding other than `chunked`, more than
//! one Host.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Uri, Version};
use smallvec::SmallVec;

/// Header fields a head may carry; more is 431, as for a head too large.
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Over `max_header_bytes`, or over `MAX_HEADERS` fields.
    #[error("request head over the limit")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no Content-Length, no Transfer-Encoding, or a length of 0).
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed head: the request's line and fields (its body still to come)
/// and what the connection needs to know about it.
#[derive(Debug)]
pub struct Head {
    pub parts: Parts,
    pub framing: Framing,
    /// The client lets the connection be reused after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead.
    pub expect_continue: bool,
    /// An HTTP/1.1 `Upgrade` request (`Connection: upgrade` and `Upgrade`).
    pub upgrade: bool,
}

/// Parses a complete head off the front of `buf`, leaving what follows it.
/// `Ok(None)`: not complete yet (and still within `max_bytes`).
pub fn parse(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<Head>, HeadError> {
    // Left uninitialised: zeroing 100 fields costs more than parsing ten.
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Malformed("HTTP version")),
        Err(_) => return Err(HeadError::Malformed("request line or header field")),
    };
    if len > max_bytes || u32::try_from(len).is_err() {
        return Err(HeadError::TooLarge);
    }
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let method = Method::from_bytes(request.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::Malformed("method"))?;
    // Where each piece lies in `buf`, so they can be shared out of it.
    let start = buf.as_ptr() as usize;
    // As u32 (a head is far shorter), so the spans copied about are small.
    let at = |piece: &[u8]| ((piece.as_ptr() as usize - start) as u32, piece.len() as u32);
    let target = at(request.path.unwrap_or("").as_bytes());
    let count = request.headers.len();
    // Inline for the usual few fields: no allocation.
    let spans: SmallVec<[_; 16]> = request
        .headers
        .iter()
        .map(|field| (at(field.name.as_bytes()), at(field.value)))
        .collect();
    let bytes = buf.split_to(len).freeze();
    let range = |(offset, len): (u32, u32)| offset as usize..(offset + len) as usize;
    let slice = |piece: (u32, u32)| bytes.slice(range(piece));

    let uri = Uri::from_maybe_shared(slice(target)).map_err(|_| HeadError::Malformed("target"))?;
    // Exactly the fields that came: what weir adds on the way upstream is
    // written beside the map, not into it (`forward::Added`).
    let mut headers = HeaderMap::with_capacity(count);
    let mut facts = Facts::default();
    for &(name, value) in &spans {
        let name = HeaderName::from_bytes(&bytes[range(name)])
            .map_err(|_| HeadError::Malformed("header name"))?;
        let value = HeaderValue::from_maybe_shared(slice(value))
            .map_err(|_| HeadError::Malformed("header value"))?;
        // A repeated (identical) Content-Length goes upstream once.
        let repeated = name == header::CONTENT_LENGTH && facts.length.is_some();
        facts.note(&name, &value)?;
        if !repeated {
            headers.append(name, value);
        }
    }
    let framing = facts.framing(version)?;
    // An HTTP/1.1 request names its host (RFC 9112 3.2): one that does not
    // could only be routed by a guess.
    if version == Version::HTTP_11 && facts.hosts == 0 && uri.authority().is_none() {
        return Err(HeadError::Malformed("no Host"));
    }
    // An absolute-form target names the host; a Host field saying
    // otherwise is ignored (RFC 9112 3.2.2), so it goes upstream the same.
    if let Some(authority) = uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, host);
    }
    let keep_alive = match version {
        Version::HTTP_10 => facts.keep_alive && !facts.close,
        _ => !facts.close,
    };
    let upgrade =
        version == Version::HTTP_11 && facts.upgrade && headers.contains_key(header::UPGRADE);
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Head {
        parts,
        framing,
        keep_alive,
        expect_continue: version == Version::HTTP_11 && facts.expect_continue,
        upgrade,
    }))
}

/// What the header fields say about framing and the connection.
#[derive(Debug, Default)]
struct Facts {
    length: Option<u64>,
    chunked: bool,
    transfer_encoding: bool,
    hosts: u8,
    close: bool,
    keep_alive: bool,
    upgrade: bool,
    expect_continue: bool,
}

impl Facts {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), HeadError> {
        if name == header::CONTENT_LENGTH {
            let length =
                content_length(value.as_bytes()).ok_or(HeadError::Malformed("Content-Length"))?;
            if self.length.is_some_and(|seen| seen != length) {
                return Err(HeadError::Malformed("differing Content-Length"));
            }
            self.length = Some(length);
        } else if name == header::TRANSFER_ENCODING {
            // Exactly one coding, `chunked`, once: weir decodes no other,
            // and anything else could be framed differently upstream.
            if self.transfer_encoding || !trimmed(value.as_bytes()).eq_ignore_ascii_case(b"chunked")
            {
                return Err(HeadError::Malformed("Transfer-Encoding other than chunked"));
            }
            self.transfer_encoding = true;
            self.chunked = true;
        } else if name == header::HOST {
            self.hosts += 1;
            if self.hosts > 1 {
                return Err(HeadError::Malformed("more than one Host"));
            }
        } else if name == header::CONNECTION {
            for token in tokens(value.as_bytes()) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    self.upgrade = true;
                }
            }
        } else if name == header::EXPECT {
            self.expect_continue = trimmed(value.as_bytes()).eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    fn framing(&self, version: Version) -> Result<Framing, HeadError> {
        if self.transfer_encoding {
            if self.length.is_some() {
                return Err(HeadError::Malformed(
                    "Content-Length with Transfer-Encoding",
                ));
            }
            if version == Version::HTTP_10 {
                return Err(HeadError::Malformed("Transfer-Encoding in HTTP/1.0"));
            }
        }
        Ok(match self.length {
            _ if self.chunked => Framing::Chunked,
            Some(0) | None => Framing::Empty,
            Some(length) => Framing::Length(length),
        })
    }
}

/// A Content-Length value: `1*DIGIT` and nothing else (no sign, no list),
/// within `u64`. Requests, responses and upstream answers all read it so.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let digits = trimmed(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0')),
    )
}

/// The comma-separated tokens of a field value (Connection,
/// Transfer-Encoding), without their surrounding whitespace.
pub fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trimmed)
}

fn trimmed(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = bytes.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(start), Some(end)) => &bytes[start..=end],
        _ => &[],
    }
}

/// The head's bytes, for tests.
#[cfg(test)]
fn parse_str(raw: &str) -> Result<Option<Head>, HeadError> {
    let mut buf = BytesMut::from(raw.as_bytes());
    parse(&mut buf, 8192)
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(raw: &str) -> Result<Framing, HeadError> {
        parse_str(raw).map(|head| head.expect("complete head").framing)
    }

    #[test]
    fn framing_table() {
        let ok = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Framing::Empty),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                Framing::Empty,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
                Framing::Length(12),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Framing::Length(5),
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
                Framing::Chunked,
            ),
        ];
        for (raw, want) in ok {
            assert_eq!(framing(raw), Ok(want), "{raw:?}");
        }
        let refused = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            "GET / HTTP/9.9\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ];
        for raw in refused {
            assert!(
                matches!(parse_str(raw), Err(HeadError::Malformed(_))),
                "{raw:?} was accepted"
            );
        }
    }

    #[test]
    fn http11_names_its_host() {
        assert_eq!(
            parse_str("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").err(),
            Some(HeadError::Malformed("no Host"))
        );
        assert_eq!(
            parse_str("OPTIONS * HTTP/1.1\r\n\r\n").err(),
            Some(HeadError::Malformed("no Host"))
        );
        // In the target, or in HTTP/1.0 not at all.
        let absolute = parse_str("GET http://a.test/ HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(absolute.parts.headers["host"], "a.test");
        assert!(parse_str("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn partial_and_oversized_heads() {
        assert!(matches!(
            parse_str("GET / HTTP/1.1\r\nHost: a\r\n"),
            Ok(None)
        ));
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nX-Long: "[..]);
        buf.extend_from_slice(&[b'a'; 200]);
        assert_eq!(parse(&mut buf, 100).err(), Some(HeadError::TooLarge));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let mut buf = BytesMut::from(many.as_bytes());
        assert_eq!(parse(&mut buf, 1 << 20).err(), Some(HeadError::TooLarge));
    }

    #[test]
    fn connection_facts_and_what_follows_the_head_stays() {
        let mut buf = BytesMut::from(
            &b"GET /a?b HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: x\r\n\r\nNEXT"[..],
        );
        let head = parse(&mut buf, 8192).unwrap().unwrap();
        assert!(head.keep_alive);
        assert_eq!(head.parts.uri, "/a?b");
        assert_eq!(head.parts.version, Version::HTTP_10);
        assert_eq!(head.parts.headers["host"], "x");
        assert_eq!(&buf[..], b"NEXT");

        let closing = parse_str("GET / HTTP/1.1\r\nConnection: close\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!closing.keep_alive);
        let old = parse_str("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive);
        let upgrade = parse_str(
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(upgrade.upgrade && upgrade.keep_alive);
        let expect = parse_str(
            "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(expect.expect_continue);
        let absolute = parse_str("GET http://example.com/x HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(absolute.parts.uri.host(), Some("example.com"));
    }
}
