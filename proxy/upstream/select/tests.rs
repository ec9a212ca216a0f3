use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::HeaderMap;
use http::header::HeaderValue;
use proptest::prelude::*;

use super::*;

fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
    (0..n)
        .map(|i| {
            let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080));
            Arc::new(Endpoint::new(addr))
        })
        .collect()
}

fn set_healthy(e: &Endpoint, healthy: bool) {
    e.healthy.store(healthy, Ordering::Relaxed);
}

fn set_in_flight(e: &Endpoint, n: usize) {
    e.in_flight.store(n, Ordering::Relaxed);
}

fn all_policies() -> Vec<LoadBalance> {
    vec![
        LoadBalance::RoundRobin,
        LoadBalance::LeastRequest,
        LoadBalance::HashHeader("x-user".into()),
        LoadBalance::HashCookie("session".into()),
        LoadBalance::HashIp,
    ]
}

/// Counts how often each address is picked over `n` picks.
fn tally(
    policy: &LoadBalance,
    eps: &[Arc<Endpoint>],
    tried: &[SocketAddr],
    n: usize,
    seed: u64,
) -> HashMap<SocketAddr, usize> {
    let cursor = Cursor::new();
    let rng = &mut fastrand::Rng::with_seed(seed);
    let mut counts = HashMap::new();
    for _ in 0..n {
        let e = pick_with_rng(policy, eps, None, tried, &cursor, rng).expect("a candidate");
        *counts.entry(e.addr).or_insert(0) += 1;
    }
    counts
}

fn key_of(i: u64) -> u64 {
    hash_bytes(format!("user-{i}").as_bytes())
}

fn hash_pick(eps: &[Arc<Endpoint>], key: u64) -> SocketAddr {
    pick(&LoadBalance::HashIp, eps, Some(key), &[], &Cursor::new())
        .expect("a candidate")
        .addr
}

// ---- round robin ----

#[test]
fn round_robin_cycles_evenly() {
    let eps = endpoints(3);
    let counts = tally(&LoadBalance::RoundRobin, &eps, &[], 300, 1);
    for e in &eps {
        assert_eq!(counts[&e.addr], 100, "{counts:?}");
    }
    // In order, one after the other.
    let cursor = Cursor::new();
    let order: Vec<_> = (0..6)
        .map(|_| {
            pick(&LoadBalance::RoundRobin, &eps, None, &[], &cursor)
                .unwrap()
                .addr
        })
        .collect();
    let expected: Vec<_> = eps.iter().chain(&eps).map(|e| e.addr).collect();
    assert_eq!(order, expected);
}

#[test]
fn round_robin_skips_unhealthy_and_tried() {
    let eps = endpoints(4);
    set_healthy(&eps[1], false);
    let tried = [eps[3].addr];
    let counts = tally(&LoadBalance::RoundRobin, &eps, &tried, 300, 1);
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(counts[&eps[0].addr], 150);
    assert_eq!(counts[&eps[2].addr], 150);
}

#[test]
fn hash_policy_without_key_is_round_robin() {
    let eps = endpoints(3);
    for policy in [
        LoadBalance::HashHeader("x-user".into()),
        LoadBalance::HashCookie("session".into()),
    ] {
        let counts = tally(&policy, &eps, &[], 300, 1);
        for e in &eps {
            assert_eq!(counts[&e.addr], 100, "{policy}: {counts:?}");
        }
    }
}

// ---- least request ----

#[test]
fn least_request_prefers_the_idle_endpoint() {
    let eps = endpoints(2);
    set_in_flight(&eps[1], 100);
    let counts = tally(&LoadBalance::LeastRequest, &eps, &[], 1_000, 7);
    assert!(counts[&eps[0].addr] >= 990, "{counts:?}");
}

#[test]
fn least_request_shares_fairly_between_equals() {
    let eps = endpoints(3);
    let counts = tally(&LoadBalance::LeastRequest, &eps, &[], 3_000, 7);
    for e in &eps {
        let n = counts[&e.addr];
        assert!((900..=1_100).contains(&n), "{counts:?}");
    }
}

#[test]
fn least_request_with_one_candidate_takes_it() {
    let eps = endpoints(3);
    set_in_flight(&eps[2], 1_000);
    set_healthy(&eps[0], false);
    let tried = [eps[1].addr];
    let counts = tally(&LoadBalance::LeastRequest, &eps, &tried, 50, 7);
    assert_eq!(counts.get(&eps[2].addr), Some(&50));
}

#[test]
fn least_request_never_picks_the_busiest_of_three() {
    // Two distinct draws: the busiest of three can never win a duel.
    let eps = endpoints(3);
    set_in_flight(&eps[0], 5);
    set_in_flight(&eps[1], 50);
    set_in_flight(&eps[2], 1);
    let counts = tally(&LoadBalance::LeastRequest, &eps, &[], 3_000, 3);
    assert_eq!(counts.get(&eps[1].addr), None, "{counts:?}");
    // eps[2] wins every duel it is in (2 of 3 pairs), eps[0] the other.
    let n = counts[&eps[2].addr];
    assert!((1_900..=2_100).contains(&n), "{counts:?}");
}

