//! The pure steps of serving a static file, through the public API: path
//! resolution (`sanitize`, then `locate` against a small tree on disk),
//! `Accept-Encoding` negotiation for typical browser headers, and header
//! rules (`Rules::apply`) with 1, 10 and 100 rules.
//!
//!   cargo bench --bench static_path -- --quick

use std::collections::BTreeMap;
use std::fs;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::header::{self, HeaderMap, HeaderValue};
use weir::config::schema::HeaderRule;
use weir::http::compression::{Coding, negotiate};
use weir::site::resolve::{self, SafePath};
use weir::site::rules::Rules;

/// (case name, raw request path).
const PATHS: &[(&str, &str)] = &[
    ("root", "/"),
    ("index", "/index.html"),
    ("hashed asset", "/assets/app.3f2a1b9c.js"),
    ("6 segments", "/docs/guide/v2/api/reference/index.html"),
    ("percent-encoded", "/docs/caf%C3%A9/hello%20world%2B1.html"),
];

/// (case name, `Accept-Encoding`).
const ACCEPT_ENCODINGS: &[(&str, &str)] = &[
    ("chrome", "gzip, deflate, br, zstd"),
    ("q-values", "br;q=1.0, gzip;q=0.8, *;q=0.1"),
    ("identity", "identity"),
    (
        "10 entries",
        "deflate;q=0.9, gzip;q=0.8, compress;q=0.1, x-gzip;q=0.5, lz4;q=0.3, \
         snappy;q=0, zstd;q=0.95, br;q=1.0, identity;q=0.2, *;q=0.05",
    ),
];

/// Server preference, as `[compression] algorithms` compiles by default.
const OFFERED: &[Coding] = &[Coding::Brotli, Coding::Zstd, Coding::Gzip];

/// A site root with what a built PWA has at its top: an index, hashed
/// assets, a nested docs tree.
fn site_tree(root: &Path) {
    fs::create_dir_all(root.join("assets")).expect("mkdir assets");
    fs::create_dir_all(root.join("docs/guide/v2/api/reference")).expect("mkdir docs");
    fs::write(root.join("index.html"), "<!doctype html>").expect("index");
    fs::write(root.join("assets/app.3f2a1b9c.js"), "export {}").expect("asset");
    fs::write(root.join("docs/guide/v2/api/reference/index.html"), "ref").expect("docs");
}

fn bench_resolve(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    site_tree(dir.path());
    // `locate` wants the root canonical, as the config compile step makes it.
    let root = dir.path().canonicalize().expect("canonical root");

    let mut group = c.benchmark_group("sanitize");
    for &(name, path) in PATHS {
        group.bench_function(name, |b| b.iter(|| resolve::sanitize(black_box(path))));
    }
    group.finish();

    let mut group = c.benchmark_group("locate");
    let located = [
        ("root", "/"),
        ("index", "/index.html"),
        ("hashed asset", "/assets/app.3f2a1b9c.js"),
        ("6 segments", "/docs/guide/v2/api/reference/index.html"),
        ("not found", "/assets/missing.js"),
    ];
    for (name, path) in located {
        let safe: SafePath = resolve::sanitize(path).expect("sanitize");
        group.bench_function(name, |b| {
            b.iter(|| resolve::locate(black_box(&root), black_box(&safe)))
        });
    }
    group.finish();
}

fn bench_negotiate(c: &mut Criterion) {
    let mut group = c.benchmark_group("negotiate");
    for &(name, value) in ACCEPT_ENCODINGS {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
        group.bench_function(name, |b| {
            b.iter(|| {
                let values = black_box(&headers).get_all(header::ACCEPT_ENCODING).iter();
                negotiate(values, black_box(OFFERED))
            })
        });
    }
    group.finish();
}

fn rule(path: String) -> HeaderRule {
    HeaderRule {
        path,
        set: BTreeMap::from([(
            "cache-control".to_owned(),
            "public, max-age=31536000, immutable".to_owned(),
        )]),
        remove: Vec::new(),
    }
}

/// `n` rules in the three usual shapes (`/assets/*`, `/*.wasm`,
/// `/docs/**`), each shape numbered after its first so that one rule
/// matches `/assets/app.3f2a1b9c.js` whatever `n` is.
fn rules(n: usize) -> Rules {
    let config: Vec<HeaderRule> = (0..n)
        .map(|i| {
            let k = i / 3;
            let suffix = if k == 0 { String::new() } else { k.to_string() };
            rule(match i % 3 {
                0 => format!("/assets{suffix}/*"),
                1 => format!("/*.wasm{suffix}"),
                _ => format!("/docs{suffix}/**"),
            })
        })
        .collect();
    let rules = Rules::compile(&config, &[]).expect("rules compile");
    assert_eq!(rules.len(), n);
    rules
}

fn bench_rules(c: &mut Criterion) {
    let mut group = c.benchmark_group("rules.apply");
    for n in [1, 10, 100] {
        let rules = rules(n);
        // The headers a file response already carries when rules run; a
        // matching rule replaces Cache-Control, so the map stays the same
        // size from one iteration to the next.
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript"),
        );
        headers.insert(header::ETAG, HeaderValue::from_static("\"3f2a1b9c\""));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        for (case, path) in [
            ("match", "/assets/app.3f2a1b9c.js"),
            ("no match", "/blog/2024/hello-world/"),
        ] {
            group.bench_function(format!("{n} rules, {case}"), |b| {
                b.iter(|| rules.apply(black_box(path), black_box(&mut headers)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_resolve, bench_negotiate, bench_rules);
criterion_main!(benches);
