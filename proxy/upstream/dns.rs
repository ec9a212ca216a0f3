//! Names in endpoints, resolved with hickory-resolver and re-resolved at
//! their TTL.
//!
//! - [`Resolver`]: weir's resolver. With `[dns] servers` it asks only those
//!   (UDP, then TCP when an answer is truncated) and ignores the hosts file;
//!   without them it reads the system's resolv.conf and hosts file. Every
//!   answer's TTL is clamped to `[min_ttl, max_ttl]`.
//! - [`Name`]: one configured `NAME:PORT` endpoint, kept resolved. A failed
//!   re-resolution (NXDOMAIN, SERVFAIL, timeout) keeps the last good set; a
//!   name that never resolved has no addresses.
//! - [`watch`]: the loop that refreshes a `Name` at its TTL and reports each
//!   new address set.
//!
//! A and AAAA are asked separately, so one family failing (say AAAA times
//! out while A answers) keeps that family's last good addresses instead of
//! dropping them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as WireError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RecordType;

#[cfg(test)]
mod tests;

/// The most addresses one name contributes; the rest of a larger answer
/// is ignored (the lowest addresses are kept, so the choice is stable).
pub const MAX_ADDRS_PER_NAME: usize = 64;

/// The shortest wait between two resolutions of one name, whatever
/// `min_ttl` says: a zero TTL must not turn the refresh loop into a spin.
pub const MIN_REFRESH: Duration = Duration::from_millis(100);

const DEFAULT_MIN_TTL: Duration = Duration::from_secs(1);
const DEFAULT_MAX_TTL: Duration = Duration::from_secs(300);

/// Per-query timeout and retries for `[dns] servers` (the system
/// configuration brings its own from resolv.conf).
const SERVER_TIMEOUT: Duration = Duration::from_secs(2);
const SERVER_ATTEMPTS: usize = 1;

/// Why a name did not resolve, or why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns.servers: {server:?} is not IP or IP:PORT")]
    BadServer { server: String },
    #[error("dns: min_ttl ({min:?}) is longer than max_ttl ({max:?})")]
    BadTtl { min: Duration, max: Duration },
    #[error("dns: cannot build the resolver: {0}")]
    Build(#[source] NetError),
    #[error("{host:?} is not a valid DNS name: {reason}")]
    BadName { host: String, reason: String },
    #[error("{host:?} does not exist (NXDOMAIN)")]
    NxDomain { host: String },
    #[error("{host:?} has no A or AAAA records")]
    NoRecords { host: String },
    #[error("resolving {host:?} ({family}): the server answered {code}")]
    Rcode {
        host: String,
        family: Family,
        code: ResponseCode,
    },
    #[error("resolving {host:?} ({family}) timed out")]
    Timeout { host: String, family: Family },
    #[error("resolving {host:?} ({family}) failed: {source}")]
    Lookup {
        host: String,
        family: Family,
        #[source]
        source: NetError,
    },
}

/// An address family, as asked for by one query type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn record_type(self) -> RecordType {
        match self {
            Family::V4 => RecordType::A,
            Family::V6 => RecordType::AAAA,
        }
    }

    fn has(self, ip: &IpAddr) -> bool {
        match self {
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "A",
            Family::V6 => "AAAA",
        })
    }
}

/// weir's resolver: `[dns]` servers (UDP then TCP) or, without `[dns]`,
/// the system's resolv.conf and hosts file. TTLs are clamped to
/// `[min_ttl, max_ttl]` (defaults 1s / 5m).
pub struct Resolver {
    inner: TokioResolver,
    min_ttl: Duration,
    max_ttl: Duration,
    /// What it asks, for `Debug` and logs.
    source: String,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("source", &self.source)
            .field("min_ttl", &self.min_ttl)
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

/// The outcome of one query type.
enum Answer {
    /// Addresses of that family, valid until the instant.
    Found(Vec<IpAddr>, Instant),
    /// The server says there are none (NODATA, or NXDOMAIN when `nx`).
    Empty { nx: bool },
    /// No usable answer: timeout, SERVFAIL, REFUSED, I/O...
    Failed(DnsError),
}

/// A resolution with at least one address.
struct Resolved {
    addrs: Vec<IpAddr>,
    ttl: Duration,
    /// One family answered, the other failed: its addresses are unknown.
    failed: Option<(Family, DnsError)>,
}

impl Resolver {
    /// Builds the resolver for `[dns]` (or the system's, without it). No
    /// query is sent until the first lookup.
    pub fn new(config: Option<&crate::config::schema::Dns>) -> Result<Resolver, DnsError> {
        Resolver::build(config, None)
    }

