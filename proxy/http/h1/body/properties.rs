//! Properties of `Decoder`: a body comes back byte for byte however it was
//! framed and however it arrived, with its trailer fields (those allowed
//! on), decoding stops where the framing ends (what follows stays in the
//! buffer), and nothing fed to it gives more data than was fed.

use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::*;
use crate::http::h1::arrival::{Arrival, arrival};

/// Where decoding stopped once every byte was fed.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    /// `Decoded::End` (or `Decoded::Trailers`, with them), with what was
    /// left for the next request.
    End(Vec<u8>, Option<HeaderMap>),
    /// `Decoded::More` with nothing left to feed.
    More,
    Failed(BodyError),
}

/// Decodes `bytes` as they arrive: the data, and where it stopped.
fn feed(framing: Framing, bytes: &[u8], arrival: &Arrival) -> (Vec<u8>, Stop) {
    feed_within(framing, MAX_TRAILERS, bytes, arrival)
}

/// The trailer section limit the properties decode with.
const MAX_TRAILERS: usize = 16 * 1024;

fn feed_within(
    framing: Framing,
    max_trailers: usize,
    bytes: &[u8],
    arrival: &Arrival,
) -> (Vec<u8>, Stop) {
    let mut decoder = Decoder::new(framing, max_trailers);
    let mut pieces = arrival.pieces(bytes.len()).into_iter();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(piece)) => {
                assert!(!piece.is_empty(), "an empty data frame");
                data.extend_from_slice(&piece);
            }
            Ok(Decoded::More) => {
                // Only a trailer section waits in the buffer to be whole.
                let in_trailers = matches!(
                    decoder,
                    Decoder::Chunked {
                        at: Chunk::Trailers { .. } | Chunk::TrailersCr { .. },
                        ..
                    }
                );
                assert!(
                    buf.is_empty() || in_trailers,
                    "asked for more with {buf:?} unread"
                );
                match pieces.next() {
                    Some(piece) => buf.extend_from_slice(&bytes[piece]),
                    None => return (data, Stop::More),
                }
            }
            Ok(end @ (Decoded::End | Decoded::Trailers(_))) => {
                assert!(decoder.is_done());
                let trailers = match end {
                    Decoded::Trailers(trailers) => {
                        assert!(!trailers.is_empty(), "an empty trailers frame");
                        Some(*trailers)
                    }
                    _ => None,
                };
                let fed = bytes.len() - pieces.map(|piece| piece.len()).sum::<usize>();
                buf.extend_from_slice(&bytes[fed..]);
                return (data, Stop::End(buf.to_vec(), trailers));
            }
            Err(e) => return (data, Stop::Failed(e)),
        }
    }
}

/// How one chunk-size line is written.
#[derive(Debug, Clone)]
struct SizeLine {
    upper: bool,
    zeros: usize,
    extensions: Vec<(String, Option<String>)>,
}

