//! The one line weir prints on stdout once every socket is bound: a short sentence for
//! a person at a terminal, one JSON object for everything else (a supervisor, a test, a
//! log pipeline that reads the access log from the same stream and can tell this line
//! by its `"event":"listening"`).

use std::net::SocketAddr;

use serde_json::{Value, json};

/// Where a started weir can be reached.
#[derive(Debug, Clone)]
pub struct Listening {
    pub listeners: Vec<Bound>,
    pub admin: Option<SocketAddr>,
    /// `weir serve`: the directory served and, with `--tls`, the self-signed
    /// certificate's SHA-256 fingerprint.
    pub serve: Option<Serve>,
}

/// One listener and the addresses it is bound to.
#[derive(Debug, Clone)]
pub struct Bound {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
    pub tls: bool,
}

#[derive(Debug, Clone)]
pub struct Serve {
    pub dir: String,
    pub fingerprint: Option<String>,
}

impl Bound {
    fn urls(&self) -> impl Iterator<Item = String> + '_ {
        let scheme = if self.tls { "https" } else { "http" };
        self.addrs
            .iter()
            .map(move |addr| format!("{scheme}://{addr}/"))
    }
}

impl Listening {
    /// `weir 0.1.0 listening: web http://0.0.0.0:8080/, admin http://127.0.0.1:9901 (dashboard http://127.0.0.1:9901/)`
    /// or, for `weir serve`, `weir 0.1.0 serving DIR on http://127.0.0.1:8080/ (dashboard http://127.0.0.1:PORT/)`.
    pub fn human(&self) -> String {
        let version = env!("CARGO_PKG_VERSION");
        let dashboard = self.admin.map(|a| format!("dashboard http://{a}/"));
        if let Some(serve) = &self.serve {
            let urls: Vec<String> = self.listeners.iter().flat_map(Bound::urls).collect();
            let notes: Vec<String> = serve
                .fingerprint
                .iter()
                .map(|f| format!("self-signed for localhost, SHA-256 {f}"))
                .chain(dashboard)
                .collect();
            let mut line = format!("weir {version} serving {} on {}", serve.dir, urls.join(" "));
            if !notes.is_empty() {
                line.push_str(&format!(" ({})", notes.join("; ")));
            }
            return line;
        }
        let mut parts: Vec<String> = self
            .listeners
            .iter()
            .map(|l| {
                let urls: Vec<String> = l.urls().collect();
                format!("{} {}", l.name, urls.join(" "))
            })
            .collect();
        if let (Some(admin), Some(dashboard)) = (self.admin, dashboard) {
            parts.push(format!("admin http://{admin} ({dashboard})"));
        }
        format!("weir {version} listening: {}", parts.join(", "))
    }

    /// `{"event":"listening","version","listeners":[{"name","addrs","tls","urls"}],"admin","dashboard"}`,
    /// plus `serving` and `fingerprint` for `weir serve`.
    pub fn json(&self) -> Value {
        let listeners: Vec<Value> = self
            .listeners
            .iter()
            .map(|l| {
                let addrs: Vec<String> = l.addrs.iter().map(SocketAddr::to_string).collect();
                let urls: Vec<String> = l.urls().collect();
                json!({ "name": l.name, "addrs": addrs, "tls": l.tls, "urls": urls })
            })
            .collect();
        let mut line = json!({
            "event": "listening",
            "version": env!("CARGO_PKG_VERSION"),
            "listeners": listeners,
            "admin": self.admin.map(|a| format!("http://{a}")),
            "dashboard": self.admin.map(|a| format!("http://{a}/")),
        });
        if let (Some(serve), Some(fields)) = (&self.serve, line.as_object_mut()) {
            fields.insert("serving".to_owned(), json!(serve.dir));
            if let Some(fingerprint) = &serve.fingerprint {
                fields.insert("fingerprint".to_owned(), json!(fingerprint));
            }
        }
        line
    }

    /// The line for stdout: `human` when it is a terminal, else `json`.
    pub fn line(&self, terminal: bool) -> String {
        if terminal {
            self.human()
        } else {
            self.json().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn run() -> Listening {
        Listening {
            listeners: vec![
                Bound {
                    name: "web".into(),
                    addrs: vec![addr("0.0.0.0:8080")],
                    tls: false,
                },
                Bound {
                    name: "web-tls".into(),
                    addrs: vec![addr("0.0.0.0:8443"), addr("[::]:8443")],
                    tls: true,
                },
            ],
            admin: Some(addr("127.0.0.1:9901")),
            serve: None,
        }
    }

    #[test]
    fn human_names_every_listener_then_admin() {
        assert_eq!(
            run().human(),
            format!(
                "weir {} listening: web http://0.0.0.0:8080/, \
                 web-tls https://0.0.0.0:8443/ https://[::]:8443/, \
                 admin http://127.0.0.1:9901 (dashboard http://127.0.0.1:9901/)",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(run().line(true), run().human());
    }

    #[test]
    fn json_is_one_line_with_every_address() {
        let line = run().line(false);
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(value["event"], "listening");
        assert_eq!(value["listeners"][1]["name"], "web-tls");
        assert_eq!(value["listeners"][1]["addrs"][1], "[::]:8443");
        assert_eq!(value["listeners"][1]["tls"], true);
        assert_eq!(value["listeners"][0]["urls"][0], "http://0.0.0.0:8080/");
        assert_eq!(value["admin"], "http://127.0.0.1:9901");
        assert_eq!(value["dashboard"], "http://127.0.0.1:9901/");
        assert!(value.get("serving").is_none());
    }

    #[test]
    fn serve_is_one_sentence_with_the_fingerprint_folded_in() {
        let serve = Listening {
            listeners: vec![Bound {
                name: "serve".into(),
                addrs: vec![addr("127.0.0.1:8443")],
                tls: true,
            }],
            admin: Some(addr("127.0.0.1:40000")),
            serve: Some(Serve {
                dir: "dist".into(),
                fingerprint: Some("AB:CD".into()),
            }),
        };
        assert_eq!(
            serve.human(),
            format!(
                "weir {} serving dist on https://127.0.0.1:8443/ \
                 (self-signed for localhost, SHA-256 AB:CD; dashboard http://127.0.0.1:40000/)",
                env!("CARGO_PKG_VERSION")
            )
        );
        let value = serve.json();
        assert_eq!(value["serving"], "dist");
        assert_eq!(value["fingerprint"], "AB:CD");
    }
}
