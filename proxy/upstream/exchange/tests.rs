//! The exchange's parsing and writing, by example and by property: a
//! response head read in any split reads as it does whole and as RFC 9112
//! means it, never panics, and refuses what could be framed two ways
//! (`response`, with heads from `upstream` and `hostile`); a request head
//! reads back as it was meant (`request`); a body comes through a socket
//! exactly (`socket`).

use proptest::prelude::*;

use super::*;

mod hostile;
mod request;
mod response;
mod socket;
mod trailers;
mod upstream;

/// Where a request head in `raw` ends and how its body is framed, once
/// the head is whole (the upstream's side of a test exchange).
fn request_framing(raw: &[u8]) -> Option<(usize, Framing)> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(len) = request.parse(raw).expect("a request head") else {
        return None;
    };
    let field = |name: &str| {
        request
            .headers
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    };
    let framing = match (field("transfer-encoding"), field("content-length")) {
        (Some(_), _) => Framing::Chunked,
        (None, Some(n)) => Framing::Length(content_length(n).expect("a length")),
        (None, None) => Framing::Empty,
    };
    Some((len, framing))
}

/// A request body of these frames, its length known ahead or not.
struct Frames {
    frames: std::collections::VecDeque<Frame<Bytes>>,
    length: Option<u64>,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.frames.pop_front().map(Ok))
    }

    fn size_hint(&self) -> SizeHint {
        self.length
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

fn head(raw: &str, head_request: bool) -> Result<Option<Head>, ExchangeError> {
    let mut buf = BytesMut::from(raw.as_bytes());
    parse_head(&mut buf, head_request, &mut Vec::new())
}

/// All the head's own fields, raw or not, in a map.
fn map_of(head: Head) -> HeaderMap {
    let mut headers = head.response.headers().clone();
    if let Some(fields) = head.fields {
        fields.into_map(&mut headers);
    }
    headers
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

#[test]
fn fields_stay_as_they_came_unless_a_rule_reads_them() {
    let plain = head(
        "HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Trace:  1\r\nContent-Length: 2\r\n\r\n",
        false,
    )
    .unwrap()
    .unwrap();
    assert!(plain.response.headers().is_empty());
    let fields = plain.fields.clone().expect("raw fields");
    let mut out = Vec::new();
    fields.write(&mut out);
    assert_eq!(
        out, b"Server: up\r\nX-Trace:  1\r\n",
        "framing and hop-by-hop left out"
    );
    let map = map_of(plain);
    assert_eq!(map["content-length"], "2", "the length comes back in a map");
    assert_eq!(map.len(), 3);

    // Empty values are fields too.
    let empty = head(
        "HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Blank:   \r\nContent-Length: 0\r\n\r\n",
        false,
    )
    .unwrap()
    .unwrap();
    let mut out = Vec::new();
    empty.fields.clone().expect("raw fields").write(&mut out);
    assert_eq!(out, b"X-Empty:\r\nX-Blank:   \r\n", "as they came");
    assert_eq!(map_of(empty)["x-empty"], "");

    // What a rule must look at, or remove, goes into the map.
    for raw in [
        "HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nServer: up\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        let parsed = head(raw, false).unwrap().unwrap();
        assert!(parsed.fields.is_none(), "{raw:?}");
        assert!(!parsed.response.headers().is_empty(), "{raw:?}");
    }
    let to_head = head(
        "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 5\r\n\r\n",
        true,
    )
    .unwrap()
    .unwrap();
    assert!(to_head.fields.is_none());
    assert_eq!(to_head.response.headers()["content-length"], "5");
    // Transfer-Encoding over Content-Length: neither goes on.
    let both = head(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        false,
    )
    .unwrap()
    .unwrap();
    assert!(map_of(both).is_empty());
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
    let many = map_of(head(&raw, false).unwrap().unwrap());
    assert_eq!(many.get_all("set-cookie").iter().count(), 100);
    let mut too_many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        too_many.push_str(&format!("x-{i}: v\r\n"));
    }
    too_many.push_str("\r\n");
    assert!(head(&too_many, false).is_err());
}

/// Regression: an HTTP/1.0 `keep-alive` used to undo a `close` (or the
/// close a non-chunked coding needs) that came before it, and a
/// Transfer-Encoding in HTTP/1.0 left the connection in the pool.
#[test]
fn a_close_wins_and_http_1_0_framing_in_doubt_ends_the_connection() {
    for raw in [
        "HTTP/1.0 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.0 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert!(!framing(raw).1, "{raw:?} kept the connection");
    }
    let kept = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n";
    // A coding weir does not decode is refused, not passed on garbled.
    for raw in [
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n",
    ] {
        assert!(
            matches!(head(raw, false), Err(ExchangeError::Malformed(_))),
            "{raw:?}"
        );
    }
    // Without a body, no coding is read (nor the connection trusted again).
    assert_eq!(
        framing("HTTP/1.1 204 No Content\r\ntransfer-encoding: gzip\r\n\r\n"),
        (Some(Framing::Empty), false)
    );
    assert_eq!(framing(kept), (Some(Framing::Length(2)), true));
}

/// Everything the exchange goes on from a response head.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    status: StatusCode,
    /// Every field that goes on to the client, raw or not.
    headers: HeaderMap,
    /// The raw fields as they are written to an HTTP/1.1 client, when
    /// they stayed raw.
    raw: Option<Vec<u8>>,
    framing: Option<Framing>,
    keep_alive: bool,
}

impl Seen {
    fn of(head: Head) -> Seen {
        let raw = head.fields.as_ref().map(|fields| {
            let mut out = Vec::new();
            fields.write(&mut out);
            out
        });
        let (status, framing, keep_alive) = (head.response.status(), head.framing, head.keep_alive);
        Seen {
            status,
            headers: map_of(head),
            raw,
            framing,
            keep_alive,
        }
    }
}

/// Up to eight places to cut a message, wherever it ends.
fn cuts() -> impl Strategy<Value = Vec<prop::sample::Index>> {
    prop::collection::vec(any::<prop::sample::Index>(), 0..8)
}

fn cut_at(cuts: &[prop::sample::Index], len: usize) -> Vec<usize> {
    cuts.iter().map(|cut| cut.index(len + 1)).collect()
}
