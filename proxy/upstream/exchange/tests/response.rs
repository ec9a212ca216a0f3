//! Properties of `parse_head`: no panic on any bytes, the same answer in
//! any split, the meaning RFC 9112 gives a valid head, and no framing
//! that could be read two ways.

use proptest::prelude::*;

use super::hostile::{ambiguous_lines, noise};
use super::upstream::{Field, length_value, unframed_response_with_body, upstream_response};
use super::*;

#[derive(Debug, PartialEq)]
enum Outcome {
    Refused(String),
    Incomplete,
    /// The head, and the bytes left after it.
    Parsed(Seen, Vec<u8>),
}

fn whole(bytes: &[u8], head_request: bool) -> Outcome {
    let mut buf = BytesMut::from(bytes);
    match parse_head(&mut buf, head_request, &mut Vec::new()) {
        Err(e) => Outcome::Refused(e.to_string()),
        Ok(None) => Outcome::Incomplete,
        Ok(Some(head)) => Outcome::Parsed(Seen::of(head), buf.to_vec()),
    }
}

/// As `send` reads: each piece appended and the head parsed again, until
/// it is complete or refused; what came after it stays in the buffer.
fn in_pieces(bytes: &[u8], cuts: &[usize], head_request: bool) -> Outcome {
    let mut ends: Vec<usize> = cuts.iter().map(|&cut| cut.min(bytes.len())).collect();
    ends.push(bytes.len());
    ends.sort_unstable();
    let mut buf = BytesMut::new();
    let mut from = 0;
    for end in ends {
        buf.extend_from_slice(&bytes[from..end]);
        from = end;
        match parse_head(&mut buf, head_request, &mut Vec::new()) {
            Err(e) => return Outcome::Refused(e.to_string()),
            Ok(None) => {}
            Ok(Some(head)) => {
                buf.extend_from_slice(&bytes[from..]);
                return Outcome::Parsed(Seen::of(head), buf.to_vec());
            }
        }
    }
    Outcome::Incomplete
}

fn one_byte_at_a_time(len: usize) -> Vec<usize> {
    (0..len).collect()
}

/// What holds of every head the parser lets through, whatever came.
fn holds_for_any(seen: &Seen, head_request: bool) -> Result<(), TestCaseError> {
    prop_assert!(
        !seen.status.is_informational() || seen.status == StatusCode::SWITCHING_PROTOCOLS,
        "an interim head is skipped, not answered"
    );
    let no_body = head_request || matches!(seen.status.as_u16(), 101 | 204 | 304);
    if no_body {
        prop_assert_eq!(seen.framing, Some(Framing::Empty));
    }
    if seen.framing.is_none() {
        prop_assert!(
            !seen.keep_alive,
            "a body read to the close ends the connection"
        );
    }
    // The client's side is framed anew: the upstream's framing never goes
    // on, and a length that does is the one the body was read by.
    prop_assert!(!seen.headers.contains_key(header::TRANSFER_ENCODING));
    let lengths: Vec<_> = seen
        .headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .collect();
    prop_assert!(lengths.len() <= 1, "{lengths:?}");
    if !no_body {
        let length = lengths.first().and_then(|v| content_length(v.as_bytes()));
        match seen.framing {
            Some(Framing::Length(n)) => prop_assert_eq!(length, Some(n)),
            Some(Framing::Empty) => prop_assert_eq!(length, Some(0)),
            Some(Framing::Chunked) | None => prop_assert_eq!(length, None),
        }
    }
    if let Some(raw) = &seen.raw {
        raw_fields_are_safe_to_write(raw)?;
    }
    Ok(())
}