// ---- hash ----

#[test]
fn hash_same_key_same_endpoint() {
    let eps = endpoints(10);
    for i in 0..100 {
        let key = key_of(i);
        let first = hash_pick(&eps, key);
        for _ in 0..5 {
            assert_eq!(hash_pick(&eps, key), first);
        }
    }
}

#[test]
fn hash_is_stable_across_builds() {
    // Fixed constants: these values may never change, or every sticky
    // client of every deployment moves at upgrade.
    assert_eq!(hash_bytes(b""), fmix64(0xcbf2_9ce4_8422_2325));
    assert_eq!(hash_bytes(b"a"), fmix64(0xaf63_dc4c_8601_ec8c));
    let ip = |s: &str| hash_key(&LoadBalance::HashIp, &HeaderMap::new(), s.parse().unwrap());
    assert_eq!(ip("203.0.113.9"), Some(0x90c9_3d9f_057e_7f28));
    assert_eq!(ip("2001:db8::9"), Some(0xd941_a156_8815_8507));
    let header = LoadBalance::HashHeader("x-user".into());
    assert_eq!(
        hash_key(&header, &headers(&[("x-user", "alice")]), IP),
        Some(0x3507_d047_a67c_08f4)
    );
    // Keys 0..16 over 10.0.0.1..=10:8080, as the last octet.
    let eps = endpoints(10);
    let picks: Vec<u8> = (0..16)
        .map(|key| match hash_pick(&eps, key).ip() {
            IpAddr::V4(ip) => ip.octets()[3],
            IpAddr::V6(_) => unreachable!(),
        })
        .collect();
    assert_eq!(picks, [7, 10, 9, 1, 7, 2, 5, 7, 1, 8, 7, 4, 9, 2, 10, 2]);
}

#[test]
fn hash_spreads_keys_evenly() {
    let eps = endpoints(10);
    // Both hashed strings and raw sequential keys (the worst input).
    for keys in [
        (0..10_000).map(key_of).collect::<Vec<_>>(),
        (0..10_000).collect(),
    ] {
        let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
        for &key in &keys {
            *counts.entry(hash_pick(&eps, key)).or_insert(0) += 1;
        }
        for e in &eps {
            let n = counts.get(&e.addr).copied().unwrap_or(0);
            assert!((800..=1_200).contains(&n), "{counts:?}");
        }
    }
}

#[test]
fn hash_removing_an_endpoint_moves_only_its_keys() {
    let eps = endpoints(10);
    let removed = eps[4].addr;
    let fewer: Vec<_> = eps.iter().filter(|e| e.addr != removed).cloned().collect();
    let mut moved = 0;
    for i in 0..10_000 {
        let key = key_of(i);
        let before = hash_pick(&eps, key);
        let after = hash_pick(&fewer, key);
        if before != after {
            assert_eq!(before, removed, "key {i} moved from {before} to {after}");
            moved += 1;
        } else {
            assert_ne!(before, removed);
        }
    }
    assert!((800..=1_200).contains(&moved), "{moved}");
}

#[test]
fn hash_unhealthy_or_tried_endpoint_spreads_its_keys() {
    let eps = endpoints(10);
    let (down, tried) = (eps[2].addr, eps[7].addr);
    set_healthy(&eps[2], false);
    let mut landed: HashMap<SocketAddr, usize> = HashMap::new();
    for i in 0..10_000 {
        let key = key_of(i);
        let all_up = {
            set_healthy(&eps[2], true);
            let p = hash_pick(&eps, key);
            set_healthy(&eps[2], false);
            p
        };
        let now = pick(
            &LoadBalance::HashIp,
            &eps,
            Some(key),
            &[tried],
            &Cursor::new(),
        )
        .unwrap()
        .addr;
        assert_ne!(now, down);
        assert_ne!(now, tried);
        if now != all_up {
            assert!(
                all_up == down || all_up == tried,
                "key {i} moved off {all_up}"
            );
            *landed.entry(now).or_insert(0) += 1;
        }
    }
    // The displaced ~2,000 keys land on all 8 others, not on one neighbour.
    assert_eq!(landed.len(), 8, "{landed:?}");
    assert!(landed.values().all(|&n| n < 450), "{landed:?}");
}

