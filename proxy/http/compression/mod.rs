//! Content coding of responses: which coding a client gets (`negotiate`),
//! whether a response is worth compressing (`compressible`, `no_transform`),
//! the encoders themselves (`encode`), and the headers a coded response needs
//! (`mark`).
//!
//! Callers decide *when* to compress (ranges, `min_size`, the site's sidecar
//! files); this module only answers the questions and does the work.

use http::header::{self, HeaderMap, HeaderValue};

use crate::config::schema::Encoding;

mod encode;
mod negotiate;

#[cfg(test)]
mod tests;

pub use encode::{compress, compress_stream};
pub use negotiate::{compressible, negotiate, no_transform};

/// A content coding weir can produce. `Identity` means "as is".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    Identity,
    Brotli,
    Zstd,
    Gzip,
}

impl Coding {
    /// The `Content-Encoding` / `Accept-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// The file name suffix of a precompressed sidecar (`app.js.br`).
    pub fn sidecar_suffix(self) -> Option<&'static str> {
        match self {
            Coding::Identity => None,
            Coding::Brotli => Some(".br"),
            Coding::Zstd => Some(".zst"),
            Coding::Gzip => Some(".gz"),
        }
    }

    pub fn from_config(e: Encoding) -> Coding {
        match e {
            Encoding::Brotli => Coding::Brotli,
            Encoding::Zstd => Coding::Zstd,
            Encoding::Gzip => Coding::Gzip,
        }
    }
}

/// Finishes the headers of a negotiated response whose body is (or will be)
/// in `coding`.
///
/// Sets `Content-Encoding` unless `coding` is identity. When `streaming` and
/// the body is re-encoded on the fly, the upstream's `Content-Length` no
/// longer holds and byte ranges of the coded stream cannot be served, so
/// `Content-Length` and `Accept-Ranges` are removed. An identity body keeps
/// both; so does a buffered coded body, whose caller sets the coded length.
/// `Vary: Accept-Encoding` is added in every case, because the choice
/// depended on the request. `ETag` is left to the caller.
pub fn mark(headers: &mut HeaderMap, coding: Coding, streaming: bool) {
    if coding != Coding::Identity {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
        if streaming {
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::ACCEPT_RANGES);
        }
    }
    add_vary_accept_encoding(headers);
}

/// Adds `Accept-Encoding` to `Vary`, once: existing `Vary` field lines are
/// merged into one, and nothing is added when they already name
/// `Accept-Encoding` (any case) or `*`.
pub fn add_vary_accept_encoding(headers: &mut HeaderMap) {
    let existing: Vec<&[u8]> = headers
        .get_all(header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|name| !name.is_empty())
        .collect();
    let covered = existing
        .iter()
        .any(|name| *name == b"*" || name.eq_ignore_ascii_case(b"accept-encoding"));
    if covered {
        return;
    }
    let mut merged = existing.join(&b", "[..]);
    if !merged.is_empty() {
        merged.extend_from_slice(b", ");
    }
    merged.extend_from_slice(b"Accept-Encoding");
    // The bytes came from valid header values joined by ", ", so this only
    // fails if a value held something HeaderValue rejects; then append alone.
    match HeaderValue::from_bytes(&merged) {
        Ok(value) => {
            headers.insert(header::VARY, value);
        }
        Err(_) => {
            headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
    }
}
