//! The one bridge from the file's schema to the runtime `Snapshot`: sites,
//! services, routes with their weighted backends, listeners with their
//! certificates (loaded from the files the config names, then those the
//! document holds in memory). Runs after `validate`, so references are
//! known to exist.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::Document;
use super::error::{ConfigError, Diagnostic};
use super::schema::{self, AccessLogFormat};
use super::validate::{resolve, route_name};
use crate::balancer::affinity::Affinity;
use crate::balancer::rollout::Rollout;
use crate::balancer::{Backend, Split, Target};
use crate::http::compression::Coding;
use crate::http::rate_limit::RateLimiter;
use crate::listener::{Spec as ListenerSpec, TlsSpec};
use crate::reload::carry::Previous;
use crate::router::{self, HostMatch, Router};
use crate::site::rules::Rules;
use crate::site::{Site, netlify};
use crate::snapshot::{AccessLog, Limits, Snapshot};
use crate::telemetry::metrics::Metrics;
use crate::upstream::{Region, Service};

/// Builds the runtime snapshot, carrying live state over from `previous`
/// (the snapshot it replaces) where its identity is unchanged. Fails only
/// when the disk changed since validation (a root vanished, a certificate
/// became unreadable).
pub fn compile(
    doc: &Document,
    generation: u64,
    metrics: &Metrics,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, ConfigError> {
    let config = &doc.config;
    let previous = Previous(previous);
    let mut errors = Vec::new();
    let problem = |path: String, message: String| Diagnostic {
        file: doc.file.clone().unwrap_or_default(),
        line: 0,
        column: 0,
        path,
        message,
    };

    let mut sites = HashMap::new();
    for (name, site) in &config.sites {
        let root = resolve(&doc.base, &site.root);
        match root.canonicalize() {
            Ok(root) => match compile_site(name, site, root, config, &doc.base, previous) {
                Ok(built) => {
                    sites.insert(name.as_str(), Arc::new(built));
                }
                Err(why) => errors.push(problem(format!("sites.{name}.headers"), why)),
            },
            Err(e) => errors.push(problem(
                format!("sites.{name}.root"),
                format!("{}: {e}", root.display()),
            )),
        }
    }
    let services: HashMap<&str, Arc<Service>> = config
        .services
        .iter()
        .filter_map(|(name, service)| {
            match compile_service(name, service, metrics, &doc.base, previous) {
                Ok(built) => Some((name.as_str(), Arc::new(built))),
                Err(e) => {
                    errors.push(problem(format!("services.{name}.tls"), e.to_string()));
                    None
                }
            }
        })
        .collect();

    let now = std::time::Instant::now();
    let mut routes = Vec::with_capacity(config.routes.len());
    for route in &config.routes {
        let name: Arc<str> = route_name(route).into();
        let backends: Vec<Backend> = route
            .backends
            .iter()
            .filter_map(|b| {
                let target = match (&b.site, &b.service) {
                    (Some(site), _) => Target::Site(sites.get(site.as_str())?.clone()),
                    (_, Some(service)) => Target::Service(services.get(service.as_str())?.clone()),
                    _ => return None,
                };
                let weight = u32::try_from(b.weight).unwrap_or(0);
                Some(Backend {
                    name: b.name().into(),
                    weight,
                    target,
                    metrics: metrics.backend(&name, b.name()),
                })
            })
            .collect();
        let rollout = route.rollout.as_ref().and_then(|section| {
            let names: Vec<&str> = backends.iter().map(|b| &*b.name).collect();
            let before = previous.route(&name).and_then(|r| r.rollout.as_ref());
            Rollout::new(section, &names, before, now)
        });
        let split = match &rollout {
            Some(rollout) => {
                let weights =
                    rollout.weights(&backends.iter().map(|b| b.weight).collect::<Vec<_>>());
                Split::with_weights(backends, weights)
            }
            None => Split::new(backends),
        };
        let rate_limit = route.rate_limit.as_ref().map(|limit| {
            previous
                .route(&name)
                .and_then(|r| r.options.rate_limit.clone())
                .filter(|kept| kept.same_settings(limit))
                .unwrap_or_else(|| Arc::new(RateLimiter::new(limit)))
        });
        routes.push(router::Route {
            refused: metrics.refused(&name),
            name,
            host: HostMatch::parse(route.host.as_deref()),
            prefix: route.path.clone(),
            strip_prefix: route.strip_prefix,
            listeners: route
                .listeners
                .as_ref()
                .map(|names| names.iter().map(|n| Arc::from(n.as_str())).collect()),
            split,
            rollout,
            options: router::Options {
                timeout: route.timeout.map(|d| d.0),
                try_timeout: route.try_timeout.map(|d| d.0),
                retries: route.retries,
                rate_limit,
                affinity: route
                    .affinity
                    .as_ref()
                    .map(|a| Affinity::new(&a.cookie, a.max_age.map(|d| d.0))),
                // Validated as a header name (from_bytes lowercases it).
                override_header: route
                    .override_header
                    .as_ref()
                    .and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok()),
            },
        });
    }

    let mut listeners = Vec::with_capacity(config.listeners.len());
    for (i, listener) in config.listeners.iter().enumerate() {
        let tls = match &listener.tls {
            None => None,
            Some(tls) => {
                let mut certs = Vec::new();
                for (j, pair) in tls.certs.iter().enumerate() {
                    let (cert, key) = (
                        resolve(&doc.base, &pair.cert),
                        resolve(&doc.base, &pair.key),
                    );
                    match crate::tls::certs::load_pair(&cert, &key) {
                        Ok(loaded) => certs.push(loaded),
                        Err(e) => errors.push(problem(
                            format!("listeners[{i}].tls.certs[{j}]"),
                            e.to_string(),
                        )),
                    }
                }
                certs.extend_from_slice(doc.memory_certs.of(&listener.name));
                match crate::tls::server_config(certs.clone(), tls.min_version) {
                    Ok(server_config) => Some(TlsSpec {
                        certs,
                        min_version: tls.min_version,
                        hsts: tls.hsts.clone(),
                        hsts_header: tls
                            .hsts
                            .as_deref()
                            .and_then(|h| http::HeaderValue::from_str(h).ok()),
                        server_config,
                    }),
                    Err(e) => {
                        errors.push(problem(format!("listeners[{i}].tls"), e.to_string()));
                        None
                    }
                }
            }
        };
        let redirect = listener.redirect_https.as_ref().and_then(|target| {
            let target = config.listeners.iter().find(|l| &l.name == target)?;
            let port = target
                .bind
                .first()?
                .parse::<std::net::SocketAddr>()
                .ok()?
                .port();
            Some(crate::listener::Redirect::new(
                target.name.as_str().into(),
                port,
            ))
        });
        listeners.push(Arc::new(ListenerSpec {
            name: listener.name.as_str().into(),
            binds: listener
                .bind
                .iter()
                .filter_map(|b| b.parse().ok())
                .collect(),
            redirect_https: redirect,
            http3: listener.http3,
            tls,
        }));
    }

    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors));
    }
    let limits = &config.limits;
    let mut services: Vec<Arc<Service>> = services.into_values().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Snapshot {
        generation,
        services,
        compression: crate::upstream::proxy::Compression {
            algorithms: config
                .compression
                .algorithms
                .iter()
                .map(|e| Coding::from_config(*e))
                .collect(),
            min_size: config.compression.min_size.0,
        },
        loaded_at: SystemTime::now(),
        file: doc.file.clone(),
        admin: config.admin.listen.parse().map_err(|_| {
            ConfigError::Invalid(vec![problem("admin.listen".into(), "bad address".into())])
        })?,
        workers: config.runtime.workers,
        listeners,
        router: Router::new(routes),
        limits: Limits {
            header_read_timeout: limits.header_read_timeout.0,
            idle_timeout: limits.idle_timeout.0,
            max_header_bytes: usize::try_from(limits.max_header_bytes.0).unwrap_or(usize::MAX),
            max_body_bytes: limits.max_body_bytes.0,
            max_connections: limits.max_connections,
            shutdown_grace: limits.shutdown_grace.0,
        },
        access_log: match config.access_log.format {
            AccessLogFormat::Json => AccessLog::Json,
            AccessLogFormat::Combined => AccessLog::Combined,
            AccessLogFormat::Off => AccessLog::Off,
        },
        effective: effective_json(config),
        dns: config.dns.clone(),
        stop_tasks: tokio::sync::watch::channel(false).0,
    })
}