    /// Like [`Resolver::new`], with the per-query timeout and the number
    /// of retries after a failed query (0: ask once) set explicitly.
    pub fn with_timeout(
        config: Option<&crate::config::schema::Dns>,
        timeout: Duration,
        retries: usize,
    ) -> Result<Resolver, DnsError> {
        Resolver::build(config, Some((timeout, retries)))
    }

    fn build(
        config: Option<&crate::config::schema::Dns>,
        timing: Option<(Duration, usize)>,
    ) -> Result<Resolver, DnsError> {
        let (min_ttl, max_ttl) = match config {
            Some(dns) => (dns.min_ttl.0, dns.max_ttl.0),
            None => (DEFAULT_MIN_TTL, DEFAULT_MAX_TTL),
        };
        if min_ttl > max_ttl {
            return Err(DnsError::BadTtl {
                min: min_ttl,
                max: max_ttl,
            });
        }
        let servers = config.map(|dns| dns.servers.as_slice()).unwrap_or(&[]);

        let (mut builder, source) = if servers.is_empty() {
            match TokioResolver::builder_tokio() {
                Ok(builder) => (builder, "system (resolv.conf, hosts)".to_string()),
                Err(err) => {
                    // No usable resolv.conf: names in the hosts file (and
                    // `localhost`) still resolve; anything else fails fast
                    // and its endpoints stay empty.
                    tracing::warn!(error = %err, "dns: cannot read the system resolver configuration; only the hosts file answers");
                    let builder = TokioResolver::builder_with_config(
                        ResolverConfig::default(),
                        TokioRuntimeProvider::default(),
                    );
                    (builder, "hosts file only".to_string())
                }
            }
        } else {
            let mut name_servers = Vec::with_capacity(servers.len());
            let mut shown = Vec::with_capacity(servers.len());
            for server in servers {
                let addr = parse_server(server).ok_or_else(|| DnsError::BadServer {
                    server: server.clone(),
                })?;
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                name_servers.push(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
                shown.push(addr.to_string());
            }
            let builder = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                TokioRuntimeProvider::default(),
            );
            (builder, shown.join(", "))
        };

        let opts: &mut ResolverOpts = builder.options_mut();
        if !servers.is_empty() {
            // Explicit servers are the only source of answers.
            opts.use_hosts_file = ResolveHosts::Never;
            opts.timeout = SERVER_TIMEOUT;
            opts.attempts = SERVER_ATTEMPTS;
        }
        if let Some((timeout, retries)) = timing {
            opts.timeout = timeout;
            opts.attempts = retries;
        }
        // The cache keeps answers exactly as long as weir would, and
        // "no such name / no such type" for min_ttl.
        opts.positive_min_ttl = Some(min_ttl);
        opts.positive_max_ttl = Some(max_ttl);
        opts.negative_min_ttl = Some(min_ttl);
        opts.negative_max_ttl = Some(min_ttl);
        opts.cache_size = 1024;
        let inner = builder.build().map_err(DnsError::Build)?;
        Ok(Resolver {
            inner,
            min_ttl,
            max_ttl,
            source,
        })
    }

