//! Valid response heads as an upstream may send them, and what each
//! means by RFC 9112, worked out apart from the parser.

use proptest::prelude::*;

use super::*;

/// A field as an upstream writes it: `name:` then `ws` then `value`.
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) ws: &'static str,
    pub(super) value: Vec<u8>,
}

impl Field {
    pub(super) fn new(name: &str, value: &str) -> Field {
        Field {
            name: name.into(),
            ws: " ",
            value: value.into(),
        }
    }

    pub(super) fn line(&self) -> Vec<u8> {
        [self.name.as_bytes(), b":", self.ws.as_bytes(), &self.value].concat()
    }

    pub(super) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// A valid response head from an upstream (after any interim ones), with
/// what follows it, and whether it answers a HEAD request.
#[derive(Debug, Clone)]
pub(super) struct Upstream {
    pub(super) http10: bool,
    pub(super) interim: Vec<u16>,
    pub(super) status: u16,
    /// `None`: not even the space before it.
    pub(super) reason: Option<String>,
    pub(super) fields: Vec<Field>,
    /// Bare LF line ends, which HTTP/1.1 recipients may accept.
    pub(super) lf: bool,
    pub(super) after: Vec<u8>,
    pub(super) head_request: bool,
}

impl Upstream {
    pub(super) fn bytes(&self) -> Vec<u8> {
        self.bytes_with(0, &[])
    }

