use std::time::Duration;

use proptest::prelude::*;

use super::*;

const ETAG: &str = "\"abc\"";
/// Last-Modified: 1_700_000_000.5 s after the epoch, this at second resolution.
const LM: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
const BEFORE: &str = "Tue, 14 Nov 2023 22:13:19 GMT";
const AFTER: &str = "Tue, 14 Nov 2023 22:13:21 GMT";

fn modified() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)
}

fn judge(headers: &[(&str, &str)], last_modified: Option<SystemTime>, len: u64) -> Outcome {
    let mut req = HeaderMap::new();
    for (name, value) in headers {
        req.append(
            header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let v = Validators {
        etag: ETAG,
        last_modified,
    };
    evaluate(&req, &v, len)
}

#[test]
fn the_dates_are_right() {
    assert_eq!(httpdate::fmt_http_date(modified()), LM);
}

#[test]
fn table() {
    use Outcome::{Full, NotModified, Partial, Unsatisfiable};
    let p = |start, end| Partial { start, end };
    let lm = Some(modified());
    // (request headers, Last-Modified, length, outcome)
    type Row = (
        &'static [(&'static str, &'static str)],
        Option<SystemTime>,
        u64,
        Outcome,
    );
    let table: Vec<Row> = vec![
        (&[], lm, 100, Full),
        // If-None-Match
        (&[("if-none-match", "\"abc\"")], lm, 100, NotModified),
        (&[("if-none-match", "W/\"abc\"")], lm, 100, NotModified),
        (&[("if-none-match", "\"x\", \"abc\"")], lm, 100, NotModified),
        (
            &[("if-none-match", "\"x\",W/\"abc\" ")],
            lm,
            100,
            NotModified,
        ),
        (
            &[("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")],
            lm,
            100,
            NotModified,
        ),
        (
            &[("if-none-match", "\"x\", , \"abc\"")],
            lm,
            100,
            NotModified,
        ),
        (&[("if-none-match", "*")], lm, 100, NotModified),
        (&[("if-none-match", " * ")], lm, 100, NotModified),
        (&[("if-none-match", "\"ab\"")], lm, 100, Full),
        (&[("if-none-match", "\"ABC\"")], lm, 100, Full),
        (&[("if-none-match", "abc")], lm, 100, Full),
        (
            &[("if-none-match", "\"a,b\", \"abc\"")],
            lm,
            100,
            NotModified,
        ),
        (&[("if-none-match", "\"abc")], lm, 100, Full),
        (&[("if-none-match", "\"x\"y, \"abc\"")], lm, 100, Full),
        (&[("if-none-match", "w/\"abc\"")], lm, 100, Full),
        // If-None-Match wins: a failing one makes If-Modified-Since ignored.
        (
            &[("if-none-match", "\"x\""), ("if-modified-since", LM)],
            lm,
            100,
            Full,
        ),
        // If-Modified-Since, second resolution
        (&[("if-modified-since", LM)], lm, 100, NotModified),
        (&[("if-modified-since", AFTER)], lm, 100, NotModified),
        (&[("if-modified-since", BEFORE)], lm, 100, Full),
        (
            &[("if-modified-since", "Tuesday, 14-Nov-23 22:13:20 GMT")],
            lm,
            100,
            NotModified,
        ),
        (
            &[("if-modified-since", "Tue Nov 14 22:13:20 2023")],
            lm,
            100,
            NotModified,
        ),
        (&[("if-modified-since", "yesterday")], lm, 100, Full),
        (&[("if-modified-since", LM)], None, 100, Full),
        (
            &[("if-modified-since", LM), ("if-modified-since", LM)],
            lm,
            100,
            Full,
        ),
        // 304 comes before ranges.
        (
            &[("if-none-match", "\"abc\""), ("range", "bytes=0-1")],
            lm,
            100,
            NotModified,
        ),
        // Range
        (&[("range", "bytes=0-9")], lm, 100, p(0, 9)),
        (&[("range", "bytes=10-")], lm, 100, p(10, 99)),
        (&[("range", "bytes=-10")], lm, 100, p(90, 99)),
        (&[("range", "bytes=-1000")], lm, 100, p(0, 99)),
        (&[("range", "bytes=90-1000")], lm, 100, p(90, 99)),
        (&[("range", "bytes=99-99")], lm, 100, p(99, 99)),
        (&[("range", "bytes=0-")], lm, 100, p(0, 99)),
        (
            &[("range", "bytes=0-99999999999999999999")],
            lm,
            100,
            p(0, 99),
        ),
        (
            &[("range", "bytes=0-18446744073709551615")],
            lm,
            100,
            p(0, 99),
        ),
        (
            &[("range", "bytes=99999999999999999999-")],
            lm,
            100,
            Unsatisfiable,
        ),
        (
            &[("range", "bytes=-99999999999999999999")],
            lm,
            100,
            p(0, 99),
        ),
        (&[("range", "bytes=100-")], lm, 100, Unsatisfiable),
        (&[("range", "bytes=100-200")], lm, 100, Unsatisfiable),
        (&[("range", "bytes=-0")], lm, 100, Unsatisfiable),
        (&[("range", "bytes=0-0")], lm, 0, Unsatisfiable),
        (&[("range", "bytes=-5")], lm, 0, Unsatisfiable),
        (&[("range", "bytes=5-2")], lm, 100, Full),
        (&[("range", "bytes=0-1,5-6")], lm, 100, Full),
        (&[("range", "bytes=0-1, 200-300")], lm, 100, Full),
        (&[("range", "bytes=0-1,")], lm, 100, p(0, 1)),
        (&[("range", "BYTES=0-1")], lm, 100, p(0, 1)),
        (&[("range", "  bytes=  0-1  ")], lm, 100, p(0, 1)),
        (&[("range", "bytes=0 - 1")], lm, 100, Full),
        (&[("range", "bytes=+1-2")], lm, 100, Full),
        (&[("range", "bytes=0x1-2")], lm, 100, Full),
        (&[("range", "bytes=1-2-3")], lm, 100, Full),
        (&[("range", "bytes=-")], lm, 100, Full),
        (&[("range", "bytes=")], lm, 100, Full),
        (&[("range", "bytes")], lm, 100, Full),
        (&[("range", "items=0-1")], lm, 100, Full),
        (
            &[("range", "bytes=0-1"), ("range", "bytes=2-3")],
            lm,
            100,
            Full,
        ),
        (&[("range", "bytes=5-")], lm, u64::MAX, p(5, u64::MAX - 1)),
        // If-Range
        (
            &[("range", "bytes=0-1"), ("if-range", "\"abc\"")],
            lm,
            100,
            p(0, 1),
        ),
        (
            &[("range", "bytes=0-1"), ("if-range", "W/\"abc\"")],
            lm,
            100,
            Full,
        ),
        (
            &[("range", "bytes=0-1"), ("if-range", "\"old\"")],
            lm,
            100,
            Full,
        ),
        (
            &[("range", "bytes=0-1"), ("if-range", "\"abc\", \"x\"")],
            lm,
            100,
            Full,
        ),
        (
            &[("range", "bytes=0-1"), ("if-range", LM)],
            lm,
            100,
            p(0, 1),
        ),
        (
            &[("range", "bytes=0-1"), ("if-range", BEFORE)],
            lm,
            100,
            Full,
        ),
        (
            &[("range", "bytes=0-1"), ("if-range", AFTER)],
            lm,
            100,
            Full,
        ),
        (&[("range", "bytes=0-1"), ("if-range", LM)], None, 100, Full),
        (
            &[("range", "bytes=0-1"), ("if-range", "garbage")],
            lm,
            100,
            Full,
        ),
        (
            &[("range", "bytes=500-"), ("if-range", "\"abc\"")],
            lm,
            100,
            Unsatisfiable,
        ),
        (&[("if-range", "\"abc\"")], lm, 100, Full),
    ];
    assert!(table.len() >= 30);
    for (headers, last_modified, len, want) in table {
        assert_eq!(
            judge(headers, last_modified, len),
            want,
            "{headers:?} len {len}"
        );
    }
}

#[test]
fn a_weak_etag_of_ours_never_satisfies_if_range() {
    let mut req = HeaderMap::new();
    req.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
    req.insert(header::IF_RANGE, HeaderValue::from_static("W/\"abc\""));
    let v = Validators {
        etag: "W/\"abc\"",
        last_modified: None,
    };
    assert_eq!(evaluate(&req, &v, 10), Outcome::Full);
    req.insert(header::IF_RANGE, HeaderValue::from_static("\"abc\""));
    assert_eq!(evaluate(&req, &v, 10), Outcome::Full);
    req.remove(header::IF_RANGE);
    req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
    assert_eq!(evaluate(&req, &v, 10), Outcome::NotModified);
}

#[test]
fn content_range_values() {
    assert_eq!(content_range(0, 9, 100), "bytes 0-9/100");
    assert_eq!(
        content_range(5, u64::MAX - 1, u64::MAX),
        "bytes 5-18446744073709551614/18446744073709551615"
    );
    assert_eq!(unsatisfiable_range(100), "bytes */100");
    assert_eq!(unsatisfiable_range(0), "bytes */0");
}

proptest! {
    #[test]
    fn never_panics(
        headers in prop::collection::vec(
            (
                prop_oneof![
                    Just("if-none-match"),
                    Just("if-modified-since"),
                    Just("range"),
                    Just("if-range"),
                ],
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..40),
                    "(bytes|BYTES|x)=[-0-9, ]{0,30}".prop_map(String::into_bytes),
                    "(W/)?\"[a-z,]{0,5}\"?([ ,]*(W/)?\"[a-z]{0,3}\")*".prop_map(String::into_bytes),
                ],
            ),
            0..5,
        ),
        len in prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()],
        seconds in prop_oneof![Just(0u64), any::<u32>().prop_map(u64::from), Just(253_402_300_799)],
    ) {
        let mut req = HeaderMap::new();
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                req.append(name, value);
            }
        }
        let v = Validators {
            etag: ETAG,
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(seconds)),
        };
        if let Outcome::Partial { start, end } = evaluate(&req, &v, len) {
            prop_assert!(start <= end && end < len);
            content_range(start, end, len);
        }
    }
}
