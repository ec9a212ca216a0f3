//! Every check a config must pass before anything changes, collected rather
//! than thrown: references, names, weights, addresses, files on disk.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::error::Diagnostic;
use super::schema::{Config, Route, Service, UpstreamTls};
use super::source::Locator;
use crate::tls::certs::MemoryCerts;

/// Resolves a config-relative path against the config file's directory.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// hyper's smallest read buffer; a smaller head limit cannot be enforced.
pub const MIN_HEADER_BYTES: u64 = 8 * 1024;

struct Check<'a> {
    locator: &'a Locator,
    base: &'a Path,
    /// Certificates the caller holds in memory, by listener.
    memory_certs: &'a MemoryCerts,
    errors: Vec<Diagnostic>,
}

impl Check<'_> {
    fn error(&mut self, path: impl AsRef<str>, message: impl Into<String>) {
        let diagnostic = self.locator.error(path.as_ref(), message);
        self.errors.push(diagnostic);
    }
}

/// Checks `config`; relative paths are taken from `base`, and a TLS
/// listener's certificates include its `memory_certs`. Empty = valid.
pub fn validate(
    config: &Config,
    locator: &Locator,
    base: &Path,
    memory_certs: &MemoryCerts,
) -> Vec<Diagnostic> {
    let mut check = Check {
        locator,
        base,
        memory_certs,
        errors: Vec::new(),
    };
    admin_and_runtime(&mut check, config);
    listeners(&mut check, config);
    routes(&mut check, config);
    sites(&mut check, config);
    services(&mut check, config);
    dns(&mut check, config);
    check.errors
}

fn socket_addr(check: &mut Check<'_>, path: &str, value: &str) -> Option<SocketAddr> {
    match value.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            check.error(
                path,
                format!("bad bind address {value:?}: expected IP:PORT, e.g. \"0.0.0.0:8080\" or \"[::]:8443\""),
            );
            None
        }
    }
}

fn admin_and_runtime(check: &mut Check<'_>, config: &Config) {
    socket_addr(check, "admin.listen", &config.admin.listen);
    if let Some(workers) = config.runtime.workers
        && !(1..=1024).contains(&workers)
    {
        check.error(
            "runtime.workers",
            format!("workers must be between 1 and 1024, not {workers}"),
        );
    }
    let limits = &config.limits;
    if limits.max_header_bytes.0 < MIN_HEADER_BYTES {
        check.error(
            "limits.max_header_bytes",
            format!("must be at least 8KiB, not {}", limits.max_header_bytes),
        );
    }
    if limits.max_connections == 0 {
        check.error("limits.max_connections", "must be at least 1");
    }
    for (key, d) in [
        ("header_read_timeout", limits.header_read_timeout),
        ("idle_timeout", limits.idle_timeout),
    ] {
        if d.0.is_zero() {
            check.error(format!("limits.{key}"), "must be longer than 0");
        }
    }
}

fn listeners(check: &mut Check<'_>, config: &Config) {
    let mut names = HashSet::new();
    let mut binds: HashMap<SocketAddr, String> = HashMap::new();
    for (i, listener) in config.listeners.iter().enumerate() {
        let at = format!("listeners[{i}]");
        if listener.name.is_empty() {
            check.error(format!("{at}.name"), "listener name must not be empty");
        } else if !names.insert(listener.name.as_str()) {
            check.error(
                format!("{at}.name"),
                format!("duplicate listener name {:?}", listener.name),
            );
        }
        if listener.bind.is_empty() {
            check.error(
                format!("{at}.bind"),
                "a listener needs at least one bind address",
            );
        }
        for (j, bind) in listener.bind.iter().enumerate() {
            let path = format!("{at}.bind[{j}]");
            if let Some(addr) = socket_addr(check, &path, bind)
                && addr.port() != 0
                && let Some(other) = binds.insert(addr, listener.name.clone())
            {
                check.error(
                    path,
                    format!("{addr} is already bound by listener {other:?}"),
                );
            }
        }
        if let Some(target) = &listener.redirect_https {
            match config.listeners.iter().find(|l| &l.name == target) {
                None => check.error(
                    format!("{at}.redirect_https"),
                    format!("unknown listener {target:?}"),
                ),
                Some(l) if l.tls.is_none() => check.error(
                    format!("{at}.redirect_https"),
                    format!("listener {target:?} has no [listeners.tls]: redirect_https must name a TLS listener"),
                ),
                Some(_) => {}
            }
        }
        if listener.http3 && listener.tls.is_none() {
            check.error(
                format!("{at}.http3"),
                "http3 needs [listeners.tls] on the same listener",
            );
        }
        if let Some(tls) = &listener.tls {
            if let Some(hsts) = &tls.hsts
                && http::HeaderValue::from_str(hsts).is_err()
            {
                check.error(format!("{at}.tls.hsts"), "not a valid header value");
            }
            if tls.certs.is_empty() && check.memory_certs.of(&listener.name).is_empty() {
                check.error(
                    format!("{at}.tls.certs"),
                    "a TLS listener needs at least one certificate",
                );
            }
            for (j, pair) in tls.certs.iter().enumerate() {
                let cert = resolve(check.base, &pair.cert);
                let key = resolve(check.base, &pair.key);
                if let Err(e) = crate::tls::certs::load_pair(&cert, &key) {
                    let field = match e {
                        crate::tls::certs::CertError::Read { ref path, .. }
                        | crate::tls::certs::CertError::NoKey { ref path, .. }
                            if *path == key =>
                        {
                            "key"
                        }
                        crate::tls::certs::CertError::Mismatch { .. } => "key",
                        _ => "cert",
                    };
                    check.error(format!("{at}.tls.certs[{j}].{field}"), e.to_string());
                }
            }
        }
    }
    let memory_certs = check.memory_certs;
    for name in memory_certs.listeners() {
        if !config
            .listeners
            .iter()
            .any(|l| l.name == name && l.tls.is_some())
        {
            check.error(
                "listeners",
                format!("certificates held in memory for listener {name:?}, which has no [listeners.tls]"),
            );
        }
    }
}

