//! DNS against the test responder of `tests/support/dns.rs` (included
//! below, so integration tests and these unit tests share one responder).
//! Every resolver here is pointed at that responder on 127.0.0.1 through
//! `[dns] servers`; none reads resolv.conf except `system_localhost`,
//! which asks for `localhost` (answered inside hickory, no packet sent).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::schema::Dns;
use crate::config::units;

#[path = "../../../tests/support/dns.rs"]
#[allow(dead_code)]
mod test_dns;

use test_dns::{Rcode, RecordType, TestDns};

/// Upper bound on any single step.
const STEP: Duration = Duration::from_secs(5);

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last))
}

fn config(dns: &TestDns, min_ttl: Duration, max_ttl: Duration) -> Dns {
    Dns {
        servers: vec![dns.server()],
        min_ttl: units::Duration(min_ttl),
        max_ttl: units::Duration(max_ttl),
    }
}

/// A resolver on the responder only, with a short timeout and no retry.
fn resolver(dns: &TestDns, min_ttl: Duration, max_ttl: Duration) -> Resolver {
    Resolver::with_timeout(
        Some(&config(dns, min_ttl, max_ttl)),
        Duration::from_millis(300),
        0,
    )
    .unwrap()
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

fn sorted(mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
    ips.sort();
    ips
}

fn sockets(ips: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    out.sort();
    out
}

#[tokio::test]
async fn every_a_and_aaaa_address() {
    let dns = TestDns::start().await;
    dns.set("api.internal", vec![v4(1), v4(2), v6(1)], 30);
    let r = resolver(&dns, Duration::from_secs(1), Duration::from_secs(300));

    let (ips, ttl) = bounded(r.lookup("api.internal")).await.unwrap();
    assert_eq!(sorted(ips), vec![v4(1), v4(2), v6(1)]);
    assert!(
        ttl <= Duration::from_secs(30) && ttl > Duration::from_secs(28),
        "{ttl:?}"
    );
    // Proof that the configured server answered (not the system's).
    assert_eq!(
        dns.queries("api.internal"),
        2,
        "one A and one AAAA question"
    );

    // Only one family: still every address, no error.
    dns.set("v6only.internal", vec![v6(7)], 30);
    let (ips, _) = bounded(r.lookup("v6only.internal")).await.unwrap();
    assert_eq!(ips, vec![v6(7)]);
}

#[tokio::test]
async fn ip_literal_needs_no_query() {
    let dns = TestDns::start().await;
    let r = resolver(&dns, Duration::from_secs(1), Duration::from_secs(60));
    for (host, ip) in [
        ("10.0.0.9", v4(9)),
        ("fd00::3", v6(3)),
        ("[fd00::3]", v6(3)),
    ] {
        let (ips, ttl) = bounded(r.lookup(host)).await.unwrap();
        assert_eq!(ips, vec![ip]);
        assert_eq!(ttl, Duration::from_secs(60), "IP literals live max_ttl");
    }
    assert_eq!(dns.queries("10.0.0.9"), 0);
    assert_eq!(dns.queries("fd00::3"), 0);
}

#[tokio::test]
async fn ttl_is_clamped() {
    let dns = TestDns::start().await;
    dns.set("long.internal", vec![v4(1)], 3600);
    dns.set("short.internal", vec![v4(2)], 0);
    let r = resolver(&dns, Duration::from_secs(2), Duration::from_secs(5));

    let (_, ttl) = bounded(r.lookup("long.internal")).await.unwrap();
    assert!(
        ttl <= Duration::from_secs(5) && ttl > Duration::from_secs(4),
        "{ttl:?}"
    );
    let (_, ttl) = bounded(r.lookup("short.internal")).await.unwrap();
    assert_eq!(ttl, Duration::from_secs(2), "raised to min_ttl");

    // Name::refresh hands back the same clamped TTLs.
    let name = Name::parse("long.internal:80").unwrap();
    let next = bounded(name.refresh(&r)).await;
    assert!(
        next <= Duration::from_secs(5) && next > Duration::from_secs(4),
        "{next:?}"
    );
}

#[tokio::test]
async fn re_resolved_after_the_ttl() {
    let dns = TestDns::start().await;
    dns.set("api.internal", vec![v4(1)], 1);
    let r = resolver(&dns, Duration::from_secs(1), Duration::from_secs(300));

    let (ips, ttl) = bounded(r.lookup("api.internal")).await.unwrap();
    assert_eq!(ips, vec![v4(1)]);
    assert!(ttl <= Duration::from_secs(1), "{ttl:?}");
    let asked = dns.queries("api.internal");

    // Within the TTL: answered from the cache.
    dns.set("api.internal", vec![v4(2), v4(3)], 1);
    let (ips, _) = bounded(r.lookup("api.internal")).await.unwrap();
    assert_eq!(ips, vec![v4(1)]);
    assert_eq!(dns.queries("api.internal"), asked, "cached");

    // After it: asked again, and the new set shows.
    tokio::time::sleep(ttl).await;
    let (ips, _) = bounded(r.lookup("api.internal")).await.unwrap();
    assert_eq!(sorted(ips), vec![v4(2), v4(3)]);
    assert!(dns.queries("api.internal") > asked);
}

#[tokio::test]
async fn name_refresh_follows_the_record() {
    let dns = TestDns::start().await;
    dns.set("api.internal", vec![v4(1), v6(1)], 1);
    let r = resolver(&dns, Duration::from_secs(1), Duration::from_secs(300));
    let name = Name::parse("api.internal:8080").unwrap();
    assert_eq!((name.host.as_str(), name.port), ("api.internal", 8080));
    assert!(name.addrs().is_empty(), "nothing before the first refresh");

    let next = bounded(name.refresh(&r)).await;
    assert_eq!(name.addrs(), sockets(&[v4(1), v6(1)], 8080));
    assert!(
        next <= Duration::from_secs(1) && next >= MIN_REFRESH,
        "{next:?}"
    );

    dns.set("api.internal", vec![v4(2)], 1);
    tokio::time::sleep(next).await;
    let before = dns.queries("api.internal");
    bounded(name.refresh(&r)).await;
    assert!(dns.queries("api.internal") > before, "re-queried");
    assert_eq!(name.addrs(), sockets(&[v4(2)], 8080));
}

#[tokio::test]
async fn failures_keep_the_last_good_set() {
    let dns = TestDns::start().await;
    dns.set("api.internal", vec![v4(1), v4(2)], 1);
    let min = Duration::from_secs(1);
    let max = Duration::from_secs(6);
    let r = resolver(&dns, min, max);
    let name = Name::parse("api.internal:80").unwrap();
    bounded(name.refresh(&r)).await;
    let good = sockets(&[v4(1), v4(2)], 80);
    assert_eq!(name.addrs(), good);

    // SERVFAIL, NXDOMAIN, then no answer at all: the set stays, and the
    // retry backs off from min_ttl to max_ttl.
    dns.fail("api.internal", Rcode::ServFail);
    assert_eq!(bounded(name.refresh(&r)).await, min);
    assert_eq!(name.addrs(), good);
    let err = bounded(r.lookup("api.internal")).await.unwrap_err();
    assert!(matches!(err, DnsError::Rcode { .. }), "{err}");
    assert!(err.to_string().contains("api.internal"), "{err}");

    dns.fail("api.internal", Rcode::NXDomain);
    assert_eq!(bounded(name.refresh(&r)).await, 2 * min);
    assert_eq!(name.addrs(), good);
    let err = bounded(r.lookup("api.internal")).await.unwrap_err();
    assert!(matches!(err, DnsError::NxDomain { .. }), "{err}");

    dns.silence(true);
    let started = std::time::Instant::now();
    assert_eq!(bounded(name.refresh(&r)).await, 4 * min);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeout is short"
    );
    assert_eq!(name.addrs(), good);
    assert_eq!(bounded(name.refresh(&r)).await, max, "capped at max_ttl");
    let err = bounded(r.lookup("api.internal")).await.unwrap_err();
    assert!(matches!(err, DnsError::Timeout { .. }), "{err}");

    // Recovery resets the backoff and takes the new set.
    dns.silence(false);
    dns.set("api.internal", vec![v4(3)], 1);
    assert_eq!(bounded(name.refresh(&r)).await, min);
    assert_eq!(name.addrs(), sockets(&[v4(3)], 80));
}

