use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::{Decision, Key, RateLimiter, SHARDS};
use crate::config::schema::RateLimit;
use crate::config::units::Rate;

fn limit(rate: &str, burst: u32) -> RateLimit {
    RateLimit {
        per_ip: rate.parse().unwrap(),
        burst,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn deny(secs: u64) -> Decision {
    Decision::Deny {
        retry_after: Duration::from_secs(secs),
    }
}

/// Whether `ip` has a bucket of its own (rather than the overflow bucket).
fn has_bucket(limiter: &RateLimiter, ip: IpAddr) -> bool {
    let key = Key::of(ip);
    limiter.shard(key).buckets.contains_key(&key)
}

/// Allowed requests out of `take` made at once.
fn allowed(limiter: &RateLimiter, ip: IpAddr, now: Instant, take: usize) -> usize {
    (0..take)
        .filter(|_| limiter.check(ip, now) == Decision::Allow)
        .count()
}

#[test]
fn burst_then_deny_then_refill() {
    let limiter = RateLimiter::new(&limit("5/s", 5));
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(limiter.check(client, t0), Decision::Allow);
    }
    assert_eq!(limiter.check(client, t0), deny(1));
    assert_eq!(limiter.check(client, t0 + ms(199)), deny(1));
    assert_eq!(limiter.check(client, t0 + ms(200)), Decision::Allow);
    assert_eq!(limiter.check(client, t0 + ms(200)), deny(1));
    assert_eq!(limiter.len(), 1);
}

#[test]
fn per_minute_burst_and_rounded_retry_after() {
    let limiter = RateLimiter::new(&limit("100/min", 20));
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    assert_eq!(allowed(&limiter, client, t0, 20), 20);
    // One token takes 0.6 s: rounded up to 1 s.
    assert_eq!(limiter.check(client, t0), deny(1));
    assert_eq!(limiter.check(client, t0 + ms(599)), deny(1));
    assert_eq!(limiter.check(client, t0 + ms(600)), Decision::Allow);
}

#[test]
fn retry_after_is_whole_seconds_until_the_next_token() {
    let limiter = RateLimiter::new(&limit("1/h", 1));
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    assert_eq!(limiter.check(client, t0), Decision::Allow);
    assert_eq!(limiter.check(client, t0), deny(3600));
    assert_eq!(limiter.check(client, t0 + ms(1_800_000)), deny(1800));
    assert_eq!(limiter.check(client, t0 + ms(3_599_500)), deny(1));
    assert_eq!(limiter.check(client, t0 + ms(3_600_000)), Decision::Allow);
}

#[test]
fn burst_zero_means_one() {
    let limiter = RateLimiter::new(&limit("5/s", 0));
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    assert_eq!(limiter.check(client, t0), Decision::Allow);
    assert_eq!(limiter.check(client, t0), deny(1));
    // Idle for long: still only one saved up.
    assert_eq!(allowed(&limiter, client, t0 + ms(60_000), 10), 1);
}

#[test]
fn steady_state_is_exactly_the_rate() {
    for (rate, burst) in [
        ("5/s", 5),
        ("3/s", 1),
        ("7/s", 2),
        ("100/min", 20),
        ("1000/s", 1),
    ] {
        let limiter = RateLimiter::new(&limit(rate, burst));
        let config: Rate = rate.parse().unwrap();
        let client = ip("192.0.2.1");
        let t0 = Instant::now();
        assert_eq!(
            allowed(&limiter, client, t0, burst as usize + 5),
            burst as usize
        );
        // Ten simulated seconds, asking every millisecond.
        let got = (1..=10_000)
            .filter(|&i| limiter.check(client, t0 + ms(i)) == Decision::Allow)
            .count() as f64;
        let want = config.count as f64 * 10.0 / config.per.as_secs_f64();
        assert!(
            (got - want).abs() <= 1.0,
            "{rate}: {got} allowed, want {want}"
        );
    }
}

#[test]
fn addresses_are_independent_and_ipv6_shares_a_64() {
    let limiter = RateLimiter::new(&limit("1/min", 2));
    let t0 = Instant::now();
    for client in [
        "192.0.2.1",
        "192.0.2.2",
        "2001:db8:0:1::1",
        "2001:db8:0:2::1",
    ] {
        assert_eq!(allowed(&limiter, ip(client), t0, 5), 2, "{client}");
    }
    // Same /64 as 2001:db8:0:1::1: already spent.
    assert_eq!(limiter.check(ip("2001:db8:0:1:ffff:1:2:3"), t0), deny(60));
    assert_eq!(limiter.check(ip("2001:db8:0:2:abcd::9"), t0), deny(60));
    // A neighbouring /64 has its own.
    assert_eq!(allowed(&limiter, ip("2001:db8:0:3::1"), t0, 5), 2);
    // An IPv4-mapped IPv6 address is the IPv4 client.
    assert_eq!(limiter.check(ip("::ffff:192.0.2.1"), t0), deny(60));
    // IPv4 0.0.0.1 and IPv6 ::1 are different clients.
    assert_eq!(allowed(&limiter, ip("0.0.0.1"), t0, 5), 2);
    assert_eq!(allowed(&limiter, ip("::1"), t0, 5), 2);
    assert_eq!(limiter.len(), 7);
}

#[test]
fn an_older_instant_gives_no_tokens_and_an_honest_retry_after() {
    let limiter = RateLimiter::new(&limit("1/s", 1));
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    assert_eq!(limiter.check(client, t0 + ms(5_000)), Decision::Allow);
    // Another task's clock read earlier arrives late: the token is gone,
    // and the next one is 1 s after the later instant, 2 s after this one.
    assert_eq!(limiter.check(client, t0 + ms(4_000)), deny(2));
    assert_eq!(limiter.check(client, t0 + ms(6_000)), Decision::Allow);
}

#[test]
fn a_full_table_charges_new_keys_to_the_overflow_buckets() {
    // Nothing refills within one instant, so nothing can be swept.
    let limiter = RateLimiter::with_capacity(&limit("1/h", 1), 1_000);
    let t0 = Instant::now();
    let total: usize = (0..100_000u32)
        .map(|i| allowed(&limiter, IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), t0, 1))
        .sum();
    assert_eq!(limiter.len(), 1_000);
    // Each bucket once, plus each shard's overflow bucket once.
    assert_eq!(total, 1_000 + SHARDS);
}

