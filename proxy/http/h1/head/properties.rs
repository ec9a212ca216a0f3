//! Properties of `parse`: it never panics, never takes more than its limit,
//! gives the same answer however the bytes arrive, and refuses every head
//! whose body another parser could frame differently.

use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::*;
use crate::http::h1::arrival::{Arrival, arrival};

/// Far above any head generated here: only the tests about the limit meet it.
const ROOMY: usize = 64 * 1024;

/// What `parse` made of some bytes, in a form two runs can be compared in.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// `Ok(None)` with every byte fed.
    Incomplete,
    Parsed(Box<Parsed>),
    Refused(HeadError),
}

#[derive(Debug, PartialEq)]
struct Parsed {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
    /// The buffer once every byte was fed.
    rest: Vec<u8>,
}

impl Parsed {
    fn new(head: Head, rest: Vec<u8>) -> Parsed {
        Parsed {
            method: head.parts.method,
            uri: head.parts.uri,
            version: head.parts.version,
            headers: head.parts.headers,
            framing: head.framing,
            keep_alive: head.keep_alive,
            expect_continue: head.expect_continue,
            upgrade: head.upgrade,
            rest,
        }
    }
}

/// Feeds `bytes` to `parse` as they arrive, until it has an answer.
fn feed(bytes: &[u8], arrival: &Arrival, max_bytes: usize) -> Outcome {
    let mut buf = BytesMut::new();
    for piece in arrival.pieces(bytes.len()) {
        buf.extend_from_slice(&bytes[piece.clone()]);
        match checked_parse(&mut buf, max_bytes) {
            Ok(None) => {}
            Ok(Some(head)) => {
                buf.extend_from_slice(&bytes[piece.end..]);
                return Outcome::Parsed(Box::new(Parsed::new(head, buf.to_vec())));
            }
            Err(e) => return Outcome::Refused(e),
        }
    }
    Outcome::Incomplete
}

fn whole(bytes: &[u8], max_bytes: usize) -> Outcome {
    feed(bytes, &Arrival::WHOLE, max_bytes)
}

