//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3) and the two questions
//! asked before compressing: is the type worth it, and may we transform it.

use http::header::{self, HeaderMap, HeaderValue};

use super::Coding;

/// Entries read across all `Accept-Encoding` values; the rest are ignored so
/// a hostile header costs bounded work.
const MAX_ENTRIES: usize = 64;

/// Quality in thousandths (`q=0.5` is 500), so comparisons are exact.
type Quality = u16;

const Q_MAX: Quality = 1000;

/// What the client said about each coding we care about. `None` means the
/// coding was not named.
#[derive(Debug, Default)]
struct Preferences {
    brotli: Option<Quality>,
    zstd: Option<Quality>,
    gzip: Option<Quality>,
    identity: Option<Quality>,
    any: Option<Quality>,
}

enum Name {
    Coding(Coding),
    Any,
}

impl Preferences {
    fn parse<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Preferences {
        let mut prefs = Preferences::default();
        let entries = values
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .take(MAX_ENTRIES);
        for entry in entries {
            if let Some((name, q)) = parse_entry(entry) {
                // The first mention of a coding counts; repeats are ignored.
                prefs.slot(name).get_or_insert(q);
            }
        }
        prefs
    }

    fn slot(&mut self, name: Name) -> &mut Option<Quality> {
        match name {
            Name::Coding(Coding::Brotli) => &mut self.brotli,
            Name::Coding(Coding::Zstd) => &mut self.zstd,
            Name::Coding(Coding::Gzip) => &mut self.gzip,
            Name::Coding(Coding::Identity) => &mut self.identity,
            Name::Any => &mut self.any,
        }
    }

    /// The client's quality for a real coding: its own entry, else `*`'s.
    fn quality(&self, coding: Coding) -> Quality {
        let named = match coding {
            Coding::Brotli => self.brotli,
            Coding::Zstd => self.zstd,
            Coding::Gzip => self.gzip,
            Coding::Identity => self.identity,
        };
        named.or(self.any).unwrap_or(0)
    }

    /// Identity is acceptable unless `identity;q=0`, or `*;q=0` with no
    /// identity entry.
    fn identity_acceptable(&self) -> bool {
        match self.identity {
            Some(q) => q > 0,
            None => self.any != Some(0),
        }
    }
}

/// Picks the response coding: among `offered` (server preference order,
/// first is best; never contains Identity), the client's acceptable codings
/// from all `Accept-Encoding` header values, honouring q-values
/// (`br;q=1, gzip;q=0.5`), `q=0` (forbidden), `*` (any coding not named) and
/// `identity;q=0`.
///
/// Highest client q wins; ties go to server preference, and a coding beats
/// identity at equal q. Identity only wins on quality when the client names
/// it with a q above every offered coding; otherwise it is the fallback,
/// acceptable unless forbidden (explicitly, or by `*;q=0` without an
/// identity entry). Returns `None` only when nothing at all is acceptable
/// (the caller then serves identity anyway, per RFC 9110 §12.5.3).
///
/// No header, an empty header, or one whose entries are all malformed means
/// identity. Malformed entries are skipped; `x-gzip` counts as `gzip`.
pub fn negotiate<'a>(
    accept_encoding: impl Iterator<Item = &'a HeaderValue>,
    offered: &[Coding],
) -> Option<Coding> {
    let prefs = Preferences::parse(accept_encoding);
    let best = offered
        .iter()
        .filter(|&&c| c != Coding::Identity)
        .enumerate()
        .map(|(rank, &c)| (prefs.quality(c), std::cmp::Reverse(rank), c))
        .filter(|&(q, _, _)| q > 0)
        .max_by_key(|&(q, rank, _)| (q, rank));
    match (best, prefs.identity) {
        (Some((q, _, _)), Some(identity_q)) if identity_q > q => Some(Coding::Identity),
        (Some((_, _, coding)), _) => Some(coding),
        (None, _) if prefs.identity_acceptable() => Some(Coding::Identity),
        (None, _) => None,
    }
}

