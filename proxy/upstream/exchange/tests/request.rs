//! Properties of `request_head`: the bytes read back as the method,
//! target and fields that went in, with one framing field at most.

use bytes::Bytes;
use http_body_util::BodyExt;
use proptest::prelude::*;

use super::*;

/// A request body as the exchange may get one.
#[derive(Debug, Clone)]
pub(super) enum Sent {
    /// Known to be empty (a GET, a retry).
    Nothing,
    /// Its length known ahead.
    Known(Vec<u8>),
    /// Its length not known (a client's chunked body).
    Streamed(Vec<u8>),
}

impl Sent {
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Sent::Nothing => &[],
            Sent::Known(bytes) | Sent::Streamed(bytes) => bytes,
        }
    }

    pub(super) fn body(&self) -> Body {
        match self {
            Sent::Nothing => crate::http::body::empty(),
            Sent::Known(bytes) => crate::http::body::full(bytes.clone()),
            Sent::Streamed(bytes) => Frames {
                frames: [Frame::data(Bytes::from(bytes.clone()))].into(),
                length: None,
            }
            .boxed(),
        }
    }
}

/// A request as it reaches `request_head`.
#[derive(Debug, Clone)]
struct ToSend {
    method: Method,
    target: String,
    /// As they go upstream: hop-by-hop fields removed.
    headers: HeaderMap,
    added: Vec<(HeaderName, HeaderValue)>,
    body: Sent,
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        prop::sample::select(
            &[
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
                Method::TRACE,
            ][..]
        ),
        "[A-Z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,12}"
            .prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// Origin-form targets as `http` lets them through, and the two odd ones.
fn target() -> impl Strategy<Value = String> {
    let path = prop::collection::vec(
        prop::sample::select(
            &[
                "a", "Z", "0", "-", ".", "_", "~", "%2F", "%", "/", "?", "=", "&", "+", ":", "@",
                "!", "$", "'", "(", ")", "*", ",", ";", "\"", "{", "}", "|", "\\", "^", "`", "[",
                "]", "é", "#",
            ][..],
        ),
        0..24,
    );
    prop_oneof![
        1 => Just(String::new()),
        1 => Just("*".to_string()),
        8 => path.prop_filter_map("a valid target", |pieces| {
            let target = http::uri::PathAndQuery::try_from(format!("/{}", pieces.concat())).ok()?;
            Some(target.as_str().to_string())
        }),
    ]
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    let byte =
        prop_oneof![8 => 0x21u8..=0x7e, 1 => Just(b' '), 1 => Just(b'\t'), 1 => 0x80u8..=0xff];
    prop::collection::vec(byte, 0..24).prop_map(|value| HeaderValue::from_bytes(&value).unwrap())
}

/// A client's fields as they go upstream: hop-by-hop ones removed, as the
/// proxy removes them, `Connection: upgrade` kept for an upgrade.
fn client_headers() -> impl Strategy<Value = HeaderMap> {
    let name = prop_oneof![
        4 => "[a-z][a-z0-9-]{0,10}",
        1 => prop::sample::select(
            &["host", "accept", "cookie", "user-agent", "connection", "te", "transfer-encoding", "keep-alive", "upgrade", "proxy-authorization"][..]
        ).prop_map(String::from),
    ];
    (
        prop::collection::vec((name, header_value()), 0..12),
        any::<bool>(),
    )
        .prop_map(|(fields, upgrade)| {
            let mut headers = HeaderMap::new();
            for (name, value) in fields {
                headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
            }
            forward::strip_hop_by_hop(&mut headers, upgrade);
            headers
        })
}

fn added() -> impl Strategy<Value = Vec<(HeaderName, HeaderValue)>> {
    let name = prop::sample::select(
        &[
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-request-id",
        ][..],
    );
    prop::collection::vec((name, header_value()), 0..5).prop_map(|fields| {
        fields
            .into_iter()
            .map(|(name, value)| (HeaderName::from_static(name), value))
            .collect()
    })
}

fn upstream_request() -> impl Strategy<Value = ToSend> {
    let body = prop_oneof![
        Just(Sent::Nothing),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Sent::Known),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Sent::Streamed),
    ];
    (
        method(),
        target(),
        client_headers(),
        added(),
        body,
        any::<bool>(),
    )
        .prop_map(|(method, target, mut headers, added, body, length_field)| {
            // A client's own length comes along as its parser checked it:
            // the body's.
            if length_field && !matches!(body, Sent::Nothing) {
                headers.insert(
                    header::CONTENT_LENGTH,
                    HeaderValue::from(body.bytes().len()),
                );
            }
            ToSend {
                method,
                target,
                headers,
                added,
                body,
            }
        })
}

