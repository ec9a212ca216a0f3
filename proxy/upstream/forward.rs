//! What changes on a request on its way to an upstream, and on the
//! response on its way back: hop-by-hop headers go, forwarding headers come.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers: `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-*`, `Transfer-Encoding`, `TE` (except `trailers`,
/// which gRPC needs end to end), and `Upgrade` unless this is an upgrade.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names finds which are here (most messages carry
    // none, or only `Connection: keep-alive`), so only those are removed.
    let present = headers
        .keys()
        .fold(0u8, |found, name| found | hop_by_hop_bit(name));
    if present == 0 {
        return;
    }
    // Headers that `Connection` names; its usual options name none.
    let names_some = present & CONNECTION_BIT != 0
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .any(|t| {
                !t.is_empty()
                    && !t.eq_ignore_ascii_case(b"keep-alive")
                    && !t.eq_ignore_ascii_case(b"close")
                    && !t.eq_ignore_ascii_case(b"upgrade")
            });
    if names_some {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| hop_by_hop_bit(name) == 0)
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let trailers = present & TE_BIT != 0
        && headers
            .get_all(header::TE)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for (bit, name) in HOP_BY_HOP.iter().enumerate() {
        let kept = upgrade && (*name == header::CONNECTION || *name == header::UPGRADE);
        if present & (1 << bit) != 0 && !kept {
            headers.remove(name);
        }
    }
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The headers that concern one connection only (a static: a const array
/// of names would be built and dropped at every use).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    KEEP_ALIVE,
    PROXY_CONNECTION,
];

const CONNECTION_BIT: u8 = 1;
const TE_BIT: u8 = 1 << 1;

/// `name`'s bit in a set of [`HOP_BY_HOP`], 0 for other headers. Names
/// the `http` crate knows compare as numbers, so those go first; the two
/// it does not know compare as text, only when the length could match.
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    if *name == header::CONNECTION {
        CONNECTION_BIT
    } else if *name == header::TE {
        TE_BIT
    } else if *name == header::TRANSFER_ENCODING {
        1 << 2
    } else if *name == header::UPGRADE {
        1 << 3
    } else if *name == header::PROXY_AUTHORIZATION {
        1 << 4
    } else if *name == header::PROXY_AUTHENTICATE {
        1 << 5
    } else if *name == KEEP_ALIVE {
        1 << 6
    } else if *name == PROXY_CONNECTION {
        1 << 7
    } else {
        0
    }
}

/// Whether a raw field name is one of [`HOP_BY_HOP`].
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop.as_str().as_bytes()))
}

/// Whether a request asks to switch protocols (WebSocket) over HTTP/1.1.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// Fields weir adds to a request on its way upstream. They are written
/// after the request's own fields, which no longer carry these names: five
/// inserts into the map per request cost more than the whole head write.
pub type Added = SmallVec<[(HeaderName, HeaderValue); 5]>;

const FOR_BIT: u8 = 1;
const PROTO_BIT: u8 = 1 << 1;
const HOST_BIT: u8 = 1 << 2;

fn forwarding_bit(name: &HeaderName) -> u8 {
    if *name == X_FORWARDED_FOR {
        FOR_BIT
    } else if *name == X_FORWARDED_PROTO {
        PROTO_BIT
    } else if *name == X_FORWARDED_HOST {
        HOST_BIT
    } else {
        0
    }
}

/// The forwarding fields of a request, pushed onto `added`:
/// `X-Forwarded-For` with the client appended to what came, and
/// `X-Forwarded-Proto` and `X-Forwarded-Host` (the host the client asked
/// for) as weir saw them; `Host` when the request has none (HTTP/2). The
/// client's own forwarding fields leave `headers`.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    added: &mut Added,
    client: &HeaderValue,
    tls: bool,
    host: Option<HeaderValue>,
) {
    let sent = headers
        .keys()
        .fold(0u8, |found, name| found | forwarding_bit(name));
    let mut forwarded_for = client.clone();
    if sent & FOR_BIT != 0 {
        let mut joined = Vec::new();
        for earlier in headers.get_all(&X_FORWARDED_FOR) {
            let earlier = earlier.as_bytes().trim_ascii();
            if !earlier.is_empty() {
                joined.extend_from_slice(earlier);
                joined.extend_from_slice(b", ");
            }
        }
        joined.extend_from_slice(client.as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            forwarded_for = value;
        }
        headers.remove(&X_FORWARDED_FOR);
    }
    if sent & PROTO_BIT != 0 {
        headers.remove(&X_FORWARDED_PROTO);
    }
    if sent & HOST_BIT != 0 {
        headers.remove(&X_FORWARDED_HOST);
    }
    added.push((X_FORWARDED_FOR, forwarded_for));
    let proto = if tls { "https" } else { "http" };
    added.push((X_FORWARDED_PROTO, HeaderValue::from_static(proto)));
    if let Some(host) = host {
        if !headers.contains_key(header::HOST) {
            added.push((header::HOST, host.clone()));
        }
        added.push((X_FORWARDED_HOST, host));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn each_hop_by_hop_name_has_its_bit() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_bit(name), 1 << i, "{name}");
        }
        assert_eq!(hop_by_hop_bit(&header::HOST), 0);
        assert_eq!(hop_by_hop_bit(&HeaderName::from_static("x-te")), 0);
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn te_trailers_and_upgrades_survive() {
        let mut h = headers(&[
            ("te", "trailers"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("te").unwrap(), "trailers");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn forwarding_headers() {
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", " 198.51.100.2 "),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "spoofed.test"),
            ("host", "app.test"),
        ]);
        let mut added = Added::new();
        add_forwarding(
            &mut h,
            &mut added,
            &HeaderValue::from_static("10.0.0.1"),
            true,
            Some(HeaderValue::from_static("app.test")),
        );
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["host"], "the client's forwarding fields go");
        assert_eq!(
            added.as_slice(),
            [
                (
                    X_FORWARDED_FOR,
                    HeaderValue::from_static("203.0.113.7, 198.51.100.2, 10.0.0.1")
                ),
                (X_FORWARDED_PROTO, HeaderValue::from_static("https")),
                (X_FORWARDED_HOST, HeaderValue::from_static("app.test")),
            ]
        );
        let mut h2 = HeaderMap::new();
        let mut added = Added::new();
        add_forwarding(
            &mut h2,
            &mut added,
            &HeaderValue::from_static("::1"),
            false,
            Some(HeaderValue::from_static("h2.test")),
        );
        assert_eq!(
            added.as_slice(),
            [
                (X_FORWARDED_FOR, HeaderValue::from_static("::1")),
                (X_FORWARDED_PROTO, HeaderValue::from_static("http")),
                (header::HOST, HeaderValue::from_static("h2.test")),
                (X_FORWARDED_HOST, HeaderValue::from_static("h2.test")),
            ],
            "HTTP/2 clients send no Host"
        );
    }
}