/// `parse`, checking what every call promises: an incomplete head takes
/// nothing; a complete one takes at most `max_bytes` and leaves the rest;
/// its fields frame the body as weir will read it.
fn checked_parse(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<Head>, HeadError> {
    let before = buf.clone();
    let result = parse(buf, max_bytes);
    match &result {
        Ok(None) => assert_eq!(*buf, before, "an incomplete head took bytes"),
        Ok(Some(head)) => {
            let taken = before.len() - buf.len();
            assert!(taken <= max_bytes, "took {taken} bytes, over {max_bytes}");
            assert_eq!(&before[taken..], &buf[..]);
            assert_framing_agrees_with_fields(head);
        }
        Err(_) => {}
    }
    result
}

/// The fields that go upstream say what `framing` says: one Content-Length
/// or one `Transfer-Encoding: chunked`, never both, and one Host at most.
fn assert_framing_agrees_with_fields(head: &Head) {
    let fields = &head.parts.headers;
    let lengths: Vec<_> = fields.get_all(header::CONTENT_LENGTH).iter().collect();
    let codings = fields.get_all(header::TRANSFER_ENCODING).iter().count();
    match head.framing {
        Framing::Chunked => {
            assert!(lengths.is_empty() && codings == 1, "{fields:?}");
            assert_eq!(head.parts.version, Version::HTTP_11);
        }
        Framing::Length(n) => {
            assert!(n > 0 && codings == 0, "{fields:?}");
            assert_eq!(lengths.len(), 1, "{fields:?}");
            assert_eq!(content_length(lengths[0].as_bytes()), Some(n));
        }
        Framing::Empty => {
            assert!(codings == 0 && lengths.len() <= 1, "{fields:?}");
            for length in lengths {
                assert_eq!(content_length(length.as_bytes()), Some(0));
            }
        }
    }
    assert!(fields.get_all(header::HOST).iter().count() <= 1);
}

/// Whole and piecewise answers agree, with one allowed difference: a
/// buffer that reaches `max_bytes` with the head still incomplete is
/// refused as too large (an early, legitimate error on a prefix), while
/// all the bytes at once show a bad byte past the limit: malformed.
fn assert_arrival_does_not_matter(raw: &[u8], arrival: &Arrival, max_bytes: usize) {
    let whole = whole(raw, max_bytes);
    let piecewise = feed(raw, arrival, max_bytes);
    if raw.len() < max_bytes {
        assert_eq!(piecewise, whole);
    } else if piecewise != whole {
        assert!(
            matches!(whole, Outcome::Refused(HeadError::Malformed(_)))
                && piecewise == Outcome::Refused(HeadError::TooLarge),
            "whole: {whole:?}, piecewise: {piecewise:?}"
        );
    }
}

/// How a request's body is framed.
#[derive(Debug, Clone)]
enum Body {
    None,
    /// Content-Length, in one field per entry, each value written with
    /// that many leading zeros.
    Length(u64, Vec<usize>),
    /// `Transfer-Encoding: chunked`, spelt so.
    Chunked(&'static str),
}

/// A valid request head, with what `parse` should make of it.
#[derive(Debug, Clone)]
struct Request {
    blank_line: bool,
    method: String,
    target: String,
    http10: bool,
    fields: Vec<(String, Vec<u8>)>,
    /// Bit `i % 32` set: line `i` ends in a bare LF, not CRLF.
    bare_lf: u32,
    body: Body,
    connection: Vec<&'static str>,
    expect: Option<&'static str>,
    upgrade: bool,
}

impl Request {
    fn lines(&self) -> Vec<Vec<u8>> {
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let mut lines = Vec::new();
        if self.blank_line {
            lines.push(Vec::new());
        }
        lines.push(format!("{} {} {version}", self.method, self.target).into_bytes());
        for (name, value) in &self.fields {
            lines.push([name.as_bytes(), b":", value].concat());
        }
        lines
    }

    /// The head with `lines` as its request and field lines.
    fn render(&self, mut lines: Vec<Vec<u8>>) -> Vec<u8> {
        lines.push(Vec::new());
        let mut raw = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            raw.extend_from_slice(line);
            let bare = self.bare_lf & (1 << (i % 32)) != 0;
            raw.extend_from_slice(if bare { b"\n" } else { b"\r\n" });
        }
        raw
    }

    fn bytes(&self) -> Vec<u8> {
        self.render(self.lines())
    }

    /// What `parse` should give, worked out from how the head was made.
    fn expected(&self, rest: Vec<u8>) -> Parsed {
        let uri: Uri = self.target.parse().expect("generated target");
        let mut headers = HeaderMap::new();
        let mut length_seen = false;
        for (name, value) in &self.fields {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("generated name");
            if name == header::CONTENT_LENGTH {
                if length_seen {
                    continue;
                }
                length_seen = true;
            }
            let value = HeaderValue::from_bytes(value.trim_ascii()).expect("generated value");
            headers.append(name, value);
        }
        if let Some(authority) = uri.authority() {
            let host = HeaderValue::from_str(authority.as_str()).expect("authority");
            headers.insert(header::HOST, host);
        }
        let has = |token: &str| {
            self.connection
                .iter()
                .any(|t| t.eq_ignore_ascii_case(token))
        };
        let http11 = !self.http10;
        Parsed {
            method: Method::from_bytes(self.method.as_bytes()).expect("generated method"),
            uri,
            version: if self.http10 {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            },
            headers,
            framing: match self.body {
                Body::None | Body::Length(0, _) => Framing::Empty,
                Body::Length(n, _) => Framing::Length(n),
                Body::Chunked(_) => Framing::Chunked,
            },
            keep_alive: !has("close") && (http11 || has("keep-alive")),
            expect_continue: http11
                && self
                    .expect
                    .is_some_and(|e| e.trim().eq_ignore_ascii_case("100-continue")),
            upgrade: http11 && self.upgrade && has("upgrade"),
            rest,
        }
    }

    /// The same head without the fields that frame the body or name the
    /// host, for the smuggling tests to add their own.
    fn plain(mut self) -> Request {
        self.fields.retain(|(name, _)| {
            !["content-length", "transfer-encoding", "host"]
                .iter()
                .any(|special| name.eq_ignore_ascii_case(special))
        });
        self.body = Body::None;
        self.http10 = false;
        self
    }
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        select(
            &[
                "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"
            ][..]
        )
        .prop_map(String::from),
        "[A-Z][A-Z_-]{0,11}",
    ]
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "/[A-Za-z0-9._~!$&'()*+,;=:@/-]{0,24}(\\?[A-Za-z0-9._~!$&'()*+,;=:@/?-]{0,16})?",
        2 => "https?://[a-z][a-z0-9-]{0,8}(\\.[a-z]{2,4})?(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~-]{0,6}){0,3}",
        1 => Just("*".to_owned()),
    ]
}

