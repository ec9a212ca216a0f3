//! The config file as written: serde types that mirror SPEC.md key for key.
//! No logic lives here; `validate` checks references and `compile` turns a
//! valid `Config` into the runtime `Snapshot`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::units::{Duration, Rate, Size};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub sites: BTreeMap<String, Site>,
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub access_log: AccessLog,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "Admin::default_listen")]
    pub listen: String,
}

impl Admin {
    fn default_listen() -> String {
        "127.0.0.1:9901".to_owned()
    }
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: Admin::default_listen(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Worker threads; default: the CPUs this process may run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub bind: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_https: Option<String>,
    #[serde(default)]
    pub http3: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub certs: Vec<CertPair>,
    #[serde(default)]
    pub min_version: TlsVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default = "Route::default_path")]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<String>>,
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub try_timeout: Option<Duration>,
    #[serde(default)]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
}

impl Route {
    fn default_path() -> String {
        "/".to_owned()
    }
}

/// One weighted target of a route: exactly one of `site` or `service`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Relative weight; signed so that a negative value gets a clear error.
    #[serde(default = "Backend::default_weight")]
    pub weight: i64,
}

impl Backend {
    pub const DEFAULT_WEIGHT: i64 = 100;

    fn default_weight() -> i64 {
        Self::DEFAULT_WEIGHT
    }

    /// The name the backend goes by in `/status`, metrics and cookies.
    pub fn name(&self) -> &str {
        self.service
            .as_deref()
            .or(self.site.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    pub cookie: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_ip: Rate,
    #[serde(default)]
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub from: String,
    pub to: String,
    pub steps: Vec<u32>,
    pub step_every: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99: Option<Duration>,
    #[serde(default)]
    pub min_requests: u64,
    #[serde(default)]
    pub on_failure: OnFailure,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    Rollback,
    Pause,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub root: PathBuf,
    #[serde(default)]
    pub spa: bool,
    #[serde(default)]
    pub precompressed: Vec<Encoding>,
    #[serde(default)]
    pub cross_origin_isolated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_file: Option<PathBuf>,
    #[serde(default)]
    pub headers: Vec<HeaderRule>,
    /// Path prefixes whose files are cached for a year as immutable.
    #[serde(default)]
    pub immutable: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    pub path: String,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Encoding {
    #[serde(rename = "br")]
    Brotli,
    #[serde(rename = "zstd")]
    Zstd,
    #[serde(rename = "gzip")]
    Gzip,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Shorthand for one region named "default".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<Region>>,
    #[serde(default)]
    pub load_balance: LoadBalance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<Outlier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    pub endpoints: Vec<String>,
}

/// `round_robin | least_request | hash:header:NAME | hash:cookie:NAME | hash:ip`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LoadBalance {
    #[default]
    RoundRobin,
    LeastRequest,
    HashHeader(String),
    HashCookie(String),
    HashIp,
}

impl std::str::FromStr for LoadBalance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let named = |rest: &str, make: fn(String) -> LoadBalance| {
            if rest.is_empty() {
                Err(format!("{s:?} needs a name after the last ':'"))
            } else {
                Ok(make(rest.to_owned()))
            }
        };
        match s {
            "round_robin" => Ok(Self::RoundRobin),
            "least_request" => Ok(Self::LeastRequest),
            "hash:ip" => Ok(Self::HashIp),
            _ => {
                if let Some(rest) = s.strip_prefix("hash:header:") {
                    named(rest, Self::HashHeader)
                } else if let Some(rest) = s.strip_prefix("hash:cookie:") {
                    named(rest, Self::HashCookie)
                } else {
                    Err(format!(
                        "unknown load_balance {s:?}: expected round_robin, least_request, hash:header:NAME, hash:cookie:NAME or hash:ip"
                    ))
                }
            }
        }
    }
}

