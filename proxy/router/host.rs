//! Host matching: exact names, `*.suffix` wildcards, or any host.

use std::borrow::Cow;

/// How a route matches the request host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lowercase host name.
    Exact(String),
    /// Lowercase suffix with its leading dot: `*.example.com` -> `.example.com`.
    Suffix(String),
}

impl HostMatch {
    pub fn parse(host: Option<&str>) -> HostMatch {
        match host.map(str::to_ascii_lowercase) {
            None => HostMatch::Any,
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
                None => HostMatch::Exact(h),
            },
        }
    }
}

/// The request's host, lowercased, without port or trailing dot. `None`
/// when the value is not a plausible host. Borrowed from `raw` when it is
/// lowercase already, as it nearly always is.
pub fn normalize(raw: &str) -> Option<Cow<'_, str>> {
    let bytes = raw.as_bytes();
    let end = if bytes.first() == Some(&b'[') {
        // IPv6 literal: keep the brackets, drop the port.
        bytes.iter().position(|&b| b == b']')? + 1
    } else {
        bytes
            .iter()
            .rposition(|&b| b == b':')
            .unwrap_or(bytes.len())
    };
    // `end` is at an ASCII byte (or the end), so on a character boundary.
    let host = &raw[..end];
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    // One pass checks the characters and looks for capitals.
    let mut upper = false;
    for b in host.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'[' | b']' | b':' => {}
            b'A'..=b'Z' => upper = true,
            _ => return None,
        }
    }
    Some(if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_hosts() {
        assert_eq!(
            normalize("App.Example.com:8443").as_deref(),
            Some("app.example.com")
        );
        assert_eq!(normalize("example.com.").as_deref(), Some("example.com"));
        assert_eq!(normalize("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("a b"), None);
        assert_eq!(normalize("[::1"), None);
        // Not ASCII: refused, never split inside a character.
        assert_eq!(normalize("ex\u{e9}mple.com:80"), None);
        assert_eq!(normalize("\u{e9}:\u{e9}"), None);
        assert_eq!(normalize("[\u{e9}]:1"), None);
    }
}