/// A field value as written: visible ASCII, obs-text, inner and
/// surrounding SP and HTAB.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![4 => 0x21u8..=0x7e, 1 => Just(b' '), 1 => Just(b'\t'), 1 => 0x80u8..=0xff],
        0..20,
    )
}

/// Fields that say nothing about framing or the connection.
fn other_field() -> impl Strategy<Value = (String, Vec<u8>)> {
    let name = prop_oneof![
        "X-[A-Za-z0-9!#$%&'*+.^_`|~-]{0,12}",
        select(&["Accept", "User-Agent", "Cookie", "Cache-Control", "Via"][..])
            .prop_map(String::from),
    ];
    (name, value())
}

fn body(http10: bool) -> impl Strategy<Value = Body> {
    let length = (
        prop_oneof![0u64..=10, 0u64..=1 << 40],
        prop::collection::vec(0usize..3, 1..=3),
    )
        .prop_map(|(n, zeros)| Body::Length(n, zeros));
    let chunked = select(&["chunked", "Chunked", "CHUNKED", " chunked", "chunked\t"][..]);
    if http10 {
        prop_oneof![Just(Body::None), length].boxed()
    } else {
        prop_oneof![Just(Body::None), length, chunked.prop_map(Body::Chunked)].boxed()
    }
}

/// A Connection field's tokens, and how they are written.
fn connection() -> impl Strategy<Value = (Vec<&'static str>, &'static str)> {
    let token = select(
        &[
            "close",
            "Close",
            "keep-alive",
            "Keep-Alive",
            "upgrade",
            "Upgrade",
            "te",
        ][..],
    );
    (
        prop::collection::vec(token, 1..4),
        select(&[",", ", ", " , ", ",\t"][..]),
    )
}

fn request() -> impl Strategy<Value = Request> {
    any::<bool>()
        .prop_flat_map(|http10| {
            (
                (any::<bool>(), method(), target(), Just(http10)),
                (
                    prop::collection::vec(other_field(), 0..8),
                    prop_oneof![3 => Just(0u32), 1 => any::<u32>()],
                    body(http10),
                    prop::collection::vec(connection(), 0..=2),
                ),
                (
                    prop::option::of(select(
                        &["100-continue", "100-Continue", " 100-continue ", "nope"][..],
                    )),
                    any::<bool>(),
                    prop::option::of("[a-z]{1,10}(\\.[a-z]{2,5})?(:[1-9][0-9]{0,3})?"),
                    any::<u64>(),
                ),
            )
        })
        .prop_flat_map(
            |(line, (others, bare_lf, body, connection), (expect, upgrade, host, case))| {
                let mut fields = others;
                let mut tokens = Vec::new();
                for (list, separator) in connection {
                    fields.push((
                        recased("Connection", case),
                        list.join(separator).into_bytes(),
                    ));
                    tokens.extend(list);
                }
                if let Some(expect) = expect {
                    fields.push((recased("Expect", case), expect.as_bytes().to_vec()));
                }
                if upgrade {
                    fields.push((recased("Upgrade", case), b" websocket".to_vec()));
                }
                // HTTP/1.1 names its host, in the target or a field.
                let (_, _, target, http10) = &line;
                let host = match host {
                    None if !*http10 && !target.contains("://") => Some("fallback.test".to_owned()),
                    host => host,
                };
                if let Some(host) = host {
                    fields.push((recased("Host", case), host.into_bytes()));
                }
                match &body {
                    Body::None => {}
                    Body::Length(n, spellings) => {
                        for zeros in spellings {
                            let value = format!(" {}{n}", "0".repeat(*zeros));
                            fields.push((recased("Content-Length", case), value.into_bytes()));
                        }
                    }
                    Body::Chunked(spelling) => {
                        fields.push((
                            recased("Transfer-Encoding", case),
                            spelling.as_bytes().to_vec(),
                        ));
                    }
                }
                let (blank_line, method, target, http10) = line;
                Just(fields).prop_shuffle().prop_map(move |fields| Request {
                    blank_line,
                    method: method.clone(),
                    target: target.clone(),
                    http10,
                    fields,
                    bare_lf,
                    body: body.clone(),
                    connection: tokens.clone(),
                    expect,
                    upgrade,
                })
            },
        )
}