impl fmt::Display for LoadBalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RoundRobin => f.write_str("round_robin"),
            Self::LeastRequest => f.write_str("least_request"),
            Self::HashHeader(name) => write!(f, "hash:header:{name}"),
            Self::HashCookie(name) => write!(f, "hash:cookie:{name}"),
            Self::HashIp => f.write_str("hash:ip"),
        }
    }
}

impl<'de> Deserialize<'de> for LoadBalance {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Serialize for LoadBalance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(default = "Health::default_path")]
    pub path: String,
    #[serde(default = "Health::default_interval")]
    pub interval: Duration,
    #[serde(default = "Health::default_timeout")]
    pub timeout: Duration,
    #[serde(default = "Health::default_threshold")]
    pub healthy: u32,
    #[serde(default = "Health::default_threshold")]
    pub unhealthy: u32,
}

impl Health {
    fn default_path() -> String {
        "/health".to_owned()
    }
    fn default_interval() -> Duration {
        Duration(std::time::Duration::from_secs(2))
    }
    fn default_timeout() -> Duration {
        Duration(std::time::Duration::from_secs(1))
    }
    fn default_threshold() -> u32 {
        2
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outlier {
    #[serde(default = "Outlier::default_failures")]
    pub consecutive_failures: u32,
    #[serde(default = "Outlier::default_eject_for")]
    pub eject_for: Duration,
    #[serde(default = "Outlier::default_max_ejected")]
    pub max_ejected: f64,
}

impl Outlier {
    fn default_failures() -> u32 {
        5
    }
    fn default_eject_for() -> Duration {
        Duration(std::time::Duration::from_secs(30))
    }
    fn default_max_ejected() -> f64 {
        0.5
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    #[serde(default = "Failover::default_min_healthy")]
    pub min_healthy: f64,
    #[serde(default = "Failover::default_failback_after")]
    pub failback_after: Duration,
}

impl Failover {
    fn default_min_healthy() -> f64 {
        0.7
    }
    fn default_failback_after() -> Duration {
        Duration(std::time::Duration::from_secs(30))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    #[serde(rename = "http1")]
    Http1,
    H2c,
    Auto,
}

/// `tls = true` (system roots) or `tls = { ca = "...", server_name = "..." }`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum UpstreamTls {
    Enabled(bool),
    Custom(UpstreamTlsOptions),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl<'de> Deserialize<'de> for UpstreamTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UpstreamTls;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or a table { ca, server_name }")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<UpstreamTls, E> {
                Ok(UpstreamTls::Enabled(b))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<UpstreamTls, A::Error> {
                UpstreamTlsOptions::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(UpstreamTls::Custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    #[serde(default = "Compression::default_algorithms")]
    pub algorithms: Vec<Encoding>,
    #[serde(default = "Compression::default_min_size")]
    pub min_size: Size,
}

impl Compression {
    fn default_algorithms() -> Vec<Encoding> {
        vec![Encoding::Brotli, Encoding::Zstd, Encoding::Gzip]
    }
    fn default_min_size() -> Size {
        Size(1024)
    }
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            algorithms: Self::default_algorithms(),
            min_size: Self::default_min_size(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: Size,
    pub max_body_bytes: Size,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let secs = |s| Duration(std::time::Duration::from_secs(s));
        Limits {
            header_read_timeout: secs(10),
            idle_timeout: secs(60),
            max_header_bytes: Size(64 << 10),
            max_body_bytes: Size(100 << 20),
            max_connections: 100_000,
            shutdown_grace: secs(30),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    #[serde(default)]
    pub format: AccessLogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Json,
    Combined,
    Off,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default = "Dns::default_min_ttl")]
    pub min_ttl: Duration,
    #[serde(default = "Dns::default_max_ttl")]
    pub max_ttl: Duration,
}

impl Dns {
    fn default_min_ttl() -> Duration {
        Duration(std::time::Duration::from_secs(1))
    }
    fn default_max_ttl() -> Duration {
        Duration(std::time::Duration::from_secs(300))
    }
}
