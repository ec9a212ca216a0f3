//! The `/status` document (shape fixed by SPEC.md "Details").

use serde_json::{Value, json};

use crate::snapshot::Snapshot;
use crate::telemetry::access::rfc3339;

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
                .map(|b| {
                    json!({
                        "name": &*b.name,
                        "weight": b.weight,
                        "effective_weight": route.split.effective_weight(b),
                    })
                })
                .collect();
            json!({ "name": &*route.name, "backends": backends, "rollout": null })
        })
        .collect();
    let services: Vec<Value> = snapshot
        .services
        .iter()
        .map(|service| {
            let regions: Vec<Value> = service
                .regions
                .iter()
                .map(|region| {
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