    pub fn min_ttl(&self) -> Duration {
        self.min_ttl
    }

    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Every A and AAAA address of `host` (an IP literal resolves to
    /// itself, TTL = max_ttl), with the clamped TTL after which it should
    /// be asked again. When only one family answered, its addresses come
    /// back with TTL = min_ttl, so the other is asked again soon.
    pub async fn lookup(&self, host: &str) -> Result<(Vec<IpAddr>, Duration), DnsError> {
        let resolved = self.resolve(host, false).await?;
        let ttl = match resolved.failed {
            Some(_) => self.min_ttl,
            None => resolved.ttl,
        };
        Ok((resolved.addrs, ttl))
    }

    /// A and AAAA for `host`; `fresh` skips the cache.
    async fn resolve(&self, host: &str, fresh: bool) -> Result<Resolved, DnsError> {
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return Ok(Resolved {
                addrs: vec![ip],
                ttl: self.max_ttl,
                failed: None,
            });
        }
        let name = hickory_resolver::proto::rr::Name::from_utf8(host).map_err(|err| {
            DnsError::BadName {
                host: host.to_string(),
                reason: err.to_string(),
            }
        })?;
        if fresh {
            self.inner.clear_lookup_cache(name.clone(), RecordType::A);
            self.inner
                .clear_lookup_cache(name.clone(), RecordType::AAAA);
        }
        let (v4, v6) = tokio::join!(
            self.family(host, &name, Family::V4),
            self.family(host, &name, Family::V6)
        );
        let now = Instant::now();
        let ttl = |until: Instant| {
            until
                .saturating_duration_since(now)
                .clamp(self.min_ttl, self.max_ttl)
        };
        match (v4, v6) {
            (Answer::Found(mut a, t4), Answer::Found(b, t6)) => {
                a.extend(b);
                Ok(Resolved {
                    addrs: a,
                    ttl: ttl(t4.min(t6)),
                    failed: None,
                })
            }
            (Answer::Found(addrs, until), Answer::Empty { .. })
            | (Answer::Empty { .. }, Answer::Found(addrs, until)) => Ok(Resolved {
                addrs,
                ttl: ttl(until),
                failed: None,
            }),
            (Answer::Found(addrs, until), Answer::Failed(err)) => Ok(Resolved {
                addrs,
                ttl: ttl(until),
                failed: Some((Family::V6, err)),
            }),
            (Answer::Failed(err), Answer::Found(addrs, until)) => Ok(Resolved {
                addrs,
                ttl: ttl(until),
                failed: Some((Family::V4, err)),
            }),
            (Answer::Empty { nx: n4 }, Answer::Empty { nx: n6 }) => Err(if n4 || n6 {
                DnsError::NxDomain {
                    host: host.to_string(),
                }
            } else {
                DnsError::NoRecords {
                    host: host.to_string(),
                }
            }),
            // A failure says more than "none of this family".
            (Answer::Failed(err), _) | (_, Answer::Failed(err)) => Err(err),
        }
    }

    async fn family(
        &self,
        host: &str,
        name: &hickory_resolver::proto::rr::Name,
        family: Family,
    ) -> Answer {
        match self.inner.lookup(name.clone(), family.record_type()).await {
            Ok(lookup) => {
                let addrs: Vec<IpAddr> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| record.data.ip_addr())
                    .filter(|ip| family.has(ip))
                    .collect();
                if addrs.is_empty() {
                    Answer::Empty { nx: false }
                } else {
                    Answer::Found(addrs, lookup.valid_until())
                }
            }
            Err(NetError::Dns(WireError::NoRecordsFound(NoRecords { response_code, .. }))) => {
                Answer::Empty {
                    nx: response_code == ResponseCode::NXDomain,
                }
            }
            Err(NetError::Dns(WireError::ResponseCode(code))) => Answer::Failed(DnsError::Rcode {
                host: host.to_string(),
                family,
                code,
            }),
            Err(NetError::Timeout) => Answer::Failed(DnsError::Timeout {
                host: host.to_string(),
                family,
            }),
            Err(source) => Answer::Failed(DnsError::Lookup {
                host: host.to_string(),
                family,
                source,
            }),
        }
    }
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; the port defaults to 53.
fn parse_server(server: &str) -> Option<SocketAddr> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = server
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(server);
    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

/// One configured endpoint that names a host (e.g. `api.internal:8080`),
/// kept resolved: `refresh` re-resolves and returns when to do it again,
/// keeping the last good set on failure (NXDOMAIN, SERVFAIL, timeout); a
/// name that never resolved has no addresses.
#[derive(Debug)]
pub struct Name {
    pub host: String,
    pub port: u16,
    /// Sorted, deduplicated, at most [`MAX_ADDRS_PER_NAME`].
    addrs: ArcSwap<Vec<SocketAddr>>,
    /// Failed refreshes in a row, for the backoff.
    failures: AtomicU32,
}

impl Name {
    /// A name with no addresses yet.
    pub fn new(host: impl Into<String>, port: u16) -> Name {
        Name {
            host: host.into(),
            port,
            addrs: ArcSwap::from_pointee(Vec::new()),
            failures: AtomicU32::new(0),
        }
    }

