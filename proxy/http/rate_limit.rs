//! A route's `rate_limit = { per_ip, burst }`: one token bucket per client
//! address, in a table of bounded size, answering allow or deny with the
//! `Retry-After` a 429 carries.
//!
//! Buckets hold `burst` tokens (at least 1) and refill at `count / per`. The
//! math is exact integer arithmetic: a token is `per` nanoseconds worth of
//! units and every nanosecond adds `count` units (both divided by their gcd),
//! in `u128`, saturating, so no rate, burst or clock step can overflow or
//! panic, and steady state is exactly `count` per `per`.
//!
//! IPv4 clients are keyed by address, IPv6 clients by their /64 (one host
//! usually owns a whole /64, so a per-address key would be free to evade);
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a dual-stack socket
//! reports them) count as the IPv4 address.
//!
//! # Bounded memory and the overflow policy
//!
//! The table holds at most `max_keys` buckets, split over [`SHARDS`] shards
//! (each with its own lock and its share of `max_keys`). A bucket that has
//! refilled completely is indistinguishable from a new one, so dropping it
//! changes no decision; those are the buckets that get swept. When a new key
//! arrives at a full shard:
//!
//! 1. the shard drops every bucket that is full again (at most once per
//!    sweep interval: the time one token takes, clamped to 100 ms ..= 1 s, so
//!    a flood cannot make every request pay for a scan of the shard);
//! 2. if there is still no room, the key gets no bucket of its own and is
//!    charged to the shard's **overflow bucket**, a bucket with the route's
//!    own rate and burst shared by every key that found its shard full.
//!
//! What this guarantees:
//!
//! - `len()` never exceeds `max_keys`, whatever addresses arrive.
//! - A key that has a bucket keeps it until that bucket is full again, so a
//!   client that is actually being limited (its bucket not full) is limited
//!   exactly as with an unbounded table, flood or no flood. Nobody is ever
//!   handed a fresh burst by eviction, so a flood of spoofed addresses cannot
//!   be used to reset a real client's bucket.
//! - Keys that find the table full share the overflow buckets: at most
//!   `SHARDS` buckets' worth (burst and rate) of requests from such keys are
//!   allowed, so a flood of spoofed addresses neither grows memory nor gets
//!   let through wholesale once the table is full.
//!
//! The cost: during such a flood a client that is *new*, or whose bucket had
//! refilled and was swept, may share the overflow budget with the flood and
//! be denied early until its shard has room again (the next sweep after
//! buckets refill).
//!
//! [`RateLimiter::sweep`] drops full buckets from every shard; call it now and
//! then to give memory back after a burst of clients has gone idle.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::schema::RateLimit;

/// Buckets kept per route when no other capacity is given.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Independent locks (and overflow buckets) per limiter.
pub const SHARDS: usize = 16;
const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(100);
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Over the limit; a token is available again after `retry_after`
    /// (whole seconds, at least 1).
    Deny {
        retry_after: Duration,
    },
}

/// A per-route limiter: one token bucket per client IP (IPv6 per /64), in a
/// table of at most `max_keys` buckets; keys that find it full share an
/// overflow bucket per shard (see the module documentation).
pub struct RateLimiter {
    refill: Refill,
    shard_hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    max_keys: usize,
}

/// Who a bucket belongs to: an IPv4 address or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    V4(u32),
    V6(u64),
}

impl Key {
    fn of(ip: IpAddr) -> Key {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Key::V4(u32::from(v4)),
            IpAddr::V6(v6) => Key::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The bucket arithmetic of one limiter, in "units": a token is `token`
/// units, every nanosecond adds `per_nano` units.
#[derive(Debug, Clone, Copy)]
struct Refill {
    token: u128,
    per_nano: u128,
    capacity: u128,
    /// `per` of zero: an infinite rate, nothing is ever denied.
    unlimited: bool,
    sweep_interval: Duration,
}

impl Refill {
    fn new(config: &RateLimit) -> Refill {
        let per = config.per_ip.per.as_nanos();
        let count = u128::from(config.per_ip.count);
        let burst = u128::from(config.burst.max(1));
        let unlimited = per == 0;
        let g = gcd(per, count).max(1);
        let (token, per_nano) = (per / g, count / g);
        let one_token = per.checked_div(count).unwrap_or(u128::MAX);
        let sweep_interval = if one_token >= MAX_SWEEP_INTERVAL.as_nanos() {
            MAX_SWEEP_INTERVAL
        } else {
            // Below one second, so it fits a u64.
            Duration::from_nanos(one_token as u64).max(MIN_SWEEP_INTERVAL)
        };
        Refill {
            token,
            per_nano,
            capacity: token.saturating_mul(burst),
            unlimited,
            sweep_interval,
        }
    }

    /// Nanoseconds until `tokens` units have grown to one token; `None`
    /// when they never will (a count of zero never refills).
    fn wait_nanos(&self, tokens: u128) -> Option<u128> {
        let missing = self.token.saturating_sub(tokens);
        (self.per_nano != 0).then(|| missing.div_ceil(self.per_nano))
    }
}

fn whole_seconds(nanos: u128) -> Duration {
    let secs = nanos.div_ceil(NANOS_PER_SEC).max(1);
    Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX))
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u128,
    /// The latest time the bucket was refilled to; never moves backwards.
    last: Instant,
}

