//! Conditional and range requests (RFC 9110 sections 13 and 14) for GET and
//! HEAD, as a pure function of the request headers and the validators of
//! the representation about to be sent.
//!
//! Everything the client sends is parsed without allocating, and anything
//! malformed falls back to the full response: a bad Range is ignored, a
//! bad date never makes a 304.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};

/// What the response is judged on.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// Quoted strong entity tag, e.g. `"abc"`.
    pub etag: &'a str,
    pub last_modified: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200 with the whole representation.
    Full,
    /// 304.
    NotModified,
    /// 206 with bytes `start..=end`, both within the representation.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// A parsed Range header, before it meets the representation's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-last` or `first-` (`last` is then `u64::MAX`).
    From { first: u64, last: u64 },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Judges a GET or HEAD:
/// 1. If-None-Match (a list or `*`; weak comparison, `W/"x"` matches `"x"`)
///    matching gives NotModified.
/// 2. Else, only when there is no If-None-Match, If-Modified-Since at or
///    after Last-Modified (at second resolution) gives NotModified.
/// 3. Then a Range (`bytes=a-b`, `bytes=a-`, `bytes=-n`), when If-Range is
///    absent or matches (the strong ETag, or a date equal to
///    Last-Modified), gives Partial or Unsatisfiable (start at or past the
///    end, `bytes=-0`, or an empty representation). Several ranges, another
///    unit, or a malformed header give Full.
pub fn evaluate(req: &HeaderMap, v: &Validators<'_>, len: u64) -> Outcome {
    if req.contains_key(header::IF_NONE_MATCH) {
        if none_match_fails(req, v.etag) {
            return Outcome::NotModified;
        }
    } else if not_modified_since(req, v.last_modified) {
        return Outcome::NotModified;
    }
    let Some(spec) = single(req, header::RANGE).and_then(parse_range) else {
        return Outcome::Full;
    };
    if req.contains_key(header::IF_RANGE) && !if_range_matches(req, v) {
        return Outcome::Full;
    }
    satisfy(spec, len)
}

/// `Content-Range: bytes start-end/len`.
pub fn content_range(start: u64, end: u64, len: u64) -> HeaderValue {
    numeric(format!("bytes {start}-{end}/{len}"))
}

/// `Content-Range: bytes */len`, for a 416.
pub fn unsatisfiable_range(len: u64) -> HeaderValue {
    numeric(format!("bytes */{len}"))
}

fn numeric(text: String) -> HeaderValue {
    // Digits, spaces, `-`, `/`, `*` and letters: always a valid value.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

/// If-None-Match "fails" (RFC 9110 13.1.2) when one of its tags matches.
fn none_match_fails(req: &HeaderMap, etag: &str) -> bool {
    let ours = opaque(etag.as_bytes());
    req.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        let value = value.as_bytes().trim_ascii();
        value == b"*" || EntityTags::new(value).any(|tag| tag.opaque == ours)
    })
}

/// If-Modified-Since: ignored when absent, repeated, not a date, or when
/// there is no Last-Modified.
fn not_modified_since(req: &HeaderMap, last_modified: Option<SystemTime>) -> bool {
    let (Some(since), Some(modified)) = (single(req, header::IF_MODIFIED_SINCE), last_modified)
    else {
        return false;
    };
    match (date_seconds(since), seconds(modified)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// If-Range: a strong ETag equal to ours, or a date equal to Last-Modified.
fn if_range_matches(req: &HeaderMap, v: &Validators<'_>) -> bool {
    let Some(value) = single(req, header::IF_RANGE) else {
        return false;
    };
    let value = value.trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let mut tags = EntityTags::new(value);
        return match (tags.next(), tags.next()) {
            (Some(tag), None) => {
                !tag.weak && !v.etag.starts_with("W/") && tag.opaque == v.etag.as_bytes()
            }
            _ => false,
        };
    }
    match (date_seconds(value), v.last_modified.and_then(seconds)) {
        (Some(date), Some(modified)) => date == modified,
        _ => false,
    }
}

/// The value of a header sent exactly once.
fn single(req: &HeaderMap, name: header::HeaderName) -> Option<&[u8]> {
    let mut values = req.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value.as_bytes()),
        _ => None,
    }
}

/// `bytes=` and one range-spec; empty list elements are ignored (RFC 9110
/// 5.6.1), spaces around elements and the unit allowed, none inside one.
fn parse_range(value: &[u8]) -> Option<Spec> {
    let eq = value.iter().position(|&b| b == b'=')?;
    let (unit, set) = (value[..eq].trim_ascii(), &value[eq + 1..]);
    if !unit.eq_ignore_ascii_case(b"bytes") {
        return None;
    }
    let mut specs = set
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return None;
    };
    let dash = spec.iter().position(|&b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return number(last).map(Spec::Suffix);
    }
    let first = number(first)?;
    let last = if last.is_empty() {
        u64::MAX
    } else {
        number(last)?
    };
    (first <= last).then_some(Spec::From { first, last })
}

/// `1*DIGIT`, saturating: a position past any file is as good as
/// `u64::MAX`, and overflow must not turn it into a small one.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn satisfy(spec: Spec, len: u64) -> Outcome {
    if len == 0 {
        return Outcome::Unsatisfiable;
    }
    let last_byte = len - 1;
    match spec {
        Spec::Suffix(0) => Outcome::Unsatisfiable,
        Spec::Suffix(n) => Outcome::Partial {
            start: len.saturating_sub(n),
            end: last_byte,
        },
        Spec::From { first, .. } if first >= len => Outcome::Unsatisfiable,
        Spec::From { first, last } => Outcome::Partial {
            start: first,
            end: last.min(last_byte),
        },
    }
}

/// An HTTP date (any of the three RFC 9110 forms) in whole seconds since
/// the epoch.
fn date_seconds(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    seconds(httpdate::parse_http_date(text.trim()).ok()?)
}

fn seconds(time: SystemTime) -> Option<u64> {
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The opaque part of an entity tag, quotes included, `W/` dropped.
fn opaque(etag: &[u8]) -> &[u8] {
    etag.strip_prefix(b"W/").unwrap_or(etag)
}

/// One entity-tag of a list.
struct Tag<'a> {
    weak: bool,
    /// With its quotes.
    opaque: &'a [u8],
}

/// The entity-tags of a comma-separated list. A tag may itself contain
/// commas, so the list is read quote to quote; it stops at the first
/// malformed element, which matches nothing.
struct EntityTags<'a> {
    rest: &'a [u8],
}

impl<'a> EntityTags<'a> {
    fn new(list: &'a [u8]) -> EntityTags<'a> {
        EntityTags { rest: list }
    }
}

impl<'a> Iterator for EntityTags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        // Empty list elements (`a, , b`) are allowed and skipped.
        let start = self
            .rest
            .iter()
            .position(|&b| !matches!(b, b',' | b' ' | b'\t'));
        let rest = &self.rest[start.unwrap_or(self.rest.len())..];
        self.rest = &[];
        let (weak, quoted) = match rest.strip_prefix(b"W/") {
            Some(quoted) => (true, quoted),
            None => (false, rest),
        };
        let close = quoted
            .strip_prefix(b"\"")?
            .iter()
            .position(|&b| b == b'"')?;
        let (tag, after) = quoted.split_at(close + 2);
        if !(after.is_empty() || matches!(after[0], b',' | b' ' | b'\t')) {
            return None;
        }
        self.rest = after;
        Some(Tag { weak, opaque: tag })
    }
}

#[cfg(test)]
mod tests;