    /// `NAME:PORT` → a `Name`; `None` for `IP:PORT` (those need no DNS) and
    /// for anything that is not a host name with a port.
    pub fn parse(endpoint: &str) -> Option<Name> {
        if endpoint.parse::<SocketAddr>().is_ok() {
            return None;
        }
        let (host, port) = endpoint.rsplit_once(':')?;
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let port: u16 = port.parse().ok()?;
        let labels = host.strip_suffix('.').unwrap_or(host);
        let valid = !labels.is_empty()
            && host.len() <= 254
            && labels.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid || host.parse::<IpAddr>().is_ok() {
            return None;
        }
        Some(Name::new(host, port))
    }

    /// The current set (the last good one), sorted.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs.load().as_ref().clone()
    }

    /// Resolves once (skipping the cache) and returns when to refresh
    /// next: the clamped TTL on success; on failure `min_ttl`, doubling
    /// with each failure in a row up to `max_ttl`. Never less than
    /// [`MIN_REFRESH`].
    pub async fn refresh(&self, resolver: &Resolver) -> Duration {
        match resolver.resolve(&self.host, true).await {
            Ok(Resolved {
                addrs,
                ttl,
                failed: None,
            }) => {
                let failures = self.failures.swap(0, Ordering::Relaxed);
                if failures > 0 {
                    tracing::info!(name = %self.host, failures, "dns: name resolves again");
                }
                self.store(addrs);
                ttl.max(MIN_REFRESH)
            }
            Ok(Resolved {
                mut addrs,
                ttl,
                failed: Some((family, err)),
            }) => {
                // Keep the failed family's last good addresses.
                let old = self.addrs.load();
                addrs.extend(old.iter().map(SocketAddr::ip).filter(|ip| family.has(ip)));
                drop(old);
                self.store(addrs);
                self.failed(resolver, &err).min(ttl).max(MIN_REFRESH)
            }
            Err(err) => self.failed(resolver, &err),
        }
    }

    /// Counts a failure and returns the backoff before the next try.
    fn failed(&self, resolver: &Resolver, err: &DnsError) -> Duration {
        let before = self.failures.fetch_add(1, Ordering::Relaxed);
        let kept = self.addrs.load().len();
        if before == 0 {
            tracing::warn!(name = %self.host, error = %err, kept, "dns: resolution failed; keeping the last good addresses");
        } else {
            tracing::debug!(name = %self.host, error = %err, kept, failures = before + 1, "dns: resolution still failing");
        }
        backoff(resolver.min_ttl, resolver.max_ttl, before)
    }

    /// Publishes a new set if it differs; returns whether it did.
    fn store(&self, ips: Vec<IpAddr>) -> bool {
        let mut ips = ips;
        ips.sort_unstable();
        ips.dedup();
        ips.truncate(MAX_ADDRS_PER_NAME);
        let next: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.port))
            .collect();
        if **self.addrs.load() == next {
            return false;
        }
        tracing::debug!(name = %self.host, addrs = ?next, "dns: new address set");
        self.addrs.store(Arc::new(next));
        true
    }
}

/// `min_ttl · 2^failures`, capped at `max_ttl`, at least [`MIN_REFRESH`].
fn backoff(min_ttl: Duration, max_ttl: Duration, failures: u32) -> Duration {
    let base = min_ttl.max(MIN_REFRESH);
    base.saturating_mul(1 << failures.min(20))
        .min(max_ttl.max(base))
}

/// Refreshes `name` at its TTL until `stop` turns true (or its sender is
/// dropped), calling `on_change` with the new set each time it changes
/// (not for the set the name had when `watch` started).
pub async fn watch(
    name: Arc<Name>,
    resolver: Arc<Resolver>,
    on_change: impl Fn(Vec<SocketAddr>) + Send + 'static,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last = name.addrs();
    loop {
        let next = tokio::select! {
            next = name.refresh(&resolver) => next,
            () = stopped(&mut stop) => return,
        };
        let now = name.addrs();
        if now != last {
            last = now.clone();
            on_change(now);
        }
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Resolves once the stop flag is true or its sender is gone.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // `wait_for` fails only when the sender is dropped: stop then too.
    let _ = stop.wait_for(|stop| *stop).await;
}