#[tokio::test]
async fn one_family_failing_keeps_its_addresses() {
    let dns = TestDns::start().await;
    dns.set("api.internal", vec![v4(1), v6(1)], 30);
    let min = Duration::from_secs(1);
    let r = resolver(&dns, min, Duration::from_secs(300));
    let name = Name::parse("api.internal:80").unwrap();
    bounded(name.refresh(&r)).await;
    assert_eq!(name.addrs(), sockets(&[v4(1), v6(1)], 80));

    // A answers with a new address while AAAA fails: the new A and the
    // last good AAAA, asked again after min_ttl.
    dns.set("api.internal", vec![v4(2)], 30);
    dns.fail_type("api.internal", RecordType::AAAA, Some(Rcode::ServFail));
    assert_eq!(bounded(name.refresh(&r)).await, min);
    assert_eq!(name.addrs(), sockets(&[v4(2), v6(1)], 80));
    let (ips, ttl) = bounded(r.lookup("api.internal")).await.unwrap();
    assert_eq!(
        (ips, ttl),
        (vec![v4(2)], min),
        "lookup: what answered, soon again"
    );

    // AAAA answers again (NODATA now): the AAAA address leaves.
    dns.fail_type("api.internal", RecordType::AAAA, None);
    let next = bounded(name.refresh(&r)).await;
    assert_eq!(name.addrs(), sockets(&[v4(2)], 80), "NODATA is an answer");
    assert!(next > Duration::from_secs(28), "{next:?}");
}