impl Bucket {
    fn full(refill: &Refill, now: Instant) -> Bucket {
        Bucket {
            tokens: refill.capacity,
            last: now,
        }
    }

    /// Tokens at `now` (no refill for a `now` older than the last one seen).
    fn tokens_at(&self, refill: &Refill, now: Instant) -> u128 {
        match now.checked_duration_since(self.last) {
            Some(elapsed) => self
                .tokens
                .saturating_add(elapsed.as_nanos().saturating_mul(refill.per_nano))
                .min(refill.capacity),
            None => self.tokens,
        }
    }

    fn is_full(&self, refill: &Refill, now: Instant) -> bool {
        self.tokens_at(refill, now) >= refill.capacity
    }

    fn take(&mut self, refill: &Refill, now: Instant) -> Decision {
        self.tokens = self.tokens_at(refill, now);
        self.last = self.last.max(now);
        if self.tokens >= refill.token {
            self.tokens -= refill.token;
            Decision::Allow
        } else {
            // Measured from `now`, even if another caller's clock was ahead.
            let ahead = self.last.saturating_duration_since(now).as_nanos();
            let retry_after = match refill.wait_nanos(self.tokens) {
                Some(wait) => whole_seconds(wait.saturating_add(ahead)),
                None => Duration::from_secs(u64::MAX),
            };
            Decision::Deny { retry_after }
        }
    }
}

struct Shard {
    buckets: HashMap<Key, Bucket>,
    /// This shard's share of `max_keys`.
    capacity: usize,
    /// Shared by keys that found the shard full; created on first use.
    overflow: Option<Bucket>,
    next_sweep: Option<Instant>,
}

impl Shard {
    fn check(&mut self, key: Key, refill: &Refill, now: Instant) -> Decision {
        if let Some(bucket) = self.buckets.get_mut(&key) {
            return bucket.take(refill, now);
        }
        if self.buckets.len() >= self.capacity && self.capacity > 0 {
            self.sweep_throttled(refill, now);
        }
        if self.buckets.len() < self.capacity {
            let mut bucket = Bucket::full(refill, now);
            let decision = bucket.take(refill, now);
            self.buckets.insert(key, bucket);
            return decision;
        }
        self.overflow
            .get_or_insert_with(|| Bucket::full(refill, now))
            .take(refill, now)
    }

    fn sweep_throttled(&mut self, refill: &Refill, now: Instant) {
        if self.next_sweep.is_some_and(|next| now < next) {
            return;
        }
        self.next_sweep = Some(now.checked_add(refill.sweep_interval).unwrap_or(now));
        self.sweep(refill, now);
    }

    fn sweep(&mut self, refill: &Refill, now: Instant) {
        self.buckets
            .retain(|_, bucket| !bucket.is_full(refill, now));
    }
}

impl RateLimiter {
    /// A limiter holding at most [`DEFAULT_MAX_KEYS`] buckets.
    pub fn new(config: &RateLimit) -> RateLimiter {
        RateLimiter::with_capacity(config, DEFAULT_MAX_KEYS)
    }

    /// A limiter holding at most `max_keys` buckets (0 is allowed: every key
    /// then shares the overflow buckets).
    pub fn with_capacity(config: &RateLimit, max_keys: usize) -> RateLimiter {
        let shards = (0..SHARDS)
            .map(|i| {
                let capacity = max_keys / SHARDS + usize::from(i < max_keys % SHARDS);
                Mutex::new(Shard {
                    buckets: HashMap::new(),
                    capacity,
                    overflow: None,
                    next_sweep: None,
                })
            })
            .collect();
        RateLimiter {
            refill: Refill::new(config),
            shard_hasher: RandomState::new(),
            shards,
            max_keys,
        }
    }

    /// Whether `config` would build a limiter with the same arithmetic (so
    /// a reload may keep this one and its buckets).
    pub fn same_settings(&self, config: &RateLimit) -> bool {
        let other = Refill::new(config);
        (
            self.refill.token,
            self.refill.per_nano,
            self.refill.capacity,
            self.refill.unlimited,
        ) == (other.token, other.per_nano, other.capacity, other.unlimited)
    }

    /// Takes one token for `ip` at `now`. The caller supplies the clock, so
    /// the answer depends only on the calls made and the instants passed.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Decision {
        if self.refill.unlimited {
            return Decision::Allow;
        }
        let key = Key::of(ip);
        self.shard(key).check(key, &self.refill, now)
    }

    /// Buckets currently held (never more than `max_keys`).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).buckets.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every bucket that has refilled completely by `now`; no decision
    /// changes, memory goes back.
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            lock(shard).sweep(&self.refill, now);
        }
    }

    fn shard(&self, key: Key) -> MutexGuard<'_, Shard> {
        // A hasher of its own, so the shard index says nothing about where
        // the key sits inside the shard's map.
        let index = (self.shard_hasher.hash_one(key) % SHARDS as u64) as usize;
        lock(&self.shards[index])
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("refill", &self.refill)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// Nothing under these locks can panic, but a poisoned lock must not take
/// the request path down with it.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