fn routes(check: &mut Check<'_>, config: &Config) {
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        let name = route_name(route);
        if let Some(first) = names.insert(name.clone(), i) {
            let what = if route.name.is_some() {
                "name"
            } else {
                "host and path"
            };
            check.error(
                format!(
                    "{at}.{}",
                    if route.name.is_some() { "name" } else { "path" }
                ),
                format!("duplicate route {name:?}: routes[{first}] has the same {what}"),
            );
        }
        route_match(check, config, route, &at);
        backends(check, config, route, &at);
        route_options(check, route, &at);
    }
}

/// `name = ...`, else `host+path` (the path alone for any host).
pub fn route_name(route: &Route) -> String {
    match (&route.name, &route.host) {
        (Some(name), _) => name.clone(),
        (None, Some(host)) => format!("{host}{}", route.path),
        (None, None) => route.path.clone(),
    }
}

fn route_match(check: &mut Check<'_>, config: &Config, route: &Route, at: &str) {
    if !route.path.starts_with('/') {
        check.error(
            format!("{at}.path"),
            format!("path {:?} must start with '/'", route.path),
        );
    }
    if let Some(host) = &route.host {
        let name = host.strip_prefix("*.").unwrap_or(host);
        let valid = !name.is_empty()
            && !name.contains('*')
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            check.error(
                format!("{at}.host"),
                format!("host {host:?} is not a host name or \"*.suffix\" wildcard"),
            );
        }
    }
    for (j, listener) in route.listeners.iter().flatten().enumerate() {
        if !config.listeners.iter().any(|l| &l.name == listener) {
            check.error(
                format!("{at}.listeners[{j}]"),
                format!("unknown listener {listener:?}"),
            );
        }
    }
}

fn backends(check: &mut Check<'_>, config: &Config, route: &Route, at: &str) {
    if route.backends.is_empty() {
        check.error(
            format!("{at}.backends"),
            "a route needs at least one backend",
        );
    }
    let mut seen = HashSet::new();
    for (j, backend) in route.backends.iter().enumerate() {
        let here = format!("{at}.backends[{j}]");
        match (&backend.site, &backend.service) {
            (Some(site), None) => {
                if !config.sites.contains_key(site) {
                    check.error(
                        format!("{here}.site"),
                        format!("unknown site {site:?}{}", known(config.sites.keys())),
                    );
                }
            }
            (None, Some(service)) => {
                if !config.services.contains_key(service) {
                    check.error(
                        format!("{here}.service"),
                        format!(
                            "unknown service {service:?}{}",
                            known(config.services.keys())
                        ),
                    );
                }
            }
            _ => check.error(
                here.clone(),
                "a backend names exactly one of `site` or `service`",
            ),
        }
        if backend.weight < 0 {
            check.error(
                format!("{here}.weight"),
                format!("weight must not be negative, got {}", backend.weight),
            );
        } else if backend.weight > 1_000_000 {
            check.error(format!("{here}.weight"), "weight must be at most 1000000");
        }
        if !backend.name().is_empty() && !seen.insert(backend.name()) {
            check.error(
                here,
                format!("backend {:?} appears twice in this route", backend.name()),
            );
        }
    }
    // A negative weight has its own error; "all 0" would then be untrue.
    let total: i64 = route.backends.iter().map(|b| b.weight.max(0)).sum();
    let negative = route.backends.iter().any(|b| b.weight < 0);
    if !route.backends.is_empty() && total == 0 && !negative && route.rollout.is_none() {
        check.error(
            format!("{at}.backends"),
            "all backend weights are 0: the route could never answer",
        );
    }
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<_> = names.map(|n| format!("{n:?}")).collect();
    if names.is_empty() {
        " (none are defined)".to_owned()
    } else {
        format!(" (defined: {})", names.join(", "))
    }
}

