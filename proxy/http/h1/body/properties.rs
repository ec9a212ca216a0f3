//! Properties of `Decoder`: a body comes back byte for byte however it was
//! framed and however it arrived, decoding stops where the framing ends
//! (what follows stays in the buffer), and nothing fed to it gives more
//! data than was fed.

use proptest::prelude::*;
use proptest::sample::{Index, select};

use super::*;
use crate::http::h1::arrival::{Arrival, arrival};

/// Where decoding stopped once every byte was fed.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    /// `Decoded::End`, with what was left for the next request.
    End(Vec<u8>),
    /// `Decoded::More` with nothing left to feed.
    More,
    Failed(BodyError),
}

/// Decodes `bytes` as they arrive: the data, and where it stopped.
fn feed(framing: Framing, bytes: &[u8], arrival: &Arrival) -> (Vec<u8>, Stop) {
    let mut decoder = Decoder::new(framing);
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
                assert!(buf.is_empty(), "asked for more with {buf:?} unread");
                match pieces.next() {
                    Some(piece) => buf.extend_from_slice(&bytes[piece]),
                    None => return (data, Stop::More),
                }
            }
            Ok(Decoded::End) => {
                assert!(decoder.is_done());
                let fed = bytes.len() - pieces.map(|piece| piece.len()).sum::<usize>();
                buf.extend_from_slice(&bytes[fed..]);
                return (data, Stop::End(buf.to_vec()));
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

/// A body, chunked: the body, its encoding, and what follows the encoding.
#[derive(Debug, Clone)]
struct Chunked {
    body: Vec<u8>,
    encoded: Vec<u8>,
    after: Vec<u8>,
}

fn chunked() -> impl Strategy<Value = Chunked> {
    let trailer = ("[A-Za-z][A-Za-z0-9-]{0,10}", "[ -~]{0,20}");
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
            for (name, value) in trailers {
                encoded.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            encoded.extend_from_slice(b"\r\n");
            Chunked {
                body,
                encoded,
                after,
            }
        })
}

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
        prop_assert_eq!(stop, Stop::End(chunked.after));
        // Any part of it, as read with the head, passes the check.
        let checker = Decoder::new(Framing::Chunked);
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
        let mut decoder = Decoder::new(Framing::Chunked);
        let mut buf = BytesMut::from(&raw[..]);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(Decoded::More));
        let want = match size {
            0 => Chunk::Trailers { seen: 0, line_start: true },
            n => Chunk::Data(n),
        };
        prop_assert_eq!(decoder, Decoder::Chunked(want));
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
        prop_assert!(Decoder::new(Framing::Chunked).check(&raw).is_err());
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
            prop_assert_eq!(stop, Stop::End(raw[end..].to_vec()));
        }
        prop_assert_eq!(Decoder::new(Framing::Length(length)).check(&raw), Ok(()));
    }

    #[test]
    fn no_body_takes_nothing(raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let (data, stop) = feed(Framing::Empty, &raw, &Arrival::WHOLE);
        prop_assert!(data.is_empty());
        prop_assert_eq!(stop, Stop::End(raw));
    }
}

fn check_arbitrary(raw: &[u8], arrival: &Arrival) -> Result<(), TestCaseError> {
    let (data, stop) = feed(Framing::Chunked, raw, &Arrival::WHOLE);
    prop_assert!(data.len() <= raw.len());
    if let Stop::End(after) = &stop {
        prop_assert!(data.len() + after.len() < raw.len());
    }
    prop_assert_eq!(feed(Framing::Chunked, raw, arrival), (data, stop.clone()));
    let checked = Decoder::new(Framing::Chunked).check(raw);
    prop_assert_eq!(checked.is_err(), matches!(stop, Stop::Failed(_)));
    Ok(())
}