impl SizeLine {
    fn write(&self, size: u64, out: &mut Vec<u8>) {
        let hex = if self.upper {
            format!("{size:X}")
        } else {
            format!("{size:x}")
        };
        // The decoder takes sixteen digits at most, leading zeros included.
        let zeros = self.zeros.min(16 - hex.len());
        out.extend_from_slice("0".repeat(zeros).as_bytes());
        out.extend_from_slice(hex.as_bytes());
        for (name, value) in &self.extensions {
            out.push(b';');
            out.extend_from_slice(name.as_bytes());
            if let Some(value) = value {
                out.push(b'=');
                out.extend_from_slice(value.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

fn size_line() -> impl Strategy<Value = SizeLine> {
    let extension = (
        "[a-z][a-z0-9-]{0,6}",
        prop::option::of(prop_oneof![
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,8}",
            "\"[ !#-~]{0,8}\"",
        ]),
    );
    (
        any::<bool>(),
        prop_oneof![Just(0usize), 0usize..16],
        prop::collection::vec(extension, 0..3),
    )
        .prop_map(|(upper, zeros, extensions)| SizeLine {
            upper,
            zeros,
            extensions,
        })
}

/// A body, chunked: the body, its encoding, the trailer fields that go on
/// from it, and what follows the encoding.
#[derive(Debug, Clone)]
struct Chunked {
    body: Vec<u8>,
    encoded: Vec<u8>,
    trailers: Option<HeaderMap>,
    after: Vec<u8>,
}

/// A trailer field's name: any token, or one no trailer carries on.
fn trailer_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z][A-Za-z0-9-]{0,10}",
        1 => select(
            &[
                "Content-Length",
                "transfer-encoding",
                "Host",
                "TE",
                "Connection",
                "Keep-Alive",
                "Trailer",
                "X-Forwarded-For",
                "Authorization",
            ][..]
        )
        .prop_map(str::to_owned),
    ]
}

fn chunked() -> impl Strategy<Value = Chunked> {
    let trailer = (trailer_name(), "[ -~]{0,20}");
    (
        prop::collection::vec(any::<u8>(), 0..1200),
        prop::collection::vec(any::<Index>(), 0..12),
        // One size line per chunk (twelve cuts make at most thirteen), and
        // one for the last chunk.
        prop::collection::vec(size_line(), 14),
        prop::collection::vec(trailer, 0..3),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(body, cuts, lines, trailers, after)| {
            let mut encoded = Vec::new();
            let chunks = Arrival::Cuts(cuts).pieces(body.len());
            // An empty piece would be the last chunk: skipped.
            let chunks = chunks.into_iter().filter(|chunk| !chunk.is_empty());
            let mut count = 0;
            for (line, chunk) in lines.iter().zip(chunks) {
                line.write(chunk.len() as u64, &mut encoded);
                encoded.extend_from_slice(&body[chunk]);
                encoded.extend_from_slice(b"\r\n");
                count += 1;
            }
            lines[count].write(0, &mut encoded);
            // What goes on: the fields, their values without the spaces
            // around them, less the names a trailer may not carry and
            // those a `Connection` field among them lists.
            let mut fields = HeaderMap::new();
            for (name, value) in &trailers {
                encoded.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                fields.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value.trim_matches(' ')).unwrap(),
                );
            }
            encoded.extend_from_slice(b"\r\n");
            let named = connection_named(&fields);
            let mut kept = HeaderMap::new();
            for (name, value) in &fields {
                if allowed_in_trailers(name) && !named.contains(name) {
                    kept.append(name.clone(), value.clone());
                }
            }
            Chunked {
                body,
                encoded,
                trailers: (!kept.is_empty()).then_some(kept),
                after,
            }
        })
}

/// Trailer fields a head would not take either.
static MALFORMED_TRAILERS: &[&[u8]] = &[
    b"no colon\r\n",
    b"x y: 1\r\n",
    b": empty name\r\n",
    b"x-folded: a\r\n b\r\n",
    b"x-ctl: a\x01b\r\n",
    b"x-del: \x7f\r\n",
    b"x(paren): 1\r\n",
];

