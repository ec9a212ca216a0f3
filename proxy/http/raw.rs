//! Header fields kept as the bytes they arrived in. A proxied HTTP/1.1
//! response's own fields go back to an HTTP/1.1 client as they came: no
//! header map is built for them, and none is written out again. Whoever
//! needs them as a map (an HTTP/2 or HTTP/3 client, compression) moves
//! them into one.

use bytes::Bytes;
use http::Response;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// Where a field's name and value lie in a head (at most `u32` long):
/// small, as the spans are copied about on the stack.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub name: u32,
    pub name_len: u32,
    pub value: u32,
    pub value_len: u32,
}

impl Span {
    /// The span of a field whose `name` and `value` are slices of `head`.
    pub fn within(head: &[u8], name: &[u8], value: &[u8]) -> Span {
        let at = |part: &[u8]| (part.as_ptr() as usize - head.as_ptr() as usize) as u32;
        Span {
            name: at(name),
            name_len: name.len() as u32,
            value: at(value),
            value_len: value.len() as u32,
        }
    }

    pub fn name(self) -> std::ops::Range<usize> {
        self.name as usize..(self.name + self.name_len) as usize
    }

    pub fn value(self) -> std::ops::Range<usize> {
        self.value as usize..(self.value + self.value_len) as usize
    }
}

/// A response, and its own fields when they are not in its map (an
/// HTTP/1.1 upstream's answer that nothing had to change on the way).
pub type WithFields<B> = (Response<B>, Option<Box<RawFields>>);

/// What an HTTP/1.1 writer puts in a response head beside its map: the
/// upstream's own fields, and the request id (one map insert per request,
/// and the map's allocation, saved).
#[derive(Debug, Default)]
pub struct Beside {
    /// Boxed: they move through several returns on their way to the writer.
    pub fields: Option<Box<RawFields>>,
    pub request_id: Option<HeaderValue>,
}

/// Fields of one head, each a valid name and value (the parser checked
/// both), in the order they came.
#[derive(Debug, Clone, Default)]
pub struct RawFields {
    head: Bytes,
    spans: SmallVec<[Span; 8]>,
    dated: bool,
    encoding: Option<Span>,
    /// `Content-Length`, apart: written out by whoever frames the body,
    /// and only put back in a map.
    length: Option<Span>,
}

impl RawFields {
    pub fn new(head: Bytes) -> RawFields {
        RawFields {
            head,
            ..RawFields::default()
        }
    }

    /// Keeps the field at `span` of the head.
    pub fn push(&mut self, span: Span) {
        let name = &self.head[span.name()];
        if name.eq_ignore_ascii_case(b"date") {
            self.dated = true;
        } else if self.encoding.is_none() && name.eq_ignore_ascii_case(b"content-encoding") {
            // The first, as a map's `get` would find.
            self.encoding = Some(span);
        }
        self.spans.push(span);
    }

    /// Keeps `span` as the `Content-Length` field (one, however many came
    /// with the same value), or none.
    pub fn set_length(&mut self, span: Option<Span>) {
        self.length = span;
    }

    pub fn head(&self) -> &Bytes {
        &self.head
    }

    /// Leaves out every field named `name` (lowercase), as a map's insert
    /// of another value would.
    pub fn remove(&mut self, name: &str) {
        let head = &self.head;
        self.spans
            .retain(|span| !head[span.name()].eq_ignore_ascii_case(name.as_bytes()));
        if name == "date" {
            self.dated = false;
        } else if name == "content-encoding" {
            self.encoding = None;
        }
    }

    /// Whether a `Date` field is among them.
    pub fn dated(&self) -> bool {
        self.dated
    }

    /// The value of `Content-Encoding`, if it came.
    pub fn content_encoding(&self) -> Option<&[u8]> {
        self.encoding.map(|span| &self.head[span.value()])
    }

    /// Appends each field as it came (`Name: value`), with its line end;
    /// all but `Content-Length`.
    pub fn write(&self, out: &mut Vec<u8>) {
        for span in &self.spans {
            let end = (span.value + span.value_len) as usize;
            out.extend_from_slice(&self.head[span.name as usize..end]);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Moves the fields into `headers`, ahead of what is there.
    pub fn into_map(self, headers: &mut HeaderMap) {
        let mut map = HeaderMap::with_capacity(self.spans.len() + headers.len() + 1);
        for span in self.spans.iter().chain(&self.length) {
            // Checked by the parser already; a field that still fails is
            // left out rather than failing the response.
            let Ok(name) = HeaderName::from_bytes(&self.head[span.name()]) else {
                continue;
            };
            let Ok(value) = HeaderValue::from_maybe_shared(self.head.slice(span.value())) else {
                continue;
            };
            map.append(name, value);
        }
        let mut last = None;
        for (name, value) in std::mem::take(headers) {
            if let Some(name) = name {
                last = Some(name);
            }
            if let Some(name) = &last {
                map.append(name.clone(), value);
            }
        }
        *headers = map;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(head: &'static str) -> RawFields {
        let mut fields = RawFields::new(Bytes::from_static(head.as_bytes()));
        let mut at = 0;
        for line in head.split("\r\n") {
            if let Some((name, value)) = line.split_once(':') {
                let value_at = at + name.len() + 1 + (value.len() - value.trim_start().len());
                fields.push(Span {
                    name: at as u32,
                    name_len: name.len() as u32,
                    value: value_at as u32,
                    value_len: value.trim().len() as u32,
                });
            }
            at += line.len() + 2;
        }
        fields
    }

    #[test]
    fn fields_are_written_as_they_came() {
        let raw = fields("Server: up\r\nx-trace:7\r\nDATE: Thu, 01 Jan 2026 00:00:00 GMT\r\n");
        let mut out = Vec::new();
        raw.write(&mut out);
        assert_eq!(
            out,
            b"Server: up\r\nx-trace:7\r\nDATE: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
        );
        assert!(raw.dated());
        assert_eq!(raw.content_encoding(), None);
        assert!(!fields("server: up\r\n").dated());
    }

    #[test]
    fn removed_fields_are_not_written() {
        let mut raw = fields("X-Request-Id: up\r\nServer: up\r\nx-request-id: again\r\n");
        raw.remove("x-request-id");
        let mut out = Vec::new();
        raw.write(&mut out);
        assert_eq!(out, b"Server: up\r\n");
    }

    #[test]
    fn fields_move_into_a_map_ahead_of_its_own() {
        let raw = fields("Content-Encoding: br\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n");
        assert_eq!(raw.content_encoding(), Some(&b"br"[..]));
        let mut headers = HeaderMap::new();
        headers.append("x-request-id", HeaderValue::from_static("id"));
        headers.append("set-cookie", HeaderValue::from_static("c=3"));
        headers.append("set-cookie", HeaderValue::from_static("d=4"));
        raw.into_map(&mut headers);
        let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-encoding", "set-cookie", "x-request-id"]);
        let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2", "c=3", "d=4"]);
    }
}
