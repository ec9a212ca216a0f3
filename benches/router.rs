//! Route matching over 1,000 routes: exact hosts, wildcards and catch-alls,
//! each with several prefixes, as a large multi-tenant edge would have.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use weir::balancer::Split;
use weir::router::{HostMatch, Route, Router};

fn route(i: usize, host: Option<String>, prefix: String) -> Route {
    Route {
        name: Arc::from(format!("r{i}")),
        host: HostMatch::parse(host.as_deref()),
        prefix,
        strip_prefix: false,
        listeners: None,
        split: Split::default(),
        rollout: None,
        options: Default::default(),
        refused: Default::default(),
    }
}

/// 200 exact hosts x 4 prefixes, 40 wildcards x 4 prefixes, 40 any-host prefixes.
fn thousand_routes() -> Router {
    let mut routes = Vec::new();
    let prefixes = ["/", "/api/", "/api/v2/", "/static"];
    for h in 0..200 {
        for p in prefixes {
            routes.push(route(
                routes.len(),
                Some(format!("app{h}.example.com")),
                p.to_owned(),
            ));
        }
    }
    for h in 0..40 {
        for p in prefixes {
            routes.push(route(
                routes.len(),
                Some(format!("*.tenant{h}.example.net")),
                p.to_owned(),
            ));
        }
    }
    for p in 0..40 {
        routes.push(route(routes.len(), None, format!("/section{p}/")));
    }
    assert_eq!(routes.len(), 1000);
    Router::new(routes)
}

fn bench(c: &mut Criterion) {
    let router = thousand_routes();
    let mut group = c.benchmark_group("router_1000_routes");
    group.bench_function("exact_host_longest_prefix", |b| {
        b.iter(|| {
            router.find(
                black_box("web"),
                black_box("app123.example.com"),
                black_box("/api/v2/users/42"),
            )
        })
    });
    group.bench_function("wildcard_host", |b| {
        b.iter(|| {
            router.find(
                black_box("web"),
                black_box("a.tenant39.example.net"),
                black_box("/static/app.js"),
            )
        })
    });
    group.bench_function("any_host_fallback", |b| {
        b.iter(|| {
            router.find(
                black_box("web"),
                black_box("unknown.org"),
                black_box("/section39/x"),
            )
        })
    });
    group.bench_function("no_match", |b| {
        b.iter(|| {
            router.find(
                black_box("web"),
                black_box("unknown.org"),
                black_box("/nothing"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
