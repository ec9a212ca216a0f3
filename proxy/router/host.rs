//! Host matching: exact names, `*.suffix` wildcards, or any host.

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
/// when the value is not a plausible host.
pub fn normalize(raw: &str) -> Option<String> {
    let host = if raw.starts_with('[') {
        // IPv6 literal: keep the brackets, drop the port.
        &raw[..=raw.find(']')?]
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    valid.then(|| host.to_ascii_lowercase())
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
    }
}