/// `name` with the case of its letters flipped where `mask` says.
fn recased(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| match mask & (1 << (i % 64)) {
            0 => c,
            _ if c.is_ascii_uppercase() => c.to_ascii_lowercase(),
            _ => c.to_ascii_uppercase(),
        })
        .collect()
}

/// A change that likely breaks a head: a byte put in, changed or taken
/// out, or the head cut short.
#[derive(Debug, Clone)]
enum Damage {
    Insert(Index, u8),
    Replace(Index, u8),
    Remove(Index),
    Truncate(Index),
}

impl Damage {
    fn apply(&self, raw: &mut Vec<u8>) {
        match *self {
            Damage::Insert(at, byte) => raw.insert(at.index(raw.len() + 1), byte),
            Damage::Replace(at, byte) if !raw.is_empty() => {
                let at = at.index(raw.len());
                raw[at] = byte;
            }
            Damage::Remove(at) if !raw.is_empty() => {
                raw.remove(at.index(raw.len()));
            }
            Damage::Truncate(at) => raw.truncate(at.index(raw.len() + 1)),
            Damage::Replace(..) | Damage::Remove(_) => {}
        }
    }
}

/// Bytes that mean something to a head, and some that never should.
fn nasty_byte() -> impl Strategy<Value = u8> {
    prop_oneof![select(&b"\0\r\n \t:;,\x7f\x80\xff/aZ09"[..]), any::<u8>(),]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<Index>(), nasty_byte()).prop_map(|(at, b)| Damage::Insert(at, b)),
        (any::<Index>(), nasty_byte()).prop_map(|(at, b)| Damage::Replace(at, b)),
        any::<Index>().prop_map(Damage::Remove),
        any::<Index>().prop_map(Damage::Truncate),
    ]
}

