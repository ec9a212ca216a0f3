//! Config errors name the file, line, column and key path (issue 3, "Config"):
//! a table of invalid configs in TOML and YAML, each with the place and the
//! message it must produce; every error of a file collected in one pass;
//! relative paths taken from the config file's directory; the repository's
//! configs valid as shipped; YAML and TOML giving the same config; and no
//! input, however broken, making the loader panic.

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use weir::config::{self, ConfigError, Diagnostic, Format};

/// A certificate and its key for `names`, as PEM.
fn cert_pair(names: &[&str]) -> (String, String) {
    let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
    (cert.pem(), signing_key.serialize_pem())
}

/// The files the table's configs point at, in one directory:
/// `www/` (a site root), `file.txt` (not a directory), `good.pem` +
/// `good-key.pem` (a matching pair) and `other-key.pem` (a key of another
/// certificate). Nothing else exists: `missing*` names are unreadable.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("www")).unwrap();
    fs::write(dir.path().join("file.txt"), "not a directory").unwrap();
    let (cert, key) = cert_pair(&["localhost"]);
    let (_, other_key) = cert_pair(&["localhost"]);
    fs::write(dir.path().join("good.pem"), cert).unwrap();
    fs::write(dir.path().join("good-key.pem"), key).unwrap();
    fs::write(dir.path().join("other-key.pem"), other_key).unwrap();
    dir
}

/// One invalid config and the single diagnostic it must produce.
struct Case {
    name: &'static str,
    format: Format,
    text: &'static str,
    path: &'static str,
    /// 1-based line and column.
    at: (usize, usize),
    message: &'static str,
}

const TOML: Format = Format::Toml;
const YAML: Format = Format::Yaml;

