//! The cost of choosing a backend: `Split::pick` (smooth weighted
//! round-robin, one atomic add) and `affinity::choose` without and with a
//! pinned cookie, for 2, 10 and 100 backends.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use weir::balancer::affinity::{self, Affinity};
use weir::balancer::{Backend, Split, Target};
use weir::site::Site;
use weir::telemetry::metrics::BackendMetrics;

fn split(n: usize) -> Split {
    let backends = (0..n)
        .map(|i| Backend {
            name: format!("b{i}").into(),
            weight: 1 + (i as u32 * 7) % 100,
            target: Target::Site(Arc::new(Site::new(
                format!("s{i}"),
                PathBuf::from("/"),
                false,
            ))),
            metrics: BackendMetrics::default(),
        })
        .collect();
    Split::new(backends)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick backend");
    for n in [2, 10, 100] {
        let s = split(n);
        group.bench_function(format!("split.pick, {n} backends"), |b| {
            b.iter(|| black_box(s.pick()).map(|b| b.weight))
        });
        let empty = HeaderMap::new();
        group.bench_function(format!("choose, no affinity, {n} backends"), |b| {
            b.iter(|| {
                affinity::choose("r", &s, None, None, black_box(&empty)).map(|c| c.backend().weight)
            })
        });
        let pin = Affinity::new("weir", None);
        let mut headers = HeaderMap::new();
        let cookie = format!("weir={}", affinity::sign("r", &format!("b{}", n - 1)));
        headers.insert(http::header::COOKIE, cookie.parse().expect("cookie"));
        group.bench_function(format!("choose, pinned cookie, {n} backends"), |b| {
            b.iter(|| {
                affinity::choose("r", &s, Some(&pin), None, black_box(&headers))
                    .map(|c| c.backend().weight)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