#[test]
fn hash_adding_an_endpoint_moves_about_a_share_to_it() {
    let eps = endpoints(10);
    let more = endpoints(11);
    let added = more[10].addr;
    let mut moved = 0;
    for i in 0..10_000 {
        let key = key_of(i);
        let (before, after) = (hash_pick(&eps, key), hash_pick(&more, key));
        if before != after {
            assert_eq!(after, added, "key {i} moved from {before} to {after}");
            moved += 1;
        }
    }
    // 1/11 of 10,000 is 909.
    assert!((709..=1_109).contains(&moved), "{moved}");
}

#[test]
fn hash_order_of_endpoints_does_not_matter() {
    let eps = endpoints(10);
    let mut reversed = eps.clone();
    reversed.reverse();
    for i in 0..1_000 {
        assert_eq!(hash_pick(&eps, key_of(i)), hash_pick(&reversed, key_of(i)));
    }
}

// ---- hash_key ----

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for &(name, value) in pairs {
        map.append(name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn hash_key_header() {
    let policy = LoadBalance::HashHeader("X-User".into());
    let key = |h: &HeaderMap| hash_key(&policy, h, IP);
    let alice = key(&headers(&[("x-user", "alice")]));
    assert_eq!(alice, Some(hash_bytes(b"alice")));
    assert_eq!(key(&headers(&[("x-user", " alice ")])), alice);
    assert_ne!(key(&headers(&[("x-user", "bob")])), alice);
    // First value wins.
    assert_eq!(
        key(&headers(&[("x-user", "alice"), ("x-user", "bob")])),
        alice
    );
    assert_eq!(key(&headers(&[])), None);
    assert_eq!(key(&headers(&[("x-other", "alice")])), None);
    assert_eq!(key(&headers(&[("x-user", "")])), None);
    // A name that is no header name never matches.
    let bad = LoadBalance::HashHeader("bad name".into());
    assert_eq!(hash_key(&bad, &headers(&[("x-user", "alice")]), IP), None);
}

#[test]
fn hash_key_cookie() {
    let policy = LoadBalance::HashCookie("session".into());
    let key = |pairs: &[(&'static str, &'static str)]| hash_key(&policy, &headers(pairs), IP);
    let abc = Some(hash_bytes(b"abc"));
    assert_eq!(key(&[("cookie", "session=abc")]), abc);
    assert_eq!(key(&[("cookie", "a=1; session=abc; b=2")]), abc);
    assert_eq!(key(&[("cookie", "a=1;session=abc")]), abc);
    assert_eq!(key(&[("cookie", "  session = abc ;")]), abc);
    assert_eq!(key(&[("cookie", "session=\"abc\"")]), abc);
    // Split over several Cookie headers (HTTP/2 does that).
    assert_eq!(
        key(&[("cookie", "a=1; b=2"), ("cookie", "c=3; session=abc")]),
        abc
    );
    // First occurrence wins; a value may contain '='.
    assert_eq!(
        key(&[("cookie", "session=abc"), ("cookie", "session=zzz")]),
        abc
    );
    assert_eq!(key(&[("cookie", "session=a=b")]), Some(hash_bytes(b"a=b")));
    // Missing, other names, case-sensitive names, empty value.
    assert_eq!(key(&[]), None);
    assert_eq!(key(&[("cookie", "a=1; b=2")]), None);
    assert_eq!(key(&[("cookie", "mysession=abc; session2=abc")]), None);
    assert_eq!(key(&[("cookie", "Session=abc")]), None);
    assert_eq!(key(&[("cookie", "session")]), None);
    assert_eq!(key(&[("cookie", "session=")]), None);
    assert_eq!(key(&[("x-session", "session=abc")]), None);
}

#[test]
fn hash_key_ip() {
    let key = |ip: IpAddr| hash_key(&LoadBalance::HashIp, &HeaderMap::new(), ip);
    let v4 = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let v6 = IpAddr::V6("2001:db8::9".parse::<Ipv6Addr>().unwrap());
    assert_eq!(key(v4), Some(hash_bytes(&[203, 0, 113, 9])));
    assert_eq!(key(v4), key(v4));
    assert_ne!(key(v4), key(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))));
    assert!(key(v6).is_some());
    assert_ne!(key(v6), key(v4));
    // A dual-stack socket's IPv4-mapped address is the IPv4 client.
    let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped());
    assert_eq!(key(mapped), key(v4));
    // Headers never change an IP key.
    let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
    assert_eq!(hash_key(&LoadBalance::HashIp, &h, v4), key(v4));
}

#[test]
fn hash_key_is_none_for_other_policies() {
    let h = headers(&[("x-user", "a"), ("cookie", "session=a")]);
    assert_eq!(hash_key(&LoadBalance::RoundRobin, &h, IP), None);
    assert_eq!(hash_key(&LoadBalance::LeastRequest, &h, IP), None);
}

// ---- exclusion, for every policy ----

#[test]
fn empty_slice_gives_none() {
    for policy in all_policies() {
        for key in [None, Some(42)] {
            assert!(
                pick(&policy, &[], key, &[], &Cursor::new()).is_none(),
                "{policy}"
            );
        }
    }
}