#[tokio::test]
async fn never_resolved_has_no_addresses() {
    let dns = TestDns::start().await;
    let r = resolver(&dns, Duration::from_secs(1), Duration::from_secs(300));
    let name = Name::parse("missing.internal:80").unwrap();
    assert_eq!(bounded(name.refresh(&r)).await, Duration::from_secs(1));
    assert!(name.addrs().is_empty());
    assert!(
        dns.queries("missing.internal") > 0,
        "the responder was asked"
    );
    let err = bounded(r.lookup("missing.internal")).await.unwrap_err();
    assert!(matches!(err, DnsError::NxDomain { .. }), "{err}");
}

#[tokio::test]
async fn only_the_configured_server_is_asked() {
    let dns = TestDns::start().await;
    dns.set("only-here.internal", vec![v4(5)], 30);
    let r = Resolver::new(Some(&config(
        &dns,
        Duration::from_secs(1),
        Duration::from_secs(300),
    )))
    .unwrap();
    let (ips, _) = bounded(r.lookup("only-here.internal")).await.unwrap();
    assert_eq!(ips, vec![v4(5)]);
    assert_eq!(dns.queries("only-here.internal"), 2);
    assert!(format!("{r:?}").contains(&dns.server()), "{r:?}");
}

#[tokio::test]
async fn system_localhost() {
    // The system configuration, asked only for `localhost`, which hickory
    // answers itself (RFC 6761): no packet leaves.
    let r = Resolver::new(None).unwrap();
    let (ips, ttl) = bounded(r.lookup("localhost")).await.unwrap();
    assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{ips:?}");
    assert!(ttl <= Duration::from_secs(300), "{ttl:?}");
}