/// One list element: `coding [; q=value] [; other params]`. `None` for an
/// empty element, a name that is not a token, a coding we do not know, or a
/// malformed q.
fn parse_entry(entry: &[u8]) -> Option<(Name, Quality)> {
    let mut parts = entry.split(|&b| b == b';');
    let name = parts.next()?.trim_ascii();
    let name = coding_name(name)?;
    let mut quality = Q_MAX;
    for param in parts {
        let (key, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (param[..i].trim_ascii(), param[i + 1..].trim_ascii()),
            None => (param.trim_ascii(), &b""[..]),
        };
        if key.eq_ignore_ascii_case(b"q") {
            quality = parse_quality(value)?;
        }
    }
    Some((name, quality))
}

fn coding_name(name: &[u8]) -> Option<Name> {
    const CODINGS: [(&[u8], Coding); 5] = [
        (b"br", Coding::Brotli),
        (b"zstd", Coding::Zstd),
        (b"gzip", Coding::Gzip),
        (b"x-gzip", Coding::Gzip),
        (b"identity", Coding::Identity),
    ];
    if name == b"*" {
        return Some(Name::Any);
    }
    CODINGS
        .iter()
        .find(|(token, _)| name.eq_ignore_ascii_case(token))
        .map(|&(_, coding)| Name::Coding(coding))
}

/// RFC 9110 §12.4.2: `0[.ddd]` or `1[.000]`, as thousandths.
fn parse_quality(value: &[u8]) -> Option<Quality> {
    let (int, frac) = match value.iter().position(|&b| b == b'.') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = frac
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(3)
        .fold(0, |acc, d| acc * 10 + Quality::from(d - b'0'));
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(Q_MAX),
        _ => None,
    }
}

/// Whether a response of this `Content-Type` is worth compressing: text,
/// scripts, JSON, XML, SVG, wasm, uncompressed fonts. Anything else, or
/// anything unknown (images, video, audio, woff, archives, pdf,
/// `application/octet-stream`), is left alone: compressing it again costs
/// CPU and wins nothing. Parameters (`; charset=...`) are ignored.
pub fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    let (top, sub) = (top.trim(), sub.trim());
    // Media types are case-insensitive: lowercase the subtype on the stack
    // (a longer one than fits is no type of this list).
    let mut buf = [0u8; 64];
    let Some(sub) = buf.get_mut(..sub.len()).and_then(|buf| {
        buf.copy_from_slice(sub.as_bytes());
        buf.make_ascii_lowercase();
        std::str::from_utf8(buf).ok()
    }) else {
        return false;
    };
    if sub.ends_with("+json") || sub.ends_with("+xml") {
        return true;
    }
    let is = |name: &str| top.eq_ignore_ascii_case(name);
    if is("text") {
        !sub.is_empty()
    } else if is("font") {
        matches!(sub, "ttf" | "otf" | "sfnt" | "collection")
    } else if is("image") {
        sub == "svg+xml"
    } else if is("application") {
        matches!(
            sub,
            "javascript"
                | "x-javascript"
                | "ecmascript"
                | "json"
                | "x-ndjson"
                | "xml"
                | "wasm"
                | "graphql"
                | "x-www-form-urlencoded"
                | "vnd.ms-fontobject"
                | "x-font-ttf"
                | "x-font-otf"
                | "x-font-opentype"
                | "x-font-truetype"
                | "font-sfnt"
                | "rtf"
                | "x-sh"
                | "x-tar"
        )
    } else {
        false
    }
}

/// Whether `Cache-Control` forbids transforming the body (RFC 9111
/// §5.2.2.6), in any of its field lines and in any case.
pub fn no_transform(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|directive| {
            let name = directive.split(|&b| b == b'=').next().unwrap_or(directive);
            name.trim_ascii().eq_ignore_ascii_case(b"no-transform")
        })
}
