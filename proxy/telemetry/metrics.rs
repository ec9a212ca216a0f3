//! Every metric weir exports, named in one place. The families live in a
//! `Metrics` value built from a registry that is passed in; the request path
//! holds pre-resolved handles (`BackendMetrics`) so it never builds labels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub backend: String,
    pub code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub route: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub listener: String,
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub service: String,
    pub region: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub service: String,
    pub region: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegionLabels {
    pub service: String,
    pub region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EncodingLabels {
    pub encoding: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub listener: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

type HistogramFamily = Family<BackendLabels, Histogram, fn() -> Histogram>;

/// Request duration buckets, 1 ms .. ~16 s.
fn duration_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 15,
    ))
}

#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    backend_weight: Family<BackendLabels, Gauge<f64, AtomicU64>>,
    open_connections: Family<ConnectionLabels, Gauge>,
    config_reloads: Family<ResultLabels, Counter>,
    /// `weir_response_bytes_total` per encoding, in `ENCODINGS` order.
    response_bytes: [Counter; 4],
    upstream_attempts: Family<AttemptLabels, Counter>,
    endpoint_healthy: Family<EndpointLabels, Gauge>,
    tls_handshakes: Family<HandshakeLabels, Counter>,
    active_region: Family<RegionLabels, Gauge>,
    rollout_step: Family<RouteLabels, Gauge>,
    /// Requests no route took (404, redirects to HTTPS, refused bodies).
    unrouted: Arc<Refused>,
}

/// Content encodings counted by `weir_response_bytes_total`.
pub const ENCODINGS: [&str; 4] = ["identity", "br", "zstd", "gzip"];

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            backend_weight: Family::default(),
            open_connections: Family::default(),
            config_reloads: Family::default(),
            response_bytes: Default::default(),
            upstream_attempts: Family::default(),
            endpoint_healthy: Family::default(),
            tls_handshakes: Family::default(),
            active_region: Family::default(),
            rollout_step: Family::default(),
            unrouted: Arc::default(),
        };
        let bytes: Family<EncodingLabels, Counter> = Family::default();
        let metrics = Metrics {
            response_bytes: ENCODINGS
                .map(|encoding| bytes.get_or_create(&EncodingLabels { encoding }).clone()),
            unrouted: Arc::new(metrics.refused("")),
            ..metrics
        };
        registry.register(
            "response_bytes",
            "Response body bytes sent, by content encoding",
            bytes,
        );
        registry.register(
            "requests",
            "Requests by route, backend and status class",
            metrics.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request duration, head received to body sent",
            metrics.duration.clone(),
        );
        registry.register(
            "backend_weight",
            "Effective weight of each backend of a route",
            metrics.backend_weight.clone(),
        );
        registry.register(
            "open_connections",
            "Open client connections by listener and protocol",
            metrics.open_connections.clone(),
        );
        registry.register(
            "upstream_attempts",
            "Attempts to reach an upstream, by service, region and outcome",
            metrics.upstream_attempts.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by listener and result (ok, failed, timeout)",
            metrics.tls_handshakes.clone(),
        );
        registry.register(
            "endpoint_healthy",
            "1 when an endpoint is healthy, 0 when not",
            metrics.endpoint_healthy.clone(),
        );
        registry.register(
            "active_region",
            "1 for each region a service sends traffic to, 0 for standby regions",
            metrics.active_region.clone(),
        );
        registry.register(
            "rollout_step",
            "Percent of a rolling-out route's pair share sent to `to` (0 once rolled back)",
            metrics.rollout_step.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by result",
            metrics.config_reloads.clone(),
        );
        metrics
    }

    /// Counts the requests no route took.
    pub fn unrouted(&self) -> &Arc<Refused> {
        &self.unrouted
    }

    /// The refusals of route `route` ("": of requests no route took).
    pub fn refused(&self, route: &str) -> Refused {
        Refused {
            route: route.to_owned(),
            family: self.requests.clone(),
            counters: Default::default(),
        }
    }

    /// Handles for one backend of one route, resolved once per snapshot.
    pub fn backend(&self, route: &str, backend: &str) -> BackendMetrics {
        let labels = BackendLabels {
            route: route.to_owned(),
            backend: backend.to_owned(),
        };
        BackendMetrics {
            requests: CODE_CLASSES.map(|code_class| {
                self.requests
                    .get_or_create(&RequestLabels {
                        route: route.to_owned(),
                        backend: backend.to_owned(),
                        code_class,
                    })
                    .clone()
            }),
            duration: self.duration.get_or_create(&labels).clone(),
        }
    }

    pub fn connections(&self, listener: &str, protocol: &'static str) -> Gauge {
        self.open_connections
            .get_or_create(&ConnectionLabels {
                listener: listener.to_owned(),
                protocol,
            })
            .clone()
    }

    /// Attempt counters of one region of a service.
    pub fn attempts(&self, service: &str, region: &str) -> Attempts {
        let counter = |outcome| {
            self.upstream_attempts
                .get_or_create(&AttemptLabels {
                    service: service.to_owned(),
                    region: region.to_owned(),
                    outcome,
                })
                .clone()
        };
        Attempts {
            ok: counter("ok"),
            connect_error: counter("connect_error"),
            timeout: counter("timeout"),
            error: counter("error"),
        }
    }

    /// Sets the health and region gauges from the live state, dropping
    /// series of endpoints and regions that are gone (called per scrape).
    pub fn observe_services(&self, services: &[std::sync::Arc<crate::upstream::Service>]) {
        self.endpoint_healthy.clear();
        self.active_region.clear();
        for service in services {
            let shares = service.shares();
            for (region, share) in service.regions.iter().zip(&shares) {
                let is_active = *share > 0.0;
                self.active_region
                    .get_or_create(&RegionLabels {
                        service: service.name.clone(),
                        region: region.name.to_string(),
                    })
                    .set(i64::from(is_active));
                for endpoint in region.endpoints.load().iter() {
                    self.endpoint_healthy
                        .get_or_create(&EndpointLabels {
                            service: service.name.clone(),
                            region: region.name.to_string(),
                            endpoint: endpoint.addr.to_string(),
                        })
                        .set(i64::from(endpoint.is_healthy()));
                }
            }
        }
    }

    /// Sets effective backend weights and rollout steps from the live
    /// state of `routes`, dropping series of routes that are gone (called
    /// per scrape).
    pub fn observe_routes(&self, routes: &[std::sync::Arc<crate::router::Route>]) {
        self.backend_weight.clear();
        self.rollout_step.clear();
        for route in routes {
            for (i, backend) in route.split.backends().iter().enumerate() {
                self.backend_weight
                    .get_or_create(&BackendLabels {
                        route: route.name.to_string(),
                        backend: backend.name.to_string(),
                    })
                    .set(route.weight_in_config_units(route.split.effective_weight(i)));
            }
            if let Some(rollout) = &route.rollout {
                self.rollout_step
                    .get_or_create(&RouteLabels {
                        route: route.name.to_string(),
                    })
                    .set(i64::from(rollout.percent()));
            }
        }
    }

    /// The byte counter for a response's `Content-Encoding` (absent = identity).
    pub fn bytes_sent(&self, content_encoding: Option<&[u8]>) -> Counter {
        let index = content_encoding
            .and_then(|e| ENCODINGS.iter().position(|name| name.as_bytes() == e))
            .unwrap_or(0);
        self.response_bytes[index].clone()
    }

    pub fn handshake(&self, listener: &str, result: &'static str) {
        self.tls_handshakes
            .get_or_create(&HandshakeLabels {
                listener: listener.to_owned(),
                result,
            })
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
    }
}