#[test]
fn excluded_endpoints_are_never_picked() {
    let eps = endpoints(5);
    set_healthy(&eps[0], false);
    set_healthy(&eps[3], false);
    let tried = [eps[1].addr];
    let cursor = Cursor::new();
    for policy in all_policies() {
        for i in 0..500 {
            let key = (i % 2 == 0).then(|| key_of(i));
            let e = pick(&policy, &eps, key, &tried, &cursor).expect("two candidates");
            assert!(
                e.addr == eps[2].addr || e.addr == eps[4].addr,
                "{policy}: {}",
                e.addr
            );
        }
    }
}

#[test]
fn no_candidate_left_gives_none() {
    let eps = endpoints(3);
    set_healthy(&eps[0], false);
    let tried = [eps[1].addr, eps[2].addr];
    let all_tried: Vec<_> = eps.iter().map(|e| e.addr).collect();
    for policy in all_policies() {
        for key in [None, Some(7)] {
            assert!(
                pick(&policy, &eps, key, &tried, &Cursor::new()).is_none(),
                "{policy}"
            );
        }
        let healthy = endpoints(3);
        assert!(pick(&policy, &healthy, Some(7), &all_tried, &Cursor::new()).is_none());
    }
    // Every endpoint unhealthy, none tried: still None (panic mode is the caller's).
    for e in &eps {
        set_healthy(e, false);
    }
    for policy in all_policies() {
        assert!(
            pick(&policy, &eps, Some(7), &[], &Cursor::new()).is_none(),
            "{policy}"
        );
    }
}

#[test]
fn retries_walk_every_candidate_once() {
    // Each attempt adds the last pick to `tried`: n attempts reach n distinct endpoints.
    let eps = endpoints(6);
    for policy in all_policies() {
        let cursor = Cursor::new();
        let mut tried = Vec::new();
        while let Some(e) = pick(&policy, &eps, Some(key_of(3)), &tried, &cursor) {
            assert!(!tried.contains(&e.addr), "{policy}");
            tried.push(e.addr);
        }
        assert_eq!(tried.len(), eps.len(), "{policy}");
    }
}

proptest! {
    #[test]
    fn pick_never_returns_an_excluded_endpoint(
        states in prop::collection::vec((any::<bool>(), any::<bool>(), 0usize..10), 0..12),
        policy in 0usize..5,
        key in any::<Option<u64>>(),
        cursor_start in any::<usize>(),
        seed in any::<u64>(),
    ) {
        let eps = endpoints(states.len());
        let mut tried = Vec::new();
        for (e, &(healthy, was_tried, in_flight)) in eps.iter().zip(&states) {
            set_healthy(e, healthy);
            set_in_flight(e, in_flight);
            if was_tried {
                tried.push(e.addr);
            }
        }
        // A tried address that is not an endpoint at all changes nothing.
        tried.push(SocketAddr::from(([127, 0, 0, 1], 1)));
        let policy = &all_policies()[policy];
        let cursor = Cursor { next: AtomicUsize::new(cursor_start) };
        let mut rng = fastrand::Rng::with_seed(seed);
        let any_candidate = states.iter().any(|&(healthy, was_tried, _)| healthy && !was_tried);
        for _ in 0..3 {
            let picked = pick_with_rng(policy, &eps, key, &tried, &cursor, &mut rng);
            prop_assert_eq!(picked.is_some(), any_candidate);
            if let Some(e) = picked {
                prop_assert!(e.is_healthy());
                prop_assert!(!tried.contains(&e.addr));
            }
        }
        if let (Some(key), LoadBalance::HashHeader(_) | LoadBalance::HashCookie(_) | LoadBalance::HashIp) = (key, policy) {
            let a = pick(policy, &eps, Some(key), &tried, &Cursor::new()).map(|e| e.addr);
            let b = pick(policy, &eps, Some(key), &tried, &Cursor::new()).map(|e| e.addr);
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn the_upstream_key_reads_what_weir_adds_before_the_clients_fields() {
    let policy = LoadBalance::HashHeader("x-forwarded-for".into());
    let added = [(
        HeaderName::from_static("x-forwarded-for"),
        HeaderValue::from_static("203.0.113.7, 10.0.0.1"),
    )];
    let direct = hash_key(
        &policy,
        &headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.1")]),
        IP,
    );
    assert!(direct.is_some());
    assert_eq!(
        upstream_hash_key(&policy, &HeaderMap::new(), &added, IP),
        direct
    );
    // A name weir does not add comes from the request.
    let user = LoadBalance::HashHeader("x-user".into());
    let request = headers(&[("x-user", "alice")]);
    assert_eq!(
        upstream_hash_key(&user, &request, &added, IP),
        hash_key(&user, &request, IP)
    );
}
