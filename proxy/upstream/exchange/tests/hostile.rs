//! Odd and hostile bytes where a response head should be: pieces of
//! heads, head-shaped lines of every kind, valid heads with bytes changed,
//! and fields that could frame a body two ways.

use proptest::prelude::*;

use super::upstream::{named, upstream_response};

/// Pieces that odd and hostile heads are made of.
const PIECES: &[&[u8]] = &[
    b"HTTP/1.1 ",
    b"HTTP/1.0 ",
    b"HTTP/2 ",
    b"HTTP/1.2 ",
    b"http/1.1 ",
    b"HTTP/1.1 200",
    b"HTTP/1.0 200",
    b"HTTP/2 200",
    b"HTTP/1.1 99 x",
    b"HTTP/1.1 1000 x",
    b"HTTP/1.1 000 x",
    b"HTTP/1.1 999 x",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 200 OK",
    b" OK",
    b"\r\n",
    b"\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b"\0",
    b":",
    b" ",
    b"\t",
    b"\x7f",
    b"\xff\xfe",
    b"Content-Length: ",
    b"content-length:",
    b"Content-Length : ",
    b"Transfer-Encoding: ",
    b"chunked",
    b"gzip, chunked",
    b"Connection: ",
    b"close",
    b"keep-alive",
    b"x-secret",
    b"Keep-Alive: timeout=5",
    b"Upgrade: websocket",
    b"X-Secret: 1",
    b"X-A: b",
    b"5",
    b"0",
    b"-1",
    b"+5",
    b"5, 5",
    b"18446744073709551616",
    b"9999999999999999999",
];

const STATUS_LINES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK",
    b"HTTP/1.0 200",
    b"HTTP/1.1 200 ",
    b"HTTP/2 200",
    b"HTTP/1.1 99 x",
    b"HTTP/1.1 1000 x",
    b"HTTP/1.1 000 x",
    b"HTTP/1.1 600 x",
    b"HTTP/1.1 999 x",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK",
    b"HTTP/1.1 200 \xff\xfe",
    b"HTTP/1.1 200 OK\0",
    b"\r\nHTTP/1.1 200 OK",
];

const FIELD_LINES: &[&[u8]] = &[
    b"Content-Length: 5",
    b"content-length: 0",
    b"Content-Length: 5, 5",
    b"Content-Length: 18446744073709551616",
    b"Content-Length: -1",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Transfer-Encoding: gzip, chunked",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: x-secret",
    b"X-Secret: 1",
    b"Keep-Alive: timeout=5",
    b"Upgrade: websocket",
    b"Proxy-Authenticate: Basic",
    b"TE: trailers",
    b"Server: up",
    b"X-Empty:",
    b"X-Blank: \t ",
    b"X-Obs: \xe9t\xe9",
    b" folded",
    b"X-Nul: a\0b",
    b"X-Cr: a\rb",
    b"X-Del: a\x7fb",
    b"Bad Name: x",
    b": no name",
    b"no colon",
];

/// Bytes shaped like a head, line by line, of odd status lines and fields.
fn head_like() -> impl Strategy<Value = Vec<u8>> {
    const EOLS: &[&[u8]] = &[b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"];
    let eol = || prop::sample::select(EOLS);
    let line = (prop::sample::select(FIELD_LINES), eol());
    (
        prop::sample::select(STATUS_LINES),
        eol(),
        prop::collection::vec(line, 0..8),
        eol(),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(status, eol, lines, end, after)| {
            let mut out = [status, eol].concat();
            for (line, eol) in lines {
                out.extend_from_slice(line);
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(end);
            out.extend_from_slice(&after);
            out
        })
}

/// Bytes that are sometimes a head: pieces of one, random bytes, numbers
/// of any size, odd lines in a head's shape, or a valid head with a few
/// bytes changed.
pub(super) fn noise() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        6 => prop::sample::select(PIECES).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 0..8),
        1 => any::<u64>().prop_map(|n| n.to_string().into_bytes()),
    ];
    prop_oneof![
        prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat()),
        head_like(),
        (
            upstream_response(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4)
        )
            .prop_map(|(response, edits)| {
                let mut bytes = response.bytes();
                for (at, byte, how) in edits {
                    let at = at.index(bytes.len() + 1);
                    match how {
                        0 => bytes.insert(at, byte),
                        1 if at < bytes.len() => bytes[at] = byte,
                        _ if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => bytes.push(byte),
                    }
                }
                bytes
            }),
    ]
}

