//! Path prefix matching on segment boundaries.

/// `/api/` matches `/api/x`; `/api` matches `/api`, `/api/x`, never `/apix`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The path an upstream sees when the route strips its prefix: `/api/users`
/// under `/api` or `/api/` becomes `/users`; the bare prefix becomes `/`.
pub fn strip<'a>(prefix: &str, path: &'a str) -> std::borrow::Cow<'a, str> {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    match path.strip_prefix(prefix) {
        Some(rest) if rest.starts_with('/') => rest.into(),
        Some(rest) => format!("/{rest}").into(),
        None => path.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_boundaries() {
        let table = [
            ("/", "/", true),
            ("/", "/anything", true),
            ("/api/", "/api/x", true),
            ("/api/", "/api", false),
            ("/api/", "/apix", false),
            ("/api", "/api", true),
            ("/api", "/api/", true),
            ("/api", "/api/x", true),
            ("/api", "/apix", false),
        ];
        for (prefix, path, want) in table {
            assert_eq!(prefix_matches(prefix, path), want, "{prefix} vs {path}");
        }
    }

    #[test]
    fn strips_prefix() {
        assert_eq!(strip("/api/", "/api/users"), "/users");
        assert_eq!(strip("/api", "/api/users"), "/users");
        assert_eq!(strip("/api", "/api"), "/");
        assert_eq!(strip("/", "/x"), "/x");
    }
}