fn case(
    name: &'static str,
    format: Format,
    text: &'static str,
    path: &'static str,
    at: (usize, usize),
    message: &'static str,
) -> Case {
    Case {
        name,
        format,
        text,
        path,
        at,
        message,
    }
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    vec![
        // ---- parsing: unknown keys, units, enums, types, syntax ----
        case("unknown top-level key", TOML,
"wrkers = 2
",
            "wrkers", (1, 1), "unknown field `wrkers`"),
        case("unknown key in a backend", TOML,
r#"[[routes]]
path = "/"
backends = [{ site = "web", wieght = 5 }]
"#,
            "routes[0].backends[0].wieght", (3, 29), "unknown field `wieght`"),
        case("unknown key in [limits]", TOML,
r#"[limits]
idle_timeout = "60s"
max_body = "1MiB"
"#,
            "limits.max_body", (3, 1), "unknown field `max_body`"),
        case("duration with a word unit", TOML,
r#"[limits]
idle_timeout = "2 seconds"
"#,
            "limits.idle_timeout", (2, 16), "invalid duration \"2 seconds\""),
        case("negative duration", TOML,
r#"[[routes]]
path = "/"
timeout = "-1s"
backends = [{ site = "web" }]
"#,
            "routes[0].timeout", (3, 11), "invalid duration \"-1s\""),
        case("size with a lowercase unit", TOML,
r#"[limits]
max_header_bytes = "64kb"
"#,
            "limits.max_header_bytes", (2, 20), "invalid size \"64kb\""),
        case("rate per day", TOML,
r#"[[routes]]
path = "/"
backends = [{ site = "web" }]
rate_limit = { per_ip = "100/day", burst = 5 }
"#,
            "routes[0].rate_limit.per_ip", (4, 25), "invalid rate \"100/day\""),
        case("TLS version 1.1", TOML,
r#"[[listeners]]
name = "tls"
bind = ["127.0.0.1:8443"]
[listeners.tls]
certs = [{ cert = "good.pem", key = "good-key.pem" }]
min_version = "1.1"
"#,
            "listeners[0].tls.min_version", (6, 15), "unknown variant `1.1`"),
        case("access log format xml", TOML,
r#"[access_log]
format = "xml"
"#,
            "access_log.format", (2, 10), "unknown variant `xml`"),
        case("service protocol h3", TOML,
r#"[services.api]
endpoints = ["127.0.0.1:9000"]
protocol = "h3"
"#,
            "services.api.protocol", (3, 12), "unknown variant `h3`"),
        case("load_balance random", TOML,
r#"[services.api]
endpoints = ["127.0.0.1:9000"]
load_balance = "random"
"#,
            "services.api.load_balance", (3, 16), "unknown load_balance \"random\""),
        case("retries as a string", TOML,
r#"[[routes]]
path = "/"
backends = [{ site = "web" }]
retries = "two"
"#,
            "routes[0].retries", (4, 11), "invalid type: string \"two\""),
        case("TOML syntax error", TOML,
r#"[admin]
listen = "127.0.0.1:9901
"#,
            "", (2, 25), "invalid basic string"),
        // ---- references ----
        case("route to a missing service", TOML,
r#"[[routes]]
path = "/api/"
backends = [{ service = "api" }]
"#,
            "routes[0].backends[0].service", (3, 25), "unknown service \"api\" (none are defined)"),
        case("route to a missing site", TOML,
r#"[sites.web]
root = "www"

[[routes]]
path = "/"
backends = [{ site = "wbe" }]
"#,
            "routes[0].backends[0].site", (6, 22), "unknown site \"wbe\" (defined: \"web\")"),
        case("route on a missing listener", TOML,
r#"[[listeners]]
name = "web"
bind = ["127.0.0.1:8080"]

[[routes]]
path = "/"
listeners = ["web", "wbe"]
backends = [{ site = "web" }]

[sites.web]
root = "www"
"#,
            "routes[0].listeners[1]", (7, 21), "unknown listener \"wbe\""),
        case("backend with both site and service", TOML,
r#"[[routes]]
path = "/"
backends = [{ site = "web", service = "api" }]

[sites.web]
root = "www"

[services.api]
endpoints = ["127.0.0.1:9000"]
"#,
            "routes[0].backends[0]", (3, 13), "exactly one of `site` or `service`"),
        case("backend with neither site nor service", TOML,
r#"[[routes]]
path = "/"
backends = [{ weight = 5 }]
"#,
            "routes[0].backends[0]", (3, 13), "exactly one of `site` or `service`"),
        // ---- weights and names ----
        case("negative weight", TOML,
r#"[[routes]]
path = "/"
backends = [{ site = "web", weight = 90 }, { site = "old", weight = -10 }]

[sites.web]
root = "www"

[sites.old]
root = "www"
"#,
            "routes[0].backends[1].weight", (3, 69), "weight must not be negative, got -10"),
        case("all weights zero", TOML,
r#"[sites.a]
root = "www"

[sites.b]
root = "www"

[[routes]]
path = "/"
backends = [{ site = "a", weight = 0 }, { site = "b", weight = 0 }]
"#,
            "routes[0].backends", (9, 12), "all backend weights are 0"),
        case("duplicate listener name", TOML,
r#"[[listeners]]
name = "web"
bind = ["127.0.0.1:8080"]

[[listeners]]
name = "web"
bind = ["127.0.0.1:8081"]
"#,
            "listeners[1].name", (6, 8), "duplicate listener name \"web\""),
        case("duplicate route name", TOML,
r#"[sites.web]
root = "www"

[[routes]]
name = "site"
path = "/"
backends = [{ site = "web" }]

[[routes]]
name = "site"
path = "/docs/"
backends = [{ site = "web" }]
"#,
            "routes[1].name", (10, 8), "duplicate route \"site\": routes[0] has the same name"),
        case("duplicate region name", TOML,
r#"[services.api]
[[services.api.regions]]
name = "eu"
endpoints = ["10.0.0.1:80"]
[[services.api.regions]]
name = "eu"
endpoints = ["10.0.0.2:80"]
"#,
            "services.api.regions[1].name", (6, 8), "duplicate region \"eu\""),
        case("duplicate route by host and path", TOML,
r#"[sites.web]
root = "www"

[[routes]]
backends = [{ site = "web" }]

[[routes]]
backends = [{ site = "web" }]
"#,
            "routes[1].path", (7, 1), "duplicate route \"/\": routes[0] has the same host and path"),
        // ---- listeners ----
        case("redirect_https to a plain listener", TOML,
r#"[[listeners]]
name = "web"
bind = ["127.0.0.1:8080"]
redirect_https = "other"

[[listeners]]
name = "other"
bind = ["127.0.0.1:8081"]
"#,
            "listeners[0].redirect_https", (4, 18), "listener \"other\" has no [listeners.tls]"),
        case("redirect_https to an unknown listener", TOML,
r#"[[listeners]]
name = "web"
bind = ["127.0.0.1:8080"]
redirect_https = "web-tls"
"#,
            "listeners[0].redirect_https", (4, 18), "unknown listener \"web-tls\""),
        case("http3 without TLS", TOML,
r#"[[listeners]]
name = "web"
bind = ["127.0.0.1:8080"]
http3 = true
"#,
            "listeners[0].http3", (4, 9), "http3 needs [listeners.tls]"),
        case("unreadable certificate", TOML,
r#"[[listeners]]
name = "tls"
bind = ["127.0.0.1:8443"]
[listeners.tls]
certs = [{ cert = "missing.pem", key = "good-key.pem" }]
"#,
            "listeners[0].tls.certs[0].cert", (5, 19), "missing.pem"),
        case("unreadable key", TOML,
r#"[[listeners]]
name = "tls"
bind = ["127.0.0.1:8443"]
[listeners.tls]
certs = [{ cert = "good.pem", key = "missing-key.pem" }]
"#,
            "listeners[0].tls.certs[0].key", (5, 37), "missing-key.pem"),
        case("key of another certificate", TOML,
r#"[[listeners]]
name = "tls"
bind = ["127.0.0.1:8443"]
[listeners.tls]
certs = [{ cert = "good.pem", key = "other-key.pem" }]
"#,
            "listeners[0].tls.certs[0].key", (5, 37), "does not match certificate"),
        case("bind without a host", TOML,
r#"[[listeners]]
name = "web"
bind = ["8080"]
"#,
            "listeners[0].bind[0]", (3, 9), "bad bind address \"8080\""),
        case("bind on a host name", TOML,
r#"[[listeners]]
name = "web"
bind = ["127.0.0.1:8080", "localhost:80"]
"#,
            "listeners[0].bind[1]", (3, 27), "bad bind address \"localhost:80\""),
        case("admin listen without a port", TOML,
r#"[admin]
listen = "127.0.0.1"
"#,
            "admin.listen", (2, 10), "bad bind address \"127.0.0.1\""),
        // ---- sites ----
        case("missing site root", TOML,
r#"[sites.web]
root = "missing-dir"
"#,
            "sites.web.root", (2, 8), "missing-dir"),
        case("site root is a file", TOML,
r#"[sites.web]
root = "file.txt"
"#,
            "sites.web.root", (2, 8), "is not a directory"),
        // ---- rollout ----
        case("rollout from a backend the route lacks", TOML,
r#"[services.blue]
endpoints = ["127.0.0.1:9001"]
[services.green]
endpoints = ["127.0.0.1:9002"]

[[routes]]
path = "/"
backends = [{ service = "blue" }, { service = "green" }]
[routes.rollout]
from = "bleu"
to = "green"
steps = [10, 50, 100]
step_every = "5m"
"#,
            "routes[0].rollout.from", (10, 8), "\"bleu\" is not a backend of this route"),
        case("rollout to a backend the route lacks", TOML,
r#"[services.blue]
endpoints = ["127.0.0.1:9001"]
[services.green]
endpoints = ["127.0.0.1:9002"]

[[routes]]
path = "/"
backends = [{ service = "blue" }, { service = "green" }]
[routes.rollout]
from = "blue"
to = "red"
steps = [10, 50, 100]
step_every = "5m"
"#,
            "routes[0].rollout.to", (11, 6), "\"red\" is not a backend of this route"),
        case("rollout steps decrease", TOML,
r#"[services.blue]
endpoints = ["127.0.0.1:9001"]
[services.green]
endpoints = ["127.0.0.1:9002"]

[[routes]]
path = "/"
backends = [{ service = "blue" }, { service = "green" }]
[routes.rollout]
from = "blue"
to = "green"
steps = [10, 50, 25, 100]
step_every = "5m"
"#,
            "routes[0].rollout.steps[2]", (12, 18), "steps must increase"),
        case("rollout step over 100", TOML,
r#"[services.blue]
endpoints = ["127.0.0.1:9001"]
[services.green]
endpoints = ["127.0.0.1:9002"]

[[routes]]
path = "/"
backends = [{ service = "blue" }, { service = "green" }]
[routes.rollout]
from = "blue"
to = "green"
steps = [10, 50, 150]
step_every = "5m"
"#,
            "routes[0].rollout.steps[2]", (12, 18), "step 150 is over 100 percent"),
        // ---- services ----
        case("endpoint without a port", TOML,
r#"[services.api]
endpoints = ["10.0.0.1"]
"#,
            "services.api.endpoints[0]", (2, 14), "bad endpoint \"10.0.0.1\": expected HOST:PORT"),
        case("service with endpoints and regions", TOML,
r#"[services.api]
endpoints = ["10.0.0.1:80"]
[[services.api.regions]]
name = "eu"
endpoints = ["10.0.0.2:80"]
"#,
            "services.api", (1, 11), "exactly one of `endpoints` or `regions`"),
        // ---- limits and runtime ----
        case("max_header_bytes below 8KiB", TOML,
r#"[limits]
max_header_bytes = "4KiB"
"#,
            "limits.max_header_bytes", (2, 20), "must be at least 8KiB, not 4KiB"),
        case("zero workers", TOML,
r#"[runtime]
workers = 0
"#,
            "runtime.workers", (2, 11), "workers must be between 1 and 1024, not 0"),

        // ---- YAML ----
        case("YAML spa: yes", YAML,
"sites:
  web:
    root: www
    spa: yes
",
            "sites.web.spa", (4, 10), "invalid boolean (true or false expected)"),
        case("YAML syntax error", YAML,
"listeners:
  - name: web
    bind: [\"127.0.0.1:8080\"
routes: []
",
            "listeners[0].bind", (4, 7), "illegal placement of ':' indicator"),
        case("YAML unknown key in a backend", YAML,
"routes:
  - path: /
    backends:
      - site: web
        wieght: 5
",
            "routes[0].backends[0].wieght", (5, 9), "unknown field `wieght`"),
        case("YAML bad duration", YAML,
"limits:
  header_read_timeout: 2 seconds
",
            "limits.header_read_timeout", (2, 24), "invalid duration \"2 seconds\""),
        case("YAML load_balance random", YAML,
"services:
  api:
    endpoints: [\"127.0.0.1:9000\"]
    load_balance: random
",
            "services.api.load_balance", (4, 19), "unknown load_balance \"random\""),
        case("YAML wrong type for retries", YAML,
"routes:
  - path: /
    retries: two
    backends:
      - site: web
",
            "routes[0].retries", (3, 14), "invalid u32"),
        case("YAML route to a missing service", YAML,
"routes:
  - path: /api/
    backends:
      - service: api
",
            "routes[0].backends[0].service", (4, 18), "unknown service \"api\""),
        case("YAML negative weight", YAML,
"sites:
  web:
    root: www
routes:
  - path: /
    backends:
      - site: web
        weight: -1
",
            "routes[0].backends[0].weight", (8, 17), "weight must not be negative, got -1"),
        case("YAML duplicate listener name", YAML,
"listeners:
  - name: web
    bind: [\"127.0.0.1:8080\"]
  - name: web
    bind: [\"127.0.0.1:8081\"]
",
            "listeners[1].name", (4, 11), "duplicate listener name \"web\""),
        case("YAML rollout step over 100", YAML,
"services:
  blue: { endpoints: [\"127.0.0.1:9001\"] }
  green: { endpoints: [\"127.0.0.1:9002\"] }
routes:
  - path: /
    backends: [{ service: blue }, { service: green }]
    rollout:
      from: blue
      to: green
      steps: [10, 200]
      step_every: 5m
",
            "routes[0].rollout.steps[1]", (10, 19), "step 200 is over 100 percent"),
        case("YAML endpoint without a port", YAML,
"services:
  api:
    regions:
      - name: eu
        endpoints:
          - 10.0.0.1:80
          - 10.0.0.2
",
            "services.api.regions[0].endpoints[1]", (7, 13), "bad endpoint \"10.0.0.2\""),
        case("YAML missing site root", YAML,
"sites:
  web:
    root: missing-dir
",
            "sites.web.root", (3, 11), "missing-dir"),
        case("YAML key of another certificate", YAML,
"listeners:
  - name: tls
    bind: [\"127.0.0.1:8443\"]
    tls:
      certs:
        - cert: good.pem
          key: other-key.pem
",
            "listeners[0].tls.certs[0].key", (7, 16), "does not match certificate"),
        case("YAML redirect_https to a plain listener", YAML,
"listeners:
  - name: web
    bind: [\"127.0.0.1:8080\"]
    redirect_https: web
",
            "listeners[0].redirect_https", (4, 21), "listener \"web\" has no [listeners.tls]"),
        case("YAML backend with both site and service", YAML,
"sites:
  web:
    root: www
services:
  api:
    endpoints: [\"127.0.0.1:9000\"]
routes:
  - path: /
    backends:
      - site: web
        service: api
",
            "routes[0].backends[0]", (10, 9), "exactly one of `site` or `service`"),
        case("YAML duplicate key", YAML,
"limits:
  idle_timeout: 1s
limits:
  idle_timeout: 2s
",
            "", (3, 1), "duplicate mapping key `limits`"),
        case("YAML two documents", YAML,
"admin:
  listen: 127.0.0.1:9901
---
admin:
  listen: 127.0.0.1:9902
",
            "", (4, 1), "only single YAML document expected"),
        case("YAML a list, not a mapping", YAML,
"- listeners
- routes
",
            "", (1, 1), "expected mapping"),
    ]
}

fn show(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("\n    {d}"))
        .collect::<String>()
}

#[test]
fn invalid_configs_point_at_the_problem() {
    let dir = fixture();
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    assert!(cases.iter().filter(|c| c.format == YAML).count() >= 8);
    let mut failures = Vec::new();
    for case in &cases {
        let file = match case.format {
            Format::Toml => dir.path().join("weir.toml"),
            Format::Yaml => dir.path().join("weir.yaml"),
        };
        let outcome = config::load_str(case.text, &file, case.format, dir.path().to_owned());
        let diagnostics = match outcome {
            Ok(_) => {
                failures.push(format!("{}: loaded without error", case.name));
                continue;
            }
            Err(ConfigError::Invalid(d)) => d,
            Err(other) => {
                failures.push(format!("{}: not a diagnostic: {other}", case.name));
                continue;
            }
        };
        let expected = format!(
            "{}:{}:{}: {}: ...{}...",
            file.display(),
            case.at.0,
            case.at.1,
            case.path,
            case.message
        );
        let ok = match diagnostics.as_slice() {
            [d] => {
                d.file == file
                    && (d.line, d.column) == case.at
                    && d.path == case.path
                    && d.message.contains(case.message)
                    && d.to_string()
                        == format!(
                            "{}:{}:{}{}: {}",
                            file.display(),
                            d.line,
                            d.column,
                            if d.path.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", d.path)
                            },
                            d.message
                        )
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{}:\n  expected exactly {expected}\n  got{}",
                case.name,
                show(&diagnostics)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The errors of one load, as `(line, key path)`, in the order reported.
fn places(outcome: Result<config::Document, ConfigError>) -> Vec<(usize, String)> {
    match outcome {
        Err(ConfigError::Invalid(all)) => all.into_iter().map(|d| (d.line, d.path)).collect(),
        Err(other) => panic!("not a diagnostic: {other}"),
        Ok(_) => panic!("an invalid config loaded"),
    }
}

#[test]
fn every_error_is_reported_in_one_pass() {
    // Sections in the order validation visits them, so file order is report order.
    let text = r#"[admin]
listen = "localhost:9901"

[runtime]
workers = 0

[limits]
max_header_bytes = "1KiB"

[[listeners]]
name = "web"
bind = ["8080"]
redirect_https = "web-tls"
http3 = true

[[routes]]
path = "/"
listeners = ["nope"]
backends = [{ site = "missing" }, { service = "gone", weight = -1 }]

[sites.web]
root = "no-such-dir"

[services.api]
endpoints = ["10.0.0.1"]
"#;
    let dir = fixture();
    let file = dir.path().join("weir.toml");
    let got = places(config::load_str(
        text,
        &file,
        Format::Toml,
        dir.path().to_owned(),
    ));
    let expected: Vec<(usize, String)> = [
        (2, "admin.listen"),
        (5, "runtime.workers"),
        (8, "limits.max_header_bytes"),
        (12, "listeners[0].bind[0]"),
        (13, "listeners[0].redirect_https"),
        (14, "listeners[0].http3"),
        (18, "routes[0].listeners[0]"),
        (19, "routes[0].backends[0].site"),
        (19, "routes[0].backends[1].service"),
        (19, "routes[0].backends[1].weight"),
        (22, "sites.web.root"),
        (25, "services.api.endpoints[0]"),
    ]
    .into_iter()
    .map(|(line, path)| (line, path.to_owned()))
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn every_error_is_reported_in_one_pass_yaml() {
    let text = "admin:
  listen: \"8080\"
listeners:
  - name: web
    bind: [\"localhost:80\"]
  - name: web
    bind: [\"127.0.0.1:8081\"]
routes:
  - path: /
    backends:
      - service: api
        weight: 0
    rollout:
      from: api
      to: canary
      steps: [50, 20]
      step_every: 1m
services:
  api:
    endpoints: [\"10.0.0.1:80\"]
    regions:
      - name: eu
        endpoints: [\"10.0.0.2:80\"]
";
    let dir = fixture();
    let file = dir.path().join("weir.yaml");
    let got = places(config::load_str(
        text,
        &file,
        Format::Yaml,
        dir.path().to_owned(),
    ));
    let expected: Vec<(usize, String)> = [
        (2, "admin.listen"),
        (5, "listeners[0].bind[0]"),
        (6, "listeners[1].name"),
        (15, "routes[0].rollout.to"),
        (16, "routes[0].rollout.steps[1]"),
        (19, "services.api"),
    ]
    .into_iter()
    .map(|(line, path)| (line, path.to_owned()))
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    fs::create_dir_all(sub.join("site")).unwrap();
    fs::create_dir_all(sub.join("certs")).unwrap();
    let (cert, key) = cert_pair(&["localhost"]);
    fs::write(sub.join("certs/a.pem"), cert).unwrap();
    fs::write(sub.join("certs/a-key.pem"), key).unwrap();
    let text = r#"[[listeners]]
name = "tls"
bind = ["127.0.0.1:0"]
[listeners.tls]
certs = [{ cert = "certs/a.pem", key = "certs/a-key.pem" }]

[[routes]]
path = "/"
backends = [{ site = "web" }]

[sites.web]
root = "site"
"#;
    fs::write(sub.join("weir.toml"), text).unwrap();
    // The working directory (the crate root) has none of these.
    assert!(!Path::new("site").exists() && !Path::new("certs/a.pem").exists());

    let doc = config::load(&dir.path().join("sub/weir.toml"))
        .unwrap_or_else(|e| panic!("sub/weir.toml: {e}"));
    assert_eq!(doc.base, sub);
    assert_eq!(doc.file.as_deref(), Some(sub.join("weir.toml").as_path()));

    // The same text read against the parent directory finds none of them.
    let got = places(config::load_str(
        text,
        &dir.path().join("weir.toml"),
        Format::Toml,
        dir.path().to_owned(),
    ));
    let paths: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(paths, ["listeners[0].tls.certs[0].cert", "sites.web.root"]);
}

/// Copies the files of `from` (recursively) into `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_spec_example_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("certs")).unwrap();
    fs::create_dir(dir.path().join("dist")).unwrap();
    let (cert, key) = cert_pair(&["app.example.com"]);
    fs::write(dir.path().join("certs/site.pem"), cert).unwrap();
    fs::write(dir.path().join("certs/site-key.pem"), key).unwrap();
    let file = dir.path().join("spec-example.toml");
    fs::copy(repo("config/spec-example.toml"), &file).unwrap();
    let doc = config::load(&file).unwrap_or_else(|e| panic!("spec example:\n{e}"));
    assert_eq!(doc.config.routes.len(), 2);
    assert_eq!(doc.config.services.len(), 2);
}

#[test]
fn the_shipped_config_is_valid() {
    // config/weir.toml names ../certs/site.pem and www/ (config/www).
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("certs")).unwrap();
    let (cert, key) = cert_pair(&["localhost", "app.example.com"]);
    fs::write(dir.path().join("certs/site.pem"), cert).unwrap();
    fs::write(dir.path().join("certs/site-key.pem"), key).unwrap();
    copy_dir(&repo("config/www"), &dir.path().join("config/www"));
    let file = dir.path().join("config/weir.toml");
    fs::copy(repo("config/weir.toml"), &file).unwrap();
    let doc = config::load(&file).unwrap_or_else(|e| panic!("config/weir.toml:\n{e}"));
    assert_eq!(doc.config.listeners.len(), 2);
}

const TWIN_TOML: &str = r#"[admin]
listen = "127.0.0.1:9901"

[runtime]
workers = 2

[[listeners]]
name = "web"
bind = ["127.0.0.1:8080", "[::1]:8080"]

[[routes]]
name = "api"
host = "*.example.com"
path = "/api/"
listeners = ["web"]
strip_prefix = true
backends = [{ service = "blue", weight = 90 }, { service = "green", weight = 10 }]
affinity = { cookie = "weir_api", max_age = "1h" }
override_header = "x-weir-backend"
timeout = "30s"
try_timeout = "10s"
retries = 2
rate_limit = { per_ip = "100/min", burst = 20 }
[routes.rollout]
from = "blue"
to = "green"
steps = [10, 50, 100]
step_every = "15m"
max_error_rate = 0.05
max_p99 = "750ms"
min_requests = 100
on_failure = "pause"

[[routes]]
path = "/"
backends = [{ site = "web" }]

[sites.web]
root = "www"
spa = true
precompressed = ["br", "gzip"]
cross_origin_isolated = false
immutable = ["/assets/"]
[[sites.web.headers]]
path = "/assets/*"
set = { "Cache-Control" = "public, max-age=31536000, immutable" }
remove = ["Server"]

[services.blue]
load_balance = "hash:header:x-user"
protocol = "h2c"
health = { path = "/healthz", interval = "5s", healthy = 3 }
outlier = { consecutive_failures = 3, eject_for = "1m", max_ejected = 0.25 }
failover = { min_healthy = 0.5, failback_after = "2m" }
[[services.blue.regions]]
name = "us-east-1"
endpoints = ["10.0.1.10:8080", "blue.use1.internal:8080"]
[[services.blue.regions]]
name = "eu-west-1"
endpoints = ["blue.euw1.internal:8080"]

[services.green]
endpoints = ["127.0.0.1:9002"]
tls = true

[compression]
algorithms = ["zstd", "gzip"]
min_size = "2KiB"

[limits]
max_body_bytes = "10MiB"
idle_timeout = "90s"

[access_log]
format = "combined"
"#;

const TWIN_YAML: &str = r#"admin:
  listen: 127.0.0.1:9901
runtime:
  workers: 2
listeners:
  - name: web
    bind: [127.0.0.1:8080, "[::1]:8080"]
routes:
  - name: api
    host: "*.example.com"
    path: /api/
    listeners: [web]
    strip_prefix: true
    backends:
      - service: blue
        weight: 90
      - service: green
        weight: 10
    affinity: { cookie: weir_api, max_age: 1h }
    override_header: x-weir-backend
    timeout: 30s
    try_timeout: 10s
    retries: 2
    rate_limit:
      per_ip: 100/min
      burst: 20
    rollout:
      from: blue
      to: green
      steps: [10, 50, 100]
      step_every: 15m
      max_error_rate: 0.05
      max_p99: 750ms
      min_requests: 100
      on_failure: pause
  - path: /
    backends:
      - site: web
sites:
  web:
    root: www
    spa: true
    precompressed: [br, gzip]
    cross_origin_isolated: false
    immutable: [/assets/]
    headers:
      - path: /assets/*
        set:
          Cache-Control: public, max-age=31536000, immutable
        remove: [Server]
services:
  blue:
    load_balance: hash:header:x-user
    protocol: h2c
    health: { path: /healthz, interval: 5s, healthy: 3 }
    outlier:
      consecutive_failures: 3
      eject_for: 1m
      max_ejected: 0.25
    failover:
      min_healthy: 0.5
      failback_after: 2m
    regions:
      - name: us-east-1
        endpoints:
          - 10.0.1.10:8080
          - blue.use1.internal:8080
      - name: eu-west-1
        endpoints: [blue.euw1.internal:8080]
  green:
    endpoints: ["127.0.0.1:9002"]
    tls: true
compression:
  algorithms: [zstd, gzip]
  min_size: 2KiB
limits:
  max_body_bytes: 10MiB
  idle_timeout: 90s
access_log:
  format: combined
"#;

#[test]
fn yaml_and_toml_give_the_same_config() {
    let dir = fixture();
    let load = |text: &str, name: &str, format| {
        let doc = config::load_str(text, &dir.path().join(name), format, dir.path().to_owned())
            .unwrap_or_else(|e| panic!("{name}:\n{e}"));
        serde_json::to_value(&doc.config).unwrap()
    };
    let toml = load(TWIN_TOML, "weir.toml", Format::Toml);
    let yaml = load(TWIN_YAML, "weir.yaml", Format::Yaml);
    assert_eq!(toml, yaml);
    // Not two empty configs: the values made it through.
    assert_eq!(toml["routes"][0]["backends"][1]["weight"], 10);
    assert_eq!(toml["routes"][0]["rollout"]["max_p99"], "750ms");
    assert_eq!(toml["services"]["blue"]["regions"][1]["name"], "eu-west-1");
    assert_eq!(toml["services"]["green"]["tls"], true);
    assert_eq!(toml["limits"]["max_body_bytes"], "10MiB");
    assert_eq!(toml["access_log"]["format"], "combined");
}

/// Pieces of config text in both syntaxes, glued at random below so that
/// the parsers and the validator see near-misses, not only noise.
const PIECES: &[&str] = &[
    "\n",
    " ",
    "  ",
    "    ",
    "\t",
    "- ",
    ": ",
    " = ",
    ",",
    "{",
    "}",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "---\n",
    "!!str ",
    "~",
    "null",
    "true",
    "yes",
    "-1",
    "0",
    "100",
    "1e999",
    "0.5",
    "1s",
    "-1s",
    "64KiB",
    "100/min",
    "é",
    "\u{0}",
    "\\",
    "routes",
    "listeners",
    "sites",
    "services",
    "web",
    "backends",
    "site",
    "service",
    "weight",
    "path",
    "root",
    "rollout",
    "from",
    "to",
    "steps",
    "regions",
    "endpoints",
    "name",
    "bind",
    "tls",
    "certs",
    "cert",
    "key",
    "limits",
    "max_header_bytes",
    "[[routes]]\n",
    "[sites.web]\n",
    "[[listeners]]\n",
    "root = \"www\"\n",
    "path = \"/\"\n",
    "bind = [\"127.0.0.1:0\"]\n",
    "backends = [{ site = \"web\" }]\n",
    "routes:\n  - path: /\n",
    "    backends:\n",
    "      - site: web\n",
    "sites:\n  web:\n    root: www\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,64}") {
        let base = PathBuf::from("/nonexistent/weir-proptest");
        let _ = config::load_str(&text, Path::new("p.toml"), Format::Toml, base.clone());
        let _ = config::load_str(&text, Path::new("p.yaml"), Format::Yaml, base);
    }

    #[test]
    fn config_shaped_text_never_panics(
        pieces in prop::collection::vec(prop::sample::select(PIECES), 0..48)
    ) {
        let text = pieces.concat();
        let base = PathBuf::from("/nonexistent/weir-proptest");
        let _ = config::load_str(&text, Path::new("p.toml"), Format::Toml, base.clone());
        let _ = config::load_str(&text, Path::new("p.yaml"), Format::Yaml, base);
    }
}