/// Bytes that mean something to chunked framing, and any others.
fn chunky_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max),
        prop::collection::vec(
            select(&b"0123456789aAfFgG;= \t\r\n\r\n\r\nxyz:\0\x80"[..]),
            0..max
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_chunked_body_comes_back_whole_however_it_arrives(
        chunked in chunked(),
        arrival in arrival(),
    ) {
        let raw = [&chunked.encoded[..], &chunked.after].concat();
        let (data, stop) = feed(Framing::Chunked, &raw, &arrival);
        prop_assert_eq!(data, chunked.body);
        prop_assert_eq!(stop, Stop::End(chunked.after, chunked.trailers));
        // Any part of it, as read with the head, passes the check.
        let checker = Decoder::new(Framing::Chunked, MAX_TRAILERS);
        for piece in arrival.pieces(raw.len()) {
            prop_assert_eq!(checker.check(&raw[..piece.end]), Ok(()));
        }
    }

    /// Whatever the bytes: no panic, no more data than bytes, the same
    /// answer however they arrive, and `check` refuses exactly what
    /// decoding refuses.
    #[test]
    fn arbitrary_bytes_to_a_chunked_decoder(
        raw in chunky_bytes(300),
        arrival in arrival(),
    ) {
        check_arbitrary(&raw, &arrival)?;
    }

    /// As above, from a good body with a few bytes changed, to get past
    /// the first line more often.
    #[test]
    fn a_damaged_chunked_body(
        chunked in chunked(),
        damage in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
        arrival in arrival(),
    ) {
        let mut raw = [&chunked.encoded[..], &chunked.after].concat();
        for (at, byte) in damage {
            let at = at.index(raw.len());
            raw[at] = byte;
        }
        check_arbitrary(&raw, &arrival)?;
    }

    /// A chunk size is read exactly, up to `u64::MAX`, however it is spelt.
    #[test]
    fn chunk_sizes_are_read_exactly(size in any::<u64>(), line in size_line()) {
        let mut raw = Vec::new();
        line.write(size, &mut raw);
        let mut decoder = Decoder::new(Framing::Chunked, MAX_TRAILERS);
        let mut buf = BytesMut::from(&raw[..]);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(Decoded::More));
        let want = match size {
            0 => Chunk::Trailers { seen: 0, line_start: true },
            n => Chunk::Data(n),
        };
        prop_assert_eq!(decoder, Decoder::Chunked { at: want, max_trailers: MAX_TRAILERS as u32 });
    }

    /// More than sixteen hex digits is refused: no overflow, no wrap, even
    /// when the value would fit.
    #[test]
    fn long_chunk_sizes_are_refused(
        digits in "[0-9a-fA-F]{17,40}",
        rest in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let raw = [digits.as_bytes(), b"\r\n", &rest].concat();
        let (data, stop) = feed(Framing::Chunked, &raw, &Arrival::WHOLE);
        prop_assert!(data.is_empty());
        prop_assert_eq!(stop, Stop::Failed(BodyError::Chunked("chunk size too long")));
        prop_assert!(Decoder::new(Framing::Chunked, MAX_TRAILERS).check(&raw).is_err());
    }

    /// A trailer section over its limit is refused, however it arrives
    /// (nothing waits in the buffer past the limit and a read); one within
    /// it is not.
    #[test]
    fn a_trailer_section_is_bounded(
        limit in 16usize..1500,
        fields in prop::collection::vec(("x-[a-z]{1,8}", "[a-z0-9]{0,40}"), 1..60),
        arrival in arrival(),
    ) {
        let mut section = Vec::new();
        for (name, value) in &fields {
            section.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        section.extend_from_slice(b"\r\n");
        let raw = [&b"3\r\nabc\r\n0\r\n"[..], &section].concat();
        let (data, stop) = feed_within(Framing::Chunked, limit, &raw, &arrival);
        prop_assert_eq!(data, b"abc");
        if section.len() > limit {
            prop_assert_eq!(stop, Stop::Failed(BodyError::Chunked("trailers too long")));
            prop_assert!(Decoder::new(Framing::Chunked, limit).check(&raw).is_err());
        } else {
            prop_assert!(matches!(stop, Stop::End(_, Some(_))), "{:?}", stop);
            prop_assert_eq!(Decoder::new(Framing::Chunked, limit).check(&raw), Ok(()));
        }
    }

    /// A trailer field that would not pass in a head fails the body, in
    /// `check` too.
    #[test]
    fn malformed_trailer_fields_are_refused(
        bad in select(MALFORMED_TRAILERS),
        before in prop::collection::vec(("x-[a-z]{1,8}", "[a-z0-9]{0,8}"), 0..3),
        arrival in arrival(),
    ) {
        let mut raw = b"1\r\na\r\n0\r\n".to_vec();
        for (name, value) in &before {
            raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        raw.extend_from_slice(bad);
        raw.extend_from_slice(b"\r\n");
        let (_, stop) = feed(Framing::Chunked, &raw, &arrival);
        prop_assert!(matches!(stop, Stop::Failed(BodyError::Chunked(_))), "{:?}", stop);
        prop_assert!(Decoder::new(Framing::Chunked, MAX_TRAILERS).check(&raw).is_err());
    }

    #[test]
    fn a_length_body_stops_at_its_length(
        length in prop_oneof![0u64..600, Just(u64::MAX)],
        raw in prop::collection::vec(any::<u8>(), 0..800),
        arrival in arrival(),
    ) {
        let (data, stop) = feed(Framing::Length(length), &raw, &arrival);
        let end = usize::try_from(length).unwrap_or(usize::MAX).min(raw.len());
        prop_assert_eq!(&data[..], &raw[..end]);
        if (raw.len() as u64) < length {
            prop_assert_eq!(stop, Stop::More);
        } else {
            prop_assert_eq!(stop, Stop::End(raw[end..].to_vec(), None));
        }
        prop_assert_eq!(Decoder::new(Framing::Length(length), MAX_TRAILERS).check(&raw), Ok(()));
    }

    #[test]
    fn no_body_takes_nothing(raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let (data, stop) = feed(Framing::Empty, &raw, &Arrival::WHOLE);
        prop_assert!(data.is_empty());
        prop_assert_eq!(stop, Stop::End(raw, None));
    }
}

fn check_arbitrary(raw: &[u8], arrival: &Arrival) -> Result<(), TestCaseError> {
    let (data, stop) = feed(Framing::Chunked, raw, &Arrival::WHOLE);
    prop_assert!(data.len() <= raw.len());
    if let Stop::End(after, _) = &stop {
        prop_assert!(data.len() + after.len() < raw.len());
    }
    prop_assert_eq!(feed(Framing::Chunked, raw, arrival), (data, stop.clone()));
    let checked = Decoder::new(Framing::Chunked, MAX_TRAILERS).check(raw);
    prop_assert_eq!(checked.is_err(), matches!(stop, Stop::Failed(_)));
    Ok(())
}