#[test]
fn parse_endpoints() {
    let name = Name::parse("api-blue.use1.internal:8080").unwrap();
    assert_eq!(name.host, "api-blue.use1.internal");
    assert_eq!(name.port, 8080);
    assert!(Name::parse("localhost:1").is_some());
    assert!(Name::parse("fqdn.example.:443").is_some());
    for not_a_name in [
        "10.0.1.10:8080",
        "[::1]:80",
        "::1:80",
        "api.internal",
        "api.internal:",
        "api.internal:+80",
        "api.internal:70000",
        ":80",
        "a..b:80",
        "bad host:80",
        "10.0.0.1",
    ] {
        assert!(Name::parse(not_a_name).is_none(), "{not_a_name}");
    }
}

#[test]
fn bad_config() {
    let bad_server = Dns {
        servers: vec!["dns.example:53".into()],
        min_ttl: units::Duration(Duration::from_secs(1)),
        max_ttl: units::Duration(Duration::from_secs(2)),
    };
    let err = Resolver::new(Some(&bad_server)).unwrap_err();
    assert!(err.to_string().contains("dns.example:53"), "{err}");

    let bad_ttl = Dns {
        servers: vec!["127.0.0.1".into()],
        min_ttl: units::Duration(Duration::from_secs(10)),
        max_ttl: units::Duration(Duration::from_secs(2)),
    };
    assert!(matches!(
        Resolver::new(Some(&bad_ttl)),
        Err(DnsError::BadTtl { .. })
    ));
    // Building needs no runtime (config compiles outside one) and sends
    // nothing.
    let fine = Dns {
        servers: vec!["127.0.0.1:53".into(), "::1".into()],
        ..bad_ttl
    };
    assert!(
        Resolver::new(Some(&Dns {
            min_ttl: fine.max_ttl,
            ..fine
        }))
        .is_ok()
    );
    assert_eq!(parse_server("::1"), Some("[::1]:53".parse().unwrap()));
    assert_eq!(parse_server("[::1]"), Some("[::1]:53".parse().unwrap()));
    assert_eq!(
        parse_server("127.0.0.1:5353"),
        Some("127.0.0.1:5353".parse().unwrap())
    );
}

#[test]
fn backoff_doubles_up_to_max() {
    let s = Duration::from_secs;
    assert_eq!(backoff(s(1), s(300), 0), s(1));
    assert_eq!(backoff(s(1), s(300), 3), s(8));
    assert_eq!(backoff(s(1), s(300), 9), s(300));
    assert_eq!(backoff(s(1), s(300), u32::MAX), s(300));
    assert_eq!(backoff(Duration::ZERO, Duration::ZERO, 0), MIN_REFRESH);
}

#[test]
fn addresses_are_capped() {
    let name = Name::new("big.internal", 80);
    let ips: Vec<IpAddr> = (0..200u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)))
        .collect();
    assert!(name.store(ips.clone()));
    assert_eq!(name.addrs().len(), MAX_ADDRS_PER_NAME);
    assert!(!name.store(ips), "same set: no change");
}

#[tokio::test]
async fn watch_reports_changes_and_stops() {
    let dns = TestDns::start().await;
    dns.set("api.internal", vec![v4(1)], 1);
    let r = Arc::new(resolver(
        &dns,
        Duration::from_millis(200),
        Duration::from_secs(1),
    ));
    let name = Arc::new(Name::parse("api.internal:80").unwrap());
    let seen: Arc<Mutex<Vec<Vec<SocketAddr>>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(watch(
        name.clone(),
        r,
        {
            let seen = seen.clone();
            move |addrs| seen.lock().unwrap().push(addrs)
        },
        stop_rx,
    ));

    let wait_for = |n: usize| {
        let seen = seen.clone();
        async move {
            while seen.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    bounded(wait_for(1)).await;
    dns.set("api.internal", vec![v4(2)], 1);
    bounded(wait_for(2)).await;
    // A failure does not report (the set is kept).
    dns.fail("api.internal", Rcode::ServFail);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_tx.send(true).unwrap();
    bounded(task).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![sockets(&[v4(1)], 80), sockets(&[v4(2)], 80)],
        "reported once per change"
    );
    assert_eq!(name.addrs(), sockets(&[v4(2)], 80));
}