/// Fields as a recipient compares them: the name, the value without the
/// whitespace around it (RFC 9110 5.5).
fn compared(name: &[u8], value: &[u8]) -> (String, Vec<u8>) {
    (
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        value.trim_ascii().to_vec(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The request head reads back as the method, target and fields that
    /// went in, each field on its own line, with one framing field at most
    /// that says what the body is.
    #[test]
    fn a_request_head_reads_back_as_it_was_meant(request in upstream_request()) {
        let mut out = Vec::new();
        let outgoing = Outgoing {
            method: &request.method,
            target: &request.target,
            headers: &request.headers,
            added: &request.added,
        };
        let framing = request_head(&mut out, outgoing, &request.body.body());

        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut fields);
        let len = match parsed.parse(&out) {
            Ok(httparse::Status::Complete(len)) => len,
            other => return Err(TestCaseError::fail(format!("{other:?}: {:?}", String::from_utf8_lossy(&out)))),
        };
        prop_assert_eq!(len, out.len(), "nothing after the head");
        prop_assert_eq!(parsed.method, Some(request.method.as_str()));
        let target = if request.target.is_empty() { "/" } else { &request.target };
        prop_assert_eq!(parsed.path, Some(target));
        prop_assert_eq!(parsed.version, Some(1));
        // A CR or LF inside a field would start a line of its own: lines are
        // exactly the request line, the fields and the empty one.
        prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), parsed.headers.len() + 2);
        prop_assert_eq!(out.iter().filter(|&&b| b == b'\r').count(), parsed.headers.len() + 2);

        let body = request.body.bytes();
        let length = match &request.body {
            Sent::Streamed(_) if !request.headers.contains_key(header::CONTENT_LENGTH) => None,
            _ => Some(body.len() as u64),
        };
        let ended = matches!(request.body, Sent::Nothing) || matches!(request.body, Sent::Known(_)) && body.is_empty();
        let announced = matches!(request.method, Method::POST | Method::PUT | Method::PATCH);
        let (field, meant) = match length {
            Some(0) if ended && !announced => (None, BodyFraming::None),
            Some(0) => (Some(("content-length".to_string(), b"0".to_vec())), BodyFraming::None),
            Some(n) => (Some(("content-length".to_string(), n.to_string().into_bytes())), BodyFraming::Length(n)),
            None => (Some(("transfer-encoding".to_string(), b"chunked".to_vec())), BodyFraming::Chunked),
        };
        prop_assert_eq!(framing, meant);
        let mut want: Vec<_> = request
            .headers
            .iter()
            .filter(|(name, _)| **name != header::CONTENT_LENGTH)
            .chain(request.added.iter().map(|(name, value)| (name, value)))
            .map(|(name, value)| compared(name.as_str().as_bytes(), value.as_bytes()))
            .collect();
        want.extend(field);
        let got: Vec<_> = parsed.headers.iter().map(|f| compared(f.name.as_bytes(), f.value)).collect();
        prop_assert_eq!(got, want);
        let framing_fields = parsed
            .headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("content-length") || f.name.eq_ignore_ascii_case("transfer-encoding"))
            .count();
        prop_assert!(framing_fields <= 1, "{:?}", String::from_utf8_lossy(&out));
    }
}
