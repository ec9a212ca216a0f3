//! What changes on a request on its way to an upstream, and on the
//! response on its way back: hop-by-hop headers go, forwarding headers come.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

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

/// `name`'s bit in a set of [`HOP_BY_HOP`], 0 for other headers: one
/// string match, where comparing with each name in turn cost a tenth of
/// forwarding's header work.
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    match name.as_str() {
        "connection" => CONNECTION_BIT,
        "te" => TE_BIT,
        "transfer-encoding" => 1 << 2,
        "upgrade" => 1 << 3,
        "proxy-authorization" => 1 << 4,
        "proxy-authenticate" => 1 << 5,
        "keep-alive" => 1 << 6,
        "proxy-connection" => 1 << 7,
        _ => 0,
    }
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

/// Sets the forwarding headers: appends the client to `X-Forwarded-For`,
/// sets `X-Forwarded-Proto` and `X-Forwarded-Host` (the host the client
/// asked for), and makes sure `Host` is there for HTTP/1.1 upstreams.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    tls: bool,
    host: Option<HeaderValue>,
) {
    let forwarded_for = match headers.get(&X_FORWARDED_FOR) {
        Some(earlier) if !earlier.as_bytes().trim_ascii().is_empty() => {
            let mut joined = Vec::with_capacity(earlier.len() + 2 + client.len());
            joined.extend_from_slice(earlier.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client.as_bytes());
            HeaderValue::from_bytes(&joined).ok()
        }
        _ => Some(client.clone()),
    };
    if let Some(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = host {
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, host.clone());
        }
        headers.insert(X_FORWARDED_HOST, host);
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
        let mut h = headers(&[("x-forwarded-for", "203.0.113.7"), ("host", "app.test")]);
        add_forwarding(
            &mut h,
            &HeaderValue::from_static("10.0.0.1"),
            true,
            Some(HeaderValue::from_static("app.test")),
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "203.0.113.7, 10.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "app.test");
        let mut h2 = HeaderMap::new();
        add_forwarding(
            &mut h2,
            &HeaderValue::from_static("::1"),
            false,
            Some(HeaderValue::from_static("h2.test")),
        );
        assert_eq!(
            h2.get("host").unwrap(),
            "h2.test",
            "HTTP/2 clients send no Host"
        );
        assert_eq!(h2.get("x-forwarded-for").unwrap(), "::1");
    }
}
