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

/// Whether `path` has a `.` or `..` segment, with its dots or slashes
/// maybe percent-encoded (`%2e`, `%2f`) and `\` (or `%5c`) taken for a
/// slash as some servers take it. Such a path would be routed as written
/// and could mean another path to an upstream that resolves it.
pub fn has_dot_segment(path: &str) -> bool {
    let bytes = path.as_bytes();
    if !bytes.iter().any(|&b| b == b'.' || b == b'%') {
        return false;
    }
    // Dots in the current segment, and whether it holds anything else.
    let (mut dots, mut other) = (0usize, false);
    let mut i = 0;
    while i <= bytes.len() {
        let byte = match bytes.get(i) {
            None => b'/',
            Some(b'%') => match bytes.get(i + 1..i + 3).and_then(unhex) {
                Some(decoded) => {
                    i += 2;
                    decoded
                }
                None => b'%',
            },
            Some(&b) => b,
        };
        i += 1;
        match byte {
            b'/' | b'\\' => {
                if !other && (dots == 1 || dots == 2) {
                    return true;
                }
                (dots, other) = (0, false);
            }
            b'.' => dots += 1,
            _ => other = true,
        }
    }
    false
}

/// `path` with each run of slashes made one, when it has such a run.
pub fn merge_slashes(path: &str) -> Option<String> {
    // A byte scan: `str::contains` sets up a substring searcher, which costs
    // more than the whole of a short path. `/` is never part of a longer
    // UTF-8 sequence, so comparing bytes is safe.
    let doubled = |pair: &[u8]| pair == b"//";
    if !path.as_bytes().windows(2).any(doubled) {
        return None;
    }
    let mut merged = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    Some(merged)
}

fn unhex(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_merge() {
        assert_eq!(merge_slashes("/a/b"), None);
        assert_eq!(merge_slashes("//admin/x").as_deref(), Some("/admin/x"));
        assert_eq!(merge_slashes("/a///b//").as_deref(), Some("/a/b/"));
    }

    #[test]
    fn dot_segments_in_any_spelling() {
        for path in [
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/a/..",
            "/%2e%2E/x",
            "/a/%2e/b",
            "/a/.%2e/b",
            "/a/..%2fb",
            "/a/..%2Fb",
            "/a/..\\b",
            "/a/..%5cb",
            "/a\\..\\b",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/",
            "/a/b",
            "/.well-known/acme-challenge/x",
            "/a/.env",
            "/a/.../b",
            "/a/..b/c",
            "/a/b..",
            "/v1.2/x",
            "/group%2Fproject",
            "/50%",
            "/%2",
            "/%zz/..x",
            "/%2e%2e%2e",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

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