fn compile_site(
    name: &str,
    site: &schema::Site,
    root: std::path::PathBuf,
    config: &schema::Config,
    base: &std::path::Path,
    previous: Previous<'_>,
) -> Result<Site, String> {
    let file_rules = match &site.headers_file {
        None => Vec::new(),
        Some(file) => match headers_file(base, &root, file) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                netlify::parse(&text).map_err(|errors| {
                    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    format!("{}: {}", path.display(), lines.join("; "))
                })?
            }
            None => Vec::new(),
        },
    };
    let rules = Rules::compile(&site.headers, &file_rules).map_err(|e| e.join("; "))?;
    let coding = |e: &schema::Encoding| Coding::from_config(*e);
    let mut built = Site::new(name.to_owned(), root, site.spa);
    if let Some(file) = &site.headers_file {
        for candidate in headers_file_candidates(base, &built.root, file) {
            built.hide_rules_file(&candidate);
        }
    }
    built.precompressed = site.precompressed.iter().map(coding).collect();
    built.compress = config.compression.algorithms.iter().map(coding).collect();
    built.min_size = config.compression.min_size.0;
    built.cross_origin_isolated = site.cross_origin_isolated;
    built.immutable = site.immutable.clone();
    built.rules = rules;
    // Cached entries hold their headers (rules, policy, isolation) and
    // encodings: only a site configured exactly the same keeps its cache.
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(
        &format!("{site:?}{file_rules:?}{:?}", config.compression),
        &mut hasher,
    );
    built.identity = std::hash::Hasher::finish(&hasher);
    if let Some(kept) = previous
        .site(name)
        .filter(|p| p.root == built.root && p.identity == built.identity)
    {
        built.cache = kept.cache.clone();
    }
    Ok(built)
}