#[test]
fn zero_capacity_shares_the_overflow_buckets() {
    let limiter = RateLimiter::with_capacity(&limit("1/h", 3), 0);
    let t0 = Instant::now();
    let total: usize = (0..10_000u32)
        .map(|i| allowed(&limiter, IpAddr::V4(Ipv4Addr::from(i)), t0, 1))
        .sum();
    assert!(limiter.is_empty());
    assert_eq!(total, 3 * SHARDS);
}

#[test]
fn refilled_buckets_are_swept_to_make_room() {
    let limiter = RateLimiter::with_capacity(&limit("5/s", 1), 100);
    let t0 = Instant::now();
    let clients: Vec<IpAddr> = (0..1_000u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    for &c in &clients {
        limiter.check(c, t0);
    }
    assert_eq!(limiter.len(), 100);
    let late = *clients.iter().find(|&&c| !has_bucket(&limiter, c)).unwrap();
    // Half a token later nothing is full again: no room.
    limiter.check(late, t0 + ms(100));
    assert!(!has_bucket(&limiter, late));
    assert_eq!(limiter.len(), 100);
    // Once they have refilled, the shard sweeps and `late` gets a bucket.
    assert_eq!(limiter.check(late, t0 + ms(1_000)), Decision::Allow);
    assert!(has_bucket(&limiter, late));
    assert!(limiter.len() < 100);
    // `sweep` empties what is full everywhere; `late` spent its token.
    limiter.sweep(t0 + ms(1_000));
    assert_eq!(limiter.len(), 1);
    limiter.sweep(t0 + ms(1_200));
    assert!(limiter.is_empty());
}

#[test]
fn a_spoofed_flood_keeps_memory_bounded_and_a_limited_client_its_bucket() {
    let limiter = RateLimiter::with_capacity(&limit("5/s", 5), 10_000);
    let client = ip("192.0.2.1");
    let t0 = Instant::now();
    // The client is being limited: burst spent, then one request every
    // 200 ms (exactly its rate), so its bucket is never full again.
    assert_eq!(allowed(&limiter, client, t0, 5), 5);
    let (mut flood_allowed, mut flood_denied) = (0u64, 0u64);
    for i in 0..1_000_000u32 {
        // One spoofed address every 10 µs: 1,000,000 over ten seconds.
        let now = t0 + Duration::from_micros(10 * u64::from(i));
        let spoofed = IpAddr::V4(Ipv4Addr::from(0x6440_0000 + i));
        match limiter.check(spoofed, now) {
            Decision::Allow => flood_allowed += 1,
            Decision::Deny { .. } => flood_denied += 1,
        }
        if i % 1_000 == 0 {
            assert!(limiter.len() <= 10_000, "{} buckets", limiter.len());
        }
        if i > 0 && i % 20_000 == 0 {
            // Exactly the behaviour of its own bucket: one token every
            // 200 ms, none more, never a fresh burst.
            assert_eq!(limiter.check(client, now), Decision::Allow, "at {i}");
            assert_eq!(limiter.check(client, now), deny(1), "at {i}");
            assert!(has_bucket(&limiter, client));
        }
    }
    assert!(limiter.len() <= 10_000);
    assert!(flood_denied > 0, "the overflow buckets never engaged");
    assert!(flood_allowed > 0);
}

#[test]
fn hammered_from_threads_stays_within_the_bound() {
    let limiter = RateLimiter::new(&limit("10/s", 5));
    let t0 = Instant::now();
    let total = AtomicU64::new(0);
    const KEYS: u32 = 100;
    const ROUNDS: u32 = 25_000;
    std::thread::scope(|s| {
        for thread in 0..4u32 {
            let (limiter, total) = (&limiter, &total);
            s.spawn(move || {
                let mut mine = 0;
                for i in 0..ROUNDS {
                    let key = IpAddr::V4(Ipv4Addr::from((i * 7 + thread) % KEYS));
                    let now = t0 + Duration::from_micros(100 * u64::from(i));
                    if limiter.check(key, now) == Decision::Allow {
                        mine += 1;
                    }
                    if i % 5_000 == 0 {
                        assert!(limiter.len() <= KEYS as usize);
                    }
                }
                total.fetch_add(mine, Ordering::Relaxed);
            });
        }
    });
    // Per key: the burst plus 10/s over the 2.5 s spanned.
    let span = Duration::from_micros(100 * u64::from(ROUNDS - 1));
    let per_key = 5 + (10.0 * span.as_secs_f64()).floor() as u64;
    let total = total.into_inner();
    assert!(total <= u64::from(KEYS) * per_key, "{total} allowed");
    assert!(total >= u64::from(KEYS) * 5, "{total} allowed");
    assert_eq!(limiter.len(), KEYS as usize);
}

fn any_config() -> impl Strategy<Value = RateLimit> {
    let count = prop_oneof![Just(0u64), 1..2_000u64, any::<u64>()];
    let per = prop_oneof![
        Just(Duration::ZERO),
        (0..10_000_000_000u64).prop_map(Duration::from_nanos),
        (any::<u64>(), 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n)),
    ];
    let burst = prop_oneof![Just(0u32), 1..50u32, any::<u32>()];
    (count, per, burst).prop_map(|(count, per, burst)| RateLimit {
        per_ip: Rate { count, per },
        burst,
    })
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0..8u32).prop_map(|i| IpAddr::V4(Ipv4Addr::from(i))),
        (0..8u128).prop_map(|i| IpAddr::V6((i << 64 | i).into())),
        any::<IpAddr>(),
    ]
}