/// Framing fields that could be read two ways, each refused: differing or
/// listed lengths, lengths that are not plain digits or overflow, a folded
/// line, whitespace before the colon, a control byte or bare CR.
pub(super) fn ambiguous_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let name = || named(&["Content-Length"]);
    let differing = (name(), any::<u64>(), any::<u64>())
        .prop_filter("differing", |(_, a, b)| a % 100_000 != b % 100_000)
        .prop_map(|(name, a, b)| {
            vec![
                format!("{name}: {}", a % 100_000).into_bytes(),
                b"X-Between: 1".to_vec(),
                format!("{name}: {}", b % 100_000).into_bytes(),
            ]
        });
    let listed = (name(), 0..1000u64, 0..1000u64)
        .prop_map(|(name, a, b)| vec![format!("{name}: {a}, {b}").into_bytes()]);
    let not_digits = (name(), "[-+0-9a-fxX ,.;e_]{0,21}")
        .prop_filter("not a plain length", |(_, value)| {
            let digits = value.trim_matches(' ');
            digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit())
        })
        .prop_map(|(name, value)| vec![format!("{name}: {value}").into_bytes()]);
    let overflowing = (name(), 0..=u128::from(u64::MAX)).prop_map(|(name, n)| {
        vec![format!("{name}: {}", u128::from(u64::MAX) + 1 + n).into_bytes()]
    });
    let folded = prop::sample::select(
        &[
            ("Content-Length: 5", " 6"),
            ("Content-Length: 5", "\t"),
            ("Transfer-Encoding: gzip", " chunked"),
            ("Transfer-Encoding: chunked", "\tgzip"),
            ("X-Folded: a", " b"),
        ][..],
    )
    .prop_map(|(line, fold)| vec![line.as_bytes().to_vec(), fold.as_bytes().to_vec()]);
    let spaced = prop::sample::select(
        &[
            "Content-Length : 5",
            "Content-Length\t: 5",
            "Transfer-Encoding : chunked",
            " Content-Length: 5",
            "X-A : b",
        ][..],
    )
    .prop_map(|line| vec![line.as_bytes().to_vec()]);
    let control = (
        prop::sample::select(&["Content-Length: 5", "Transfer-Encoding: chunked", "X-A: b"][..]),
        prop_oneof![0u8..=8, 0x0bu8..=0x1f, Just(0x7f)],
        0..2usize,
    )
        .prop_map(|(line, byte, at)| {
            let mut line = line.as_bytes().to_vec();
            // Inside the value, or right before the line's end (where a CR
            // would only make a bare-LF line end a CRLF).
            let at = if at == 0 || byte == b'\r' {
                line.len() - 1
            } else {
                line.len()
            };
            line.insert(at, byte);
            vec![line]
        });
    // A bare CR where a line could end: one field to a recipient that ends
    // lines at CR alone, two to weir.
    let bare_cr = prop::sample::select(
        &[
            "X-A: b\rContent-Length: 5",
            "Content-Length: 5\rContent-Length: 6",
            "Content-Length: 5\rTransfer-Encoding: chunked",
            "Transfer-Encoding: gzip\r chunked",
        ][..],
    )
    .prop_map(|line| vec![line.as_bytes().to_vec()]);
    prop_oneof![
        differing,
        listed,
        not_digits,
        overflowing,
        folded,
        spaced,
        control,
        bare_cr,
    ]
}