/// Raw fields go to the client as they came, past the hop-by-hop rule: each
/// must be one well-formed line, and none of them a hop-by-hop or framing
/// field.
fn raw_fields_are_safe_to_write(raw: &[u8]) -> Result<(), TestCaseError> {
    let lines: Vec<&[u8]> = raw.split(|&b| b == b'\n').collect();
    let (last, lines) = lines.split_last().expect("split gives one at least");
    prop_assert!(last.is_empty(), "each field ends its line: {raw:?}");
    for line in lines {
        let Some(line) = line.strip_suffix(b"\r") else {
            return Err(TestCaseError::fail(format!("bare LF in {raw:?}")));
        };
        prop_assert!(!line.contains(&b'\r'), "bare CR in {raw:?}");
        let mut block = line.to_vec();
        block.extend_from_slice(b"\r\n\r\n");
        let mut one = [httparse::EMPTY_HEADER; 1];
        let parsed = httparse::parse_headers(&block, &mut one);
        prop_assert!(
            matches!(parsed, Ok(httparse::Status::Complete((len, [_]))) if len == block.len()),
            "{:?} is not one field",
            String::from_utf8_lossy(line)
        );
        let name = one[0].name.as_bytes();
        prop_assert!(
            !forward::is_hop_by_hop(name) && !name.eq_ignore_ascii_case(b"content-length"),
            "{:?} left raw",
            one[0].name
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever comes, the parser answers without a panic, the same in
    /// any split, and what it lets through keeps the head invariants.
    #[test]
    fn any_bytes_parse_alike_in_any_split_without_panic(
        bytes in noise(),
        cuts in cuts(),
        head_request in any::<bool>(),
    ) {
        let all = whole(&bytes, head_request);
        if let Outcome::Parsed(seen, _) = &all {
            holds_for_any(seen, head_request)?;
        }
        prop_assert_eq!(in_pieces(&bytes, &cut_at(&cuts, bytes.len()), head_request), all);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A valid head means what RFC 9112 says, whole, in any split, and a
    /// byte at a time; what follows it is left for the body.
    #[test]
    fn a_valid_head_reads_the_same_in_any_split(response in upstream_response(), cuts in cuts()) {
        let bytes = response.bytes();
        let head_request = response.head_request;
        let meant = if response.foreign_coding() {
            Outcome::Refused(ExchangeError::Malformed("transfer coding other than chunked").to_string())
        } else {
            Outcome::Parsed(response.meaning(), response.after.clone())
        };
        prop_assert_eq!(&whole(&bytes, head_request), &meant);
        prop_assert_eq!(&in_pieces(&bytes, &cut_at(&cuts, bytes.len()), head_request), &meant);
        prop_assert_eq!(&in_pieces(&bytes, &one_byte_at_a_time(bytes.len()), head_request), &meant);
        if let Outcome::Parsed(seen, _) = &meant {
            holds_for_any(seen, head_request)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Anything that could frame the body two ways is refused, whether
    /// the answer has a body or not, whole or in pieces.
    #[test]
    fn ambiguous_framing_is_refused(
        response in upstream_response(),
        lines in ambiguous_lines(),
        at in any::<prop::sample::Index>(),
        cuts in cuts(),
    ) {
        let bytes = response.bytes_with(at.index(response.fields.len() + 1), &lines);
        let head_request = response.head_request;
        prop_assert!(matches!(whole(&bytes, head_request), Outcome::Refused(_)));
        prop_assert!(matches!(in_pieces(&bytes, &cut_at(&cuts, bytes.len()), head_request), Outcome::Refused(_)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A length beside a Transfer-Encoding: the coding frames the body,
    /// the length does not go on, and the connection is not used again
    /// (RFC 9112 6.3: an intermediary may forward it so, and must close).
    #[test]
    fn a_length_beside_a_transfer_encoding_is_dropped(
        mut response in unframed_response_with_body(),
        (_, length) in length_value(),
        coding in prop::sample::select(&["chunked", "gzip, chunked", "gzip", "chunked, identity"][..]),
        (at_length, at_coding) in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
    ) {
        let length_at = at_length.index(response.fields.len() + 1);
        response.fields.insert(length_at, Field::new("Content-Length", &length));
        let coding_at = at_coding.index(response.fields.len() + 1);
        response.fields.insert(coding_at, Field::new("Transfer-Encoding", coding));
        let chunked = coding.ends_with("chunked");
        let outcome = whole(&response.bytes(), false);
        if !chunked {
            prop_assert!(matches!(outcome, Outcome::Refused(_)), "{:?}", outcome);
            return Ok(());
        }
        let Outcome::Parsed(seen, after) = outcome else {
            return Err(TestCaseError::fail("refused"));
        };
        prop_assert_eq!(seen.framing, chunked.then_some(Framing::Chunked));
        prop_assert!(!seen.keep_alive);
        prop_assert!(!seen.headers.contains_key(header::CONTENT_LENGTH));
        prop_assert_eq!(after, response.after);
    }

    /// HEAD, 204 and 304 answers end at their head whatever their length
    /// or coding says: what follows is left unread, and the length goes
    /// on as it came (it tells the client the size of the resource).
    #[test]
    fn bodiless_answers_take_no_body(
        mut response in unframed_response_with_body(),
        why in 0..3u8,
        (_, length) in length_value(),
        chunked_too in any::<bool>(),
    ) {
        match why {
            0 => response.head_request = true,
            1 => response.status = 204,
            _ => response.status = 304,
        }
        response.fields.push(Field::new("Content-Length", &length));
        if chunked_too {
            response.fields.push(Field::new("Transfer-Encoding", "chunked"));
        }
        let Outcome::Parsed(seen, after) = whole(&response.bytes(), response.head_request) else {
            return Err(TestCaseError::fail("refused"));
        };
        prop_assert_eq!(seen.framing, Some(Framing::Empty));
        prop_assert_eq!(after, response.after);
        prop_assert_eq!(seen.headers.get(header::CONTENT_LENGTH).map(HeaderValue::as_bytes), Some(length.as_bytes()));
        prop_assert!(seen.raw.is_none(), "a rule reads a bodiless answer's length in the map");
    }
}