    /// The bytes with `lines` put in as they are before field `at`.
    pub(super) fn bytes_with(&self, at: usize, lines: &[Vec<u8>]) -> Vec<u8> {
        let eol: &[u8] = if self.lf { b"\n" } else { b"\r\n" };
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let mut out = Vec::new();
        for code in &self.interim {
            out.extend_from_slice(format!("{version} {code} Interim").as_bytes());
            out.extend_from_slice(eol);
            out.extend_from_slice(b"Link: </style.css>");
            out.extend_from_slice(eol);
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(format!("{version} {}", self.status).as_bytes());
        if let Some(reason) = &self.reason {
            out.push(b' ');
            out.extend_from_slice(reason.as_bytes());
        }
        out.extend_from_slice(eol);
        let at = at.min(self.fields.len());
        let fields = self.fields.iter().map(Field::line);
        let lines = fields
            .clone()
            .take(at)
            .chain(lines.iter().cloned())
            .chain(fields.skip(at));
        for line in lines {
            out.extend_from_slice(&line);
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(eol);
        out.extend_from_slice(&self.after);
        out
    }

    pub(super) fn no_body(&self) -> bool {
        self.head_request || matches!(self.status, 101 | 204 | 304)
    }

    /// Whether the body comes in a coding other than chunked, which weir
    /// refuses rather than pass on re-framed.
    pub(super) fn foreign_coding(&self) -> bool {
        let codings: Vec<&[u8]> = self
            .fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("transfer-encoding"))
            .map(|f| &f.value[..])
            .collect();
        let last = codings
            .last()
            .and_then(|c| c.rsplit(|&b| b == b',').next())
            .map(<[u8]>::trim_ascii);
        !self.no_body() && last.is_some_and(|l| !l.eq_ignore_ascii_case(b"chunked"))
    }

    /// What the head means, read from RFC 9112 rather than from the parser:
    /// framing by Transfer-Encoding over Content-Length, no body for HEAD,
    /// 204 and 304, a close whenever anything says so.
    pub(super) fn meaning(&self) -> Seen {
        let no_body = self.no_body();
        let mut length: Option<(u64, &[u8])> = None;
        let mut codings: Vec<&[u8]> = Vec::new();
        let (mut close, mut keep_alive_token, mut to_map) = (false, false, no_body);
        let mut headers = HeaderMap::new();
        let mut raw = Vec::new();
        for field in &self.fields {
            let value = &field.value[..];
            let kept = match field.name.to_ascii_lowercase().as_str() {
                "content-length" => {
                    let n = std::str::from_utf8(value).unwrap().trim().parse().unwrap();
                    length = length.or(Some((n, value)));
                    false
                }
                "transfer-encoding" => {
                    codings.push(value);
                    false
                }
                "connection" => {
                    let mut names_others = false;
                    for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                        match token.to_ascii_lowercase().as_slice() {
                            b"close" => close = true,
                            b"keep-alive" => keep_alive_token = true,
                            _ => names_others = true,
                        }
                    }
                    to_map |= names_others;
                    names_others || no_body
                }
                "keep-alive" => false,
                "te"
                | "upgrade"
                | "proxy-connection"
                | "proxy-authenticate"
                | "proxy-authorization" => {
                    to_map = true;
                    true
                }
                _ => true,
            };
            if kept {
                let name = HeaderName::from_bytes(field.name.as_bytes()).unwrap();
                headers.append(name, HeaderValue::from_bytes(value).unwrap());
                raw.extend_from_slice(&field.line());
                raw.extend_from_slice(b"\r\n");
            }
        }
        let last_is_chunked = |coding: &[u8]| {
            let last = coding.rsplit(|&b| b == b',').next().unwrap_or_default();
            last.trim_ascii().eq_ignore_ascii_case(b"chunked")
        };
        let chunked = codings.last().is_some_and(|c| last_is_chunked(c));
        let framing = if no_body {
            Some(Framing::Empty)
        } else if !codings.is_empty() {
            chunked.then_some(Framing::Chunked)
        } else {
            match length {
                Some((0, _)) => Some(Framing::Empty),
                Some((n, _)) => Some(Framing::Length(n)),
                None => None,
            }
        };
        if let Some((_, value)) = length
            && (no_body || codings.is_empty())
        {
            headers.append(
                header::CONTENT_LENGTH,
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        // HTTP/1.0 keeps a connection only when asked, and never one that
        // came with a Transfer-Encoding (RFC 9112 6.1); a length beside a
        // Transfer-Encoding, or a coding other than chunked, is not
        // trusted again.
        close |= self.http10 && (!keep_alive_token || !codings.is_empty());
        close |= codings.iter().any(|c| !last_is_chunked(c));
        close |= !no_body && !codings.is_empty() && length.is_some();
        close |= framing.is_none();
        Seen {
            status: StatusCode::from_u16(self.status).unwrap(),
            headers,
            raw: (!to_map).then_some(raw),
            framing,
            keep_alive: !close && self.status != 101,
        }
    }
}

/// `name` in upper and lower case as `mask` says, letter by letter.
fn cased(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

pub(super) fn named(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    (prop::sample::select(names), any::<u64>()).prop_map(|(name, mask)| cased(name, mask))
}

fn whitespace() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["", " ", " ", "  ", "\t", " \t"][..])
}

/// A field value: visible ASCII, spaces and tabs inside, obs-text; no
/// whitespace at either end (a recipient trims it).
fn field_value() -> impl Strategy<Value = Vec<u8>> {
    let byte =
        prop_oneof![8 => 0x21u8..=0x7e, 1 => Just(b' '), 1 => Just(b'\t'), 1 => 0x80u8..=0xff];
    prop::collection::vec(byte, 0..20).prop_map(|value| value.trim_ascii().to_vec())
}

fn plain_field() -> impl Strategy<Value = Field> {
    let name = prop_oneof![
        named(&[
            "Server",
            "Date",
            "Set-Cookie",
            "X-Trace",
            "Content-Encoding",
            "Content-Type",
            "Vary",
            "ETag",
            "Link",
        ]),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}",
    ];
    (name, whitespace(), field_value()).prop_map(|(name, ws, value)| Field { name, ws, value })
}

/// Fields `forward::strip_hop_by_hop` must see in a map.
fn hop_by_hop_field() -> impl Strategy<Value = Field> {
    let field = prop::sample::select(
        &[
            ("Keep-Alive", "timeout=5, max=100"),
            ("Upgrade", "websocket"),
            ("TE", "trailers"),
            ("Proxy-Authenticate", "Basic realm=\"up\""),
            ("Proxy-Connection", "keep-alive"),
        ][..],
    );
    (field, any::<u64>()).prop_map(|((name, value), mask)| Field::new(&cased(name, mask), value))
}

fn connection_field() -> impl Strategy<Value = Field> {
    let token = named(&["close", "keep-alive", "x-secret", "upgrade"]);
    (
        prop::collection::vec(token, 1..4),
        prop::sample::select(&[",", ", ", " , "][..]),
        named(&["Connection"]),
    )
        .prop_map(|(tokens, comma, name)| Field::new(&name, &tokens.join(comma)))
}

/// A Content-Length of up to 19 digits, leading zeros and all.
pub(super) fn length_value() -> impl Strategy<Value = (u64, String)> {
    let n = prop_oneof![0..100u64, 0..=9_999_999_999_999_999_999u64];
    (n, 0..3usize).prop_map(|(n, zeros)| {
        let digits = n.to_string();
        let zeros = zeros.min(19 - digits.len());
        (n, format!("{}{digits}", "0".repeat(zeros)))
    })
}

/// The fields that frame the body: none, one length (maybe repeated, the
/// same number each time), or one Transfer-Encoding.
fn framing_fields() -> impl Strategy<Value = Vec<Field>> {
    let length =
        (length_value(), 1..4usize, any::<u64>()).prop_flat_map(|((n, first), copies, mask)| {
            prop::collection::vec(0..3usize, copies - 1).prop_map(move |zeros| {
                let name = cased("content-length", mask);
                let mut fields = vec![Field::new(&name, &first)];
                for zeros in zeros {
                    let digits = n.to_string();
                    let zeros = zeros.min(19 - digits.len());
                    fields.push(Field::new(&name, &format!("{}{digits}", "0".repeat(zeros))));
                }
                fields
            })
        });
    let coding = prop::sample::select(
        &[
            "chunked",
            "Chunked",
            "gzip, chunked",
            "gzip,chunked",
            "gzip",
            "chunked, gzip",
            "identity",
        ][..],
    );
    let transfer_encoding = (coding, named(&["Transfer-Encoding"]))
        .prop_map(|(coding, name)| vec![Field::new(&name, coding)]);
    prop_oneof![Just(Vec::new()), length, transfer_encoding]
}

fn response_fields() -> impl Strategy<Value = Vec<Field>> {
    (
        prop::collection::vec(plain_field(), 0..8),
        framing_fields(),
        prop::collection::vec(connection_field(), 0..3),
        prop::collection::vec(hop_by_hop_field(), 0..3),
    )
        .prop_flat_map(|(mut fields, framing, connection, hop_by_hop)| {
            fields.extend(framing);
            fields.extend(connection);
            fields.extend(hop_by_hop);
            Just(fields).prop_shuffle()
        })
}

pub(super) fn upstream_response() -> impl Strategy<Value = Upstream> {
    (
        any::<bool>(),
        prop::collection::vec(prop_oneof![Just(100u16), 102..=199u16], 0..3),
        prop_oneof![Just(101u16), Just(204), Just(304), 200..=599u16],
        prop::option::of("[A-Za-z \t]{0,15}"),
        response_fields(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..32),
        any::<bool>(),
    )
        .prop_map(
            |(http10, interim, status, reason, fields, lf, after, head_request)| Upstream {
                http10,
                interim,
                status,
                reason,
                fields,
                lf,
                after,
                head_request,
            },
        )
}

/// A response that has a body by its status and request (not HEAD, not
/// 101, 204 or 304), framed by nothing yet.
pub(super) fn unframed_response_with_body() -> impl Strategy<Value = Upstream> {
    (upstream_response(), 200..=599u16).prop_map(|(mut response, status)| {
        response.head_request = false;
        response.status = if matches!(status, 204 | 304) {
            200
        } else {
            status
        };
        response
            .fields
            .retain(|f| !f.is("content-length") && !f.is("transfer-encoding"));
        response
    })
}