/// `weir_requests_total` of the requests answered without a backend: a
/// route's own refusals (rate limited, no backend up) and, under route
/// "", requests no route took. A series is made when first counted, so
/// that routes that never refuse add none.
#[derive(Debug, Default)]
pub struct Refused {
    route: String,
    family: Family<RequestLabels, Counter>,
    counters: [OnceLock<Counter>; 5],
}

impl Refused {
    pub fn observe(&self, status: u16) {
        let class = code_class(status);
        self.counters[class]
            .get_or_init(|| {
                self.family
                    .get_or_create(&RequestLabels {
                        route: self.route.clone(),
                        backend: String::new(),
                        code_class: CODE_CLASSES[class],
                    })
                    .clone()
            })
            .inc();
    }
}

/// The index of `status`'s class in [`CODE_CLASSES`].
fn code_class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Pre-resolved metric handles of one route/backend pair.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    requests: [Counter; 5],
    duration: Histogram,
}

impl BackendMetrics {
    pub fn observe(&self, status: u16, seconds: f64) {
        self.requests[code_class(status)].inc();
        self.duration.observe(seconds);
    }
}

impl Default for BackendMetrics {
    /// Handles registered nowhere, for tests and unrouted requests.
    fn default() -> Self {
        BackendMetrics {
            requests: Default::default(),
            duration: duration_histogram(),
        }
    }
}

/// `weir_upstream_attempts_total` handles of one service region.
#[derive(Debug, Clone, Default)]
pub struct Attempts {
    ok: Counter,
    connect_error: Counter,
    timeout: Counter,
    error: Counter,
}

impl Attempts {
    pub fn ok(&self) {
        self.ok.inc();
    }

    pub fn failed(&self, timeout: bool, connect: bool) {
        match (timeout, connect) {
            (true, _) => self.timeout.inc(),
            (_, true) => self.connect_error.inc(),
            _ => self.error.inc(),
        };
    }
}

/// Renders the registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