fn route_options(check: &mut Check<'_>, route: &Route, at: &str) {
    if let Some(affinity) = &route.affinity
        && (affinity.cookie.is_empty() || !affinity.cookie.bytes().all(is_token_byte))
    {
        check.error(
            format!("{at}.affinity.cookie"),
            format!("{:?} is not a valid cookie name", affinity.cookie),
        );
    }
    if let Some(header) = &route.override_header
        && http::HeaderName::from_bytes(header.as_bytes()).is_err()
    {
        check.error(
            format!("{at}.override_header"),
            format!("{header:?} is not a valid header name"),
        );
    }
    for (key, value) in [
        ("timeout", route.timeout),
        ("try_timeout", route.try_timeout),
    ] {
        if value.is_some_and(|d| d.0.is_zero()) {
            check.error(format!("{at}.{key}"), "must be longer than 0");
        }
    }
    if route.retries > 10 {
        check.error(format!("{at}.retries"), "at most 10 retries");
    }
    if let Some(rollout) = &route.rollout {
        let here = format!("{at}.rollout");
        let names: Vec<&str> = route.backends.iter().map(|b| b.name()).collect();
        for (key, name) in [("from", &rollout.from), ("to", &rollout.to)] {
            if !names.contains(&name.as_str()) {
                check.error(
                    format!("{here}.{key}"),
                    format!(
                        "{name:?} is not a backend of this route (backends: {})",
                        names.join(", ")
                    ),
                );
            }
        }
        if rollout.from == rollout.to {
            check.error(
                format!("{here}.to"),
                "`from` and `to` must be different backends",
            );
        }
        if rollout.steps.is_empty() {
            check.error(format!("{here}.steps"), "a rollout needs at least one step");
        }
        for (k, step) in rollout.steps.iter().enumerate() {
            if *step > 100 {
                check.error(
                    format!("{here}.steps[{k}]"),
                    format!("step {step} is over 100 percent"),
                );
            } else if k > 0 && *step <= rollout.steps[k - 1] {
                check.error(format!("{here}.steps[{k}]"), "steps must increase");
            }
        }
        if rollout.step_every.0.is_zero() {
            check.error(format!("{here}.step_every"), "must be longer than 0");
        }
        if let Some(rate) = rollout.max_error_rate
            && !(0.0..=1.0).contains(&rate)
        {
            check.error(
                format!("{here}.max_error_rate"),
                format!("must be between 0 and 1, got {rate}"),
            );
        }
    }
    if let Some(limit) = &route.rate_limit
        && limit.per_ip.count > 1_000_000_000
    {
        check.error(format!("{at}.rate_limit.per_ip"), "rate is too high");
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn sites(check: &mut Check<'_>, config: &Config) {
    for (name, site) in &config.sites {
        let at = format!("sites.{name}");
        let root = resolve(check.base, &site.root);
        match std::fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => check.error(
                format!("{at}.root"),
                format!("site root {} is not a directory", root.display()),
            ),
            Err(e) => check.error(
                format!("{at}.root"),
                format!("site root {}: {e}", root.display()),
            ),
        }
        if let Some(file) = &site.headers_file
            && let Some(path) = super::compile::headers_file(check.base, &root, file)
        {
            match std::fs::read_to_string(&path) {
                Err(e) => check.error(
                    format!("{at}.headers_file"),
                    format!("{}: {e}", path.display()),
                ),
                Ok(text) => {
                    if let Err(errors) = crate::site::netlify::parse(&text) {
                        for e in errors {
                            check.error(
                                format!("{at}.headers_file"),
                                format!("{}: {e}", path.display()),
                            );
                        }
                    }
                }
            }
        }
        for (j, rule) in site.headers.iter().enumerate() {
            let here = format!("{at}.headers[{j}]");
            if !rule.path.starts_with('/') {
                check.error(
                    format!("{here}.path"),
                    format!("pattern {:?} must start with '/'", rule.path),
                );
            }
            for (header, value) in &rule.set {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    check.error(
                        format!("{here}.set"),
                        format!("{header:?} is not a valid header name"),
                    );
                } else if http::HeaderValue::from_str(value).is_err() {
                    check.error(
                        format!("{here}.set"),
                        format!("value of {header:?} is not a valid header value"),
                    );
                }
            }
            for header in &rule.remove {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    check.error(
                        format!("{here}.remove"),
                        format!("{header:?} is not a valid header name"),
                    );
                }
            }
        }
        for (j, prefix) in site.immutable.iter().enumerate() {
            if !prefix.starts_with('/') {
                check.error(
                    format!("{at}.immutable[{j}]"),
                    format!("prefix {prefix:?} must start with '/'"),
                );
            }
        }
    }
}