/// Where a site's `headers_file` is: relative to the config file's
/// directory, else (Netlify style) inside the site root; `None` when it
/// does not exist yet (no rules until it does).
pub fn headers_file(
    base: &std::path::Path,
    root: &std::path::Path,
    file: &std::path::Path,
) -> Option<std::path::PathBuf> {
    headers_file_candidates(base, root, file)
        .into_iter()
        .find(|candidate| candidate.is_file())
}

/// Where a site's `headers_file` may be, in the order looked at. Neither
/// is served by the site, existing or not (`Site::hide_rules_file`).
fn headers_file_candidates(
    base: &std::path::Path,
    root: &std::path::Path,
    file: &std::path::Path,
) -> [std::path::PathBuf; 2] {
    [resolve(base, file), resolve(root, file)]
}

fn compile_service(
    name: &str,
    service: &schema::Service,
    metrics: &Metrics,
    base: &std::path::Path,
    previous: Previous<'_>,
) -> Result<Service, crate::upstream::client::ClientError> {
    let before = previous.service(name);
    let regions: Vec<(&str, &Vec<String>)> = match (&service.endpoints, &service.regions) {
        (Some(endpoints), _) => vec![("default", endpoints)],
        (None, Some(regions)) => regions
            .iter()
            .map(|r| (r.name.as_str(), &r.endpoints))
            .collect(),
        (None, None) => Vec::new(),
    };
    let configured: Vec<&str> = regions
        .iter()
        .flat_map(|(_, endpoints)| endpoints.iter().map(String::as_str))
        .collect();
    let tls = crate::upstream::client::tls_settings(service.tls.as_ref(), base, &configured)?;
    let pool = match before
        .filter(|b| tls.is_none() && b.scheme == "http" && b.protocol == service.protocol)
    {
        Some(kept) => kept.pool.clone(),
        None => crate::upstream::client::pool(service.protocol, tls.as_ref())?,
    };
    let regions: Vec<Region> = regions
        .into_iter()
        .map(|(region, endpoints)| {
            let kept = before.and_then(|b| b.regions.iter().find(|r| &*r.name == region));
            Region::carried(
                region,
                endpoints.clone(),
                metrics.attempts(name, region),
                kept,
            )
        })
        .collect();
    let same_regions = before.is_some_and(|b| {
        b.regions
            .iter()
            .map(|r| &r.name)
            .eq(regions.iter().map(|r| &r.name))
    });
    let failover_state = match before.filter(|_| same_regions) {
        Some(kept) => kept
            .failover_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        None => Default::default(),
    };
    Ok(Service {
        name: name.to_owned(),
        regions,
        protocol: service.protocol,
        load_balance: service.load_balance.clone(),
        pool,
        health: service.health.clone(),
        scheme: if tls.is_some() { "https" } else { "http" },
        budget: Default::default(),
        outlier: service
            .outlier
            .as_ref()
            .map(crate::upstream::outlier::Policy::from),
        failover: service.failover.as_ref().into(),
        failover_state: std::sync::Mutex::new(failover_state),
        region_draws: Default::default(),
    })
}

/// The config as `/config` shows it. Certificates are listed by path; key
/// material never enters the schema, so nothing secret can leak here.
fn effective_json(config: &schema::Config) -> serde_json::Value {
    serde_json::to_value(config).unwrap_or(serde_json::Value::Null)
}