/// Field lines that let two parsers frame one body differently, or that
/// hide a field from one of them; `parse` must refuse each.
#[derive(Debug, Clone)]
enum Smuggle {
    LengthAndChunked(u64, &'static str),
    DifferingLengths(u64, u64),
    BadLength(&'static str),
    /// A line that starts with SP or HTAB: a folded field, or whitespace
    /// between the request line and the first field.
    ObsFold(&'static str, String),
    /// Transfer-Encoding whose codings are not exactly `chunked`.
    Codings(Vec<&'static str>),
    ChunkedTwice,
    ChunkedInHttp10,
    TwoHosts(String, String),
    SpaceBeforeColon(&'static str),
    BareCr(&'static str),
    Nul(&'static str),
}

impl Smuggle {
    /// The lines, their field names' letters recased by `mask`.
    fn lines(&self, mask: u64) -> Vec<Vec<u8>> {
        let lines: Vec<String> = match self {
            Smuggle::LengthAndChunked(n, te) => {
                vec![
                    format!("Content-Length: {n}"),
                    format!("Transfer-Encoding:{te}"),
                ]
            }
            Smuggle::DifferingLengths(a, b) => {
                vec![
                    format!("Content-Length: {a}"),
                    format!("Content-Length: {b}"),
                ]
            }
            Smuggle::BadLength(value) => vec![format!("Content-Length: {value}")],
            Smuggle::ObsFold(ws, text) => vec![format!("{ws}{text}")],
            Smuggle::Codings(codings) => {
                vec![format!("Transfer-Encoding: {}", codings.join(", "))]
            }
            Smuggle::ChunkedTwice => vec!["Transfer-Encoding: chunked".into(); 2],
            Smuggle::ChunkedInHttp10 => vec!["Transfer-Encoding: chunked".into()],
            Smuggle::TwoHosts(a, b) => vec![format!("Host: {a}"), format!("Host: {b}")],
            Smuggle::SpaceBeforeColon(line) | Smuggle::BareCr(line) | Smuggle::Nul(line) => {
                vec![(*line).into()]
            }
        };
        lines
            .into_iter()
            .map(|line| match line.split_once(':') {
                Some((name, value)) => format!("{}:{value}", recased(name, mask)).into_bytes(),
                None => line.into_bytes(),
            })
            .collect()
    }
}

fn smuggle() -> impl Strategy<Value = Smuggle> {
    let chunked = select(&["chunked", " Chunked", "CHUNKED "][..]);
    let coding = select(
        &[
            "chunked", "gzip", "deflate", "identity", "compress", "x-y", "",
        ][..],
    );
    let host = "[a-z]{1,8}";
    prop_oneof![
        (any::<u64>(), chunked).prop_map(|(n, te)| Smuggle::LengthAndChunked(n, te)),
        (0u64..=1 << 40, 1u64..=1 << 20).prop_map(|(a, d)| Smuggle::DifferingLengths(a, a + d)),
        select(
            &[
                "+5",
                "-1",
                "5,5",
                "5, 6",
                "0x5",
                "5 5",
                "1e3",
                "",
                "5;",
                "99999999999999999999",
                "\u{0663}",
            ][..]
        )
        .prop_map(Smuggle::BadLength),
        (select(&[" ", "\t", "  "][..]), "[ -~]{0,12}")
            .prop_map(|(ws, text)| Smuggle::ObsFold(ws, text)),
        prop::collection::vec(coding, 1..4)
            .prop_filter("exactly chunked is fine", |codings| codings != &["chunked"])
            .prop_map(Smuggle::Codings),
        Just(Smuggle::ChunkedTwice),
        Just(Smuggle::ChunkedInHttp10),
        (host, host).prop_map(|(a, b)| Smuggle::TwoHosts(a, b)),
        select(
            &[
                "Content-Length : 5",
                "Transfer-Encoding\t: chunked",
                "Host : a"
            ][..]
        )
        .prop_map(Smuggle::SpaceBeforeColon),
        select(
            &[
                "X-A: a\rb",
                "Content-Length: 5\r6",
                "Transfer-Encoding: chunked\r "
            ][..]
        )
        .prop_map(Smuggle::BareCr),
        select(
            &[
                "X-A: a\0b",
                "Content-Length: 5\0",
                "Transfer-Encoding: chunked\0"
            ][..]
        )
        .prop_map(Smuggle::Nul),
    ]
}

/// The request line, and a few fields, of a head that is fine so far as
/// httparse goes (the method and target may still be refused after it).
fn request_line() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![method(), "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,10}"];
    let target = prop_oneof![target(), "[!-~]{1,30}", "https?://[!-~]{0,20}"];
    (
        method,
        target,
        any::<bool>(),
        prop::collection::vec(other_field(), 0..3),
    )
        .prop_map(|(method, target, http10, fields)| {
            let version = if http10 { "HTTP/1.0" } else { "HTTP/1.1" };
            let mut raw = format!("{method} {target} {version}\r\n").into_bytes();
            for (name, value) in fields {
                raw.extend([name.as_bytes(), b":", &value, b"\r\n"].concat());
            }
            raw
        })
}

fn limit() -> impl Strategy<Value = usize> {
    prop_oneof![Just(ROOMY), 0usize..600]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic(
        raw in prop::collection::vec(any::<u8>(), 0..400),
        max in limit(),
        arrival in arrival(),
    ) {
        assert_arrival_does_not_matter(&raw, &arrival, max);
    }

    /// Anything at all after a good start: bad field lines, NULs, bare CR
    /// and LF, non-UTF-8.
    #[test]
    fn arbitrary_fields_never_panic(
        line in request_line(),
        tail in prop::collection::vec(nasty_byte(), 0..300),
        end in select(&["", "\r\n\r\n", "\n\n", "\r\n"][..]),
        max in limit(),
        arrival in arrival(),
    ) {
        let raw = [&line[..], &tail, end.as_bytes()].concat();
        assert_arrival_does_not_matter(&raw, &arrival, max);
    }

    #[test]
    fn odd_field_lines_never_panic(
        line in request_line(),
        fields in prop::collection::vec((
            prop::collection::vec(nasty_byte(), 0..16),
            prop::collection::vec(nasty_byte(), 0..16),
            select(&["\r\n", "\n", "\r", ""][..]),
        ), 0..6),
        arrival in arrival(),
    ) {
        let mut raw = line;
        for (name, value, end) in fields {
            raw.extend([&name[..], b":", &value, end.as_bytes()].concat());
        }
        raw.extend_from_slice(b"\r\n");
        assert_arrival_does_not_matter(&raw, &arrival, ROOMY);
    }

    #[test]
    fn a_valid_head_parses_the_same_however_it_arrives(
        request in request(),
        rest in prop::collection::vec(any::<u8>(), 0..48),
        arrival in arrival(),
    ) {
        let raw = [request.bytes(), rest.clone()].concat();
        let want = Outcome::Parsed(Box::new(request.expected(rest)));
        prop_assert_eq!(&whole(&raw, ROOMY), &want);
        prop_assert_eq!(&feed(&raw, &arrival, ROOMY), &want);
    }

    /// A head of exactly `max_bytes` is taken; one byte more is too large,
    /// whatever follows it and however it arrives.
    #[test]
    fn the_limit_is_exact(
        request in request(),
        rest in prop::collection::vec(any::<u8>(), 0..48),
        slack in -8i64..8,
        arrival in arrival(),
    ) {
        let head = request.bytes();
        let max = head.len().saturating_add_signed(slack as isize);
        let raw = [head, rest.clone()].concat();
        let want = if slack >= 0 {
            Outcome::Parsed(Box::new(request.expected(rest)))
        } else {
            Outcome::Refused(HeadError::TooLarge)
        };
        prop_assert_eq!(&whole(&raw, max), &want);
        prop_assert_eq!(&feed(&raw, &arrival, max), &want);
    }

    #[test]
    fn a_damaged_head_gets_the_same_answer_however_it_arrives(
        request in request(),
        damage in prop::collection::vec(damage(), 1..4),
        arrival in arrival(),
    ) {
        let mut raw = request.bytes();
        for damage in &damage {
            damage.apply(&mut raw);
        }
        assert_arrival_does_not_matter(&raw, &arrival, ROOMY);
    }

    #[test]
    fn ambiguous_framing_is_refused(
        request in request(),
        smuggle in smuggle(),
        places in prop::collection::vec(any::<Index>(), 2),
        case in any::<u64>(),
        arrival in arrival(),
    ) {
        let mut request = request.plain();
        request.http10 = matches!(smuggle, Smuggle::ChunkedInHttp10);
        // A Host of its own (two Hosts bring theirs), so that a refusal is
        // for the smuggled lines.
        if !matches!(smuggle, Smuggle::TwoHosts(..)) {
            request.fields.push(("Host".to_owned(), b"smuggle.test".to_vec()));
        }
        let mut lines = request.lines();
        let first_field = lines.len() - request.fields.len();
        for (line, place) in smuggle.lines(case).into_iter().zip(&places) {
            lines.insert(first_field + place.index(lines.len() - first_field + 1), line);
        }
        let raw = request.render(lines);
        let whole = whole(&raw, ROOMY);
        prop_assert!(
            matches!(whole, Outcome::Refused(HeadError::Malformed(reason)) if reason != "no Host"),
            "{:?} gave {:?}", String::from_utf8_lossy(&raw), whole
        );
        prop_assert_eq!(feed(&raw, &arrival, ROOMY), whole);
    }
}

/// `MAX_HEADERS` fields are fine; one more is refused as too large.
#[test]
fn the_field_count_limit_is_exact() {
    for count in MAX_HEADERS - 3..=MAX_HEADERS + 3 {
        // HTTP/1.0: no Host needed, so the fields counted are these.
        let mut raw = b"GET / HTTP/1.0\r\n".to_vec();
        for i in 0..count {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let whole = whole(&raw, ROOMY);
        match &whole {
            Outcome::Parsed(parsed) if count <= MAX_HEADERS => {
                assert_eq!(parsed.headers.len(), count);
            }
            Outcome::Refused(HeadError::TooLarge) if count > MAX_HEADERS => {}
            other => panic!("{count} fields: {other:?}"),
        }
        assert_eq!(feed(&raw, &Arrival::Every(7), ROOMY), whole);
    }
}

/// http refuses names and targets past 64 KiB; a head that big (allowed by
/// a large `max_header_bytes`) is refused as malformed, not a panic.
#[test]
fn huge_names_and_targets_are_refused_not_a_panic() {
    let with_name = |len: usize| {
        let name = "n".repeat(len);
        format!("GET / HTTP/1.1\r\nHost: a\r\n{name}: v\r\n\r\n").into_bytes()
    };
    let with_target = |len: usize| {
        let target = format!("/{}", "t".repeat(len - 1));
        format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes()
    };
    let cases = [
        (with_name(65_535), true),
        (with_name(65_536), false),
        (with_name(100_000), false),
        (with_target(65_534), true),
        (with_target(65_535), false),
        (with_target(100_000), false),
    ];
    let pieces = Arrival::Every(4093);
    for (raw, fine) in cases {
        let whole = whole(&raw, 1 << 20);
        assert_eq!(
            matches!(whole, Outcome::Parsed(_)),
            fine,
            "{} bytes: {whole:?}",
            raw.len()
        );
        if !fine {
            assert!(matches!(whole, Outcome::Refused(HeadError::Malformed(_))));
        }
        assert_eq!(feed(&raw, &pieces, 1 << 20), whole);
    }
}