fn services(check: &mut Check<'_>, config: &Config) {
    for (name, service) in &config.services {
        let at = format!("services.{name}");
        service_regions(check, service, &at);
        if let Some(health) = &service.health {
            if !health.path.starts_with('/') {
                check.error(
                    format!("{at}.health.path"),
                    "health check path must start with '/'",
                );
            }
            if health.interval.0.is_zero() || health.timeout.0.is_zero() {
                check.error(
                    format!("{at}.health"),
                    "interval and timeout must be longer than 0",
                );
            }
            if health.healthy == 0 || health.unhealthy == 0 {
                check.error(
                    format!("{at}.health"),
                    "healthy and unhealthy thresholds must be at least 1",
                );
            }
        }
        if let Some(outlier) = &service.outlier {
            if !(0.0..=1.0).contains(&outlier.max_ejected) {
                check.error(
                    format!("{at}.outlier.max_ejected"),
                    "must be between 0 and 1",
                );
            }
            if outlier.consecutive_failures == 0 {
                check.error(
                    format!("{at}.outlier.consecutive_failures"),
                    "must be at least 1",
                );
            }
        }
        if let Some(failover) = &service.failover
            && !(0.0..=1.0).contains(&failover.min_healthy)
        {
            check.error(
                format!("{at}.failover.min_healthy"),
                "must be between 0 and 1",
            );
        }
        if let Some(UpstreamTls::Custom(options)) = &service.tls
            && let Some(ca) = &options.ca
        {
            let path = resolve(check.base, ca);
            if let Err(e) = std::fs::metadata(&path) {
                check.error(
                    format!("{at}.tls.ca"),
                    format!("cannot read {}: {e}", path.display()),
                );
            }
        }
    }
}

fn service_regions(check: &mut Check<'_>, service: &Service, at: &str) {
    match (&service.endpoints, &service.regions) {
        (Some(endpoints), None) => endpoint_list(check, endpoints, &format!("{at}.endpoints")),
        (None, Some(regions)) => {
            if regions.is_empty() {
                check.error(
                    format!("{at}.regions"),
                    "a service needs at least one region",
                );
            }
            let mut names = BTreeSet::new();
            for (k, region) in regions.iter().enumerate() {
                if !names.insert(region.name.as_str()) {
                    check.error(
                        format!("{at}.regions[{k}].name"),
                        format!("duplicate region {:?}", region.name),
                    );
                }
                endpoint_list(
                    check,
                    &region.endpoints,
                    &format!("{at}.regions[{k}].endpoints"),
                );
            }
        }
        _ => check.error(at, "a service has exactly one of `endpoints` or `regions`"),
    }
}

fn endpoint_list(check: &mut Check<'_>, endpoints: &[String], at: &str) {
    if endpoints.is_empty() {
        check.error(at, "at least one endpoint is needed");
    }
    for (k, endpoint) in endpoints.iter().enumerate() {
        if let Err(why) = endpoint_syntax(endpoint) {
            check.error(
                format!("{at}[{k}]"),
                format!("bad endpoint {endpoint:?}: {why}"),
            );
        }
    }
}

/// `IP:PORT` or `NAME:PORT`; whether the name resolves is not a config matter.
pub fn endpoint_syntax(endpoint: &str) -> Result<(), &'static str> {
    if endpoint.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = endpoint.rsplit_once(':').ok_or("expected HOST:PORT")?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err("the port must be a number from 1 to 65535"),
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(())
    } else {
        Err("not a valid IP address or DNS name")
    }
}

fn dns(check: &mut Check<'_>, config: &Config) {
    let Some(dns) = &config.dns else { return };
    for (i, server) in dns.servers.iter().enumerate() {
        let ok = server.parse::<SocketAddr>().is_ok() || server.parse::<std::net::IpAddr>().is_ok();
        if !ok {
            check.error(
                format!("dns.servers[{i}]"),
                format!("{server:?} is not IP or IP:PORT"),
            );
        }
    }
    if dns.min_ttl > dns.max_ttl {
        check.error("dns.min_ttl", "min_ttl is longer than max_ttl");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for good in [
            "10.0.1.10:8080",
            "[::1]:80",
            "api-blue.use1.internal:8080",
            "localhost:1",
        ] {
            assert_eq!(endpoint_syntax(good), Ok(()), "{good}");
        }
        for bad in [
            "10.0.1.10",
            "host:0",
            "host:99999",
            ":80",
            "a..b:80",
            "http://x:80",
            "a b:80",
        ] {
            assert!(endpoint_syntax(bad).is_err(), "{bad}");
        }
    }
}
