//! The `/status` document (shape fixed by SPEC.md "Details").

use serde_json::{Value, json};

use crate::router::Route;
use crate::snapshot::Snapshot;
use crate::telemetry::access::rfc3339;

/// A split weight in the config's units, as an integer when it is one.
fn weight(route: &Route, w: u32) -> Value {
    let w = route.weight_in_config_units(w);
    if w.fract() == 0.0 {
        json!(w as u64)
    } else {
        json!(w)
    }
}

pub fn status(snapshot: &Snapshot) -> Value {
    let routes: Vec<Value> = snapshot
        .router
        .routes()
        .iter()
        .map(|route| {
            let backends: Vec<Value> = route
                .split
                .backends()
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    json!({
                        "name": &*b.name,
                        "weight": weight(route, route.split.weight(i)),
                        "effective_weight": weight(route, route.split.effective_weight(i)),
                    })
                })
                .collect();
            let rollout = route.rollout.as_ref().map(|r| r.status());
            json!({ "name": &*route.name, "backends": backends, "rollout": rollout })
        })
        .collect();
    let services: Vec<Value> = snapshot
        .services
        .iter()
        .map(|service| {
            let shares = service.shares();
            let regions: Vec<Value> = service
                .regions
                .iter()
                .zip(&shares)
                .map(|(region, share)| {
                    let endpoints = region.endpoints.load();
                    let listed: Vec<Value> = endpoints
                        .iter()
                        .map(|e| {
                            json!({
                                "address": e.addr.to_string(),
                                "healthy": e.is_healthy(),
                                "ejected": e.is_ejected(std::time::Instant::now()),
                            })
                        })
                        .collect();
                    json!({
                        "name": &*region.name,
                        "configured": region.configured,
                        "healthy": endpoints.iter().filter(|e| e.is_healthy()).count(),
                        "total": endpoints.len(),
                        "share": share,
                        "endpoints": listed,
                    })
                })
                .collect();
            json!({
                "name": service.name,
                "active_region": service.active_region().map(|r| &*r.name),
                "regions": regions,
            })
        })
        .collect();
    json!({
        "generation": snapshot.generation,
        "loaded_at": rfc3339(snapshot.loaded_at),
        "routes": routes,
        "services": services,
    })
}

/// `listeners` in `/status`: each listener with the addresses it is bound
/// to now (TCP, and UDP for HTTP/3), so ports chosen by the system show.
pub fn listeners(snapshot: &Snapshot, sockets: &crate::listener::set::Sockets) -> Value {
    snapshot
        .listeners
        .iter()
        .map(|l| {
            let tcp: Vec<String> = sockets
                .local_addrs(&l.name)
                .iter()
                .map(ToString::to_string)
                .collect();
            let udp: Vec<String> = sockets
                .quic_addrs(&l.name)
                .iter()
                .map(ToString::to_string)
                .collect();
            json!({ "name": &*l.name, "tls": l.tls.is_some(), "tcp": tcp, "udp": udp })
        })
        .collect()
}