fn any_step() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0..2_000_000_000u64, any::<u64>()]
}

proptest! {
    #[test]
    fn never_panics_and_keeps_its_promises(
        config in any_config(),
        max_keys in 0..40usize,
        ops in prop::collection::vec((any_ip(), any_step(), any::<bool>()), 1..200),
    ) {
        let limiter = RateLimiter::with_capacity(&config, max_keys);
        let t0 = Instant::now();
        let mut clock = 0u64;
        for (ip, step, absolute) in ops {
            // Mostly forward, sometimes an arbitrary (earlier or later) instant.
            let offset = if absolute { step } else { clock.saturating_add(step) };
            clock = clock.max(offset);
            let Some(now) = t0.checked_add(Duration::from_nanos(offset)) else { continue };
            match limiter.check(ip, now) {
                Decision::Allow => {}
                Decision::Deny { retry_after } => {
                    prop_assert!(retry_after >= Duration::from_secs(1));
                    prop_assert_eq!(retry_after.subsec_nanos(), 0);
                    // The promise holds: a token is there after `retry_after`.
                    if let Some(later) = now.checked_add(retry_after) {
                        prop_assert_eq!(limiter.check(ip, later), Decision::Allow);
                    }
                }
            }
            prop_assert!(limiter.len() <= max_keys);
        }
        limiter.sweep(t0);
    }
}
