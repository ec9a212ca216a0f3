//! A scripted outage of three regions, stepped through weir's failover
//! state machine (`upstream::failover`), printed as each region's share of
//! the traffic over time: spillover below `min_healthy`, failover, and
//! failback only after `failback_after`.
//!
//!     cargo run --example failover_sim
//!
//! Regions in priority order: us-east (10 endpoints), us-west (10),
//! eu-west (4). `min_healthy = 0.7`, `failback_after = 30s`.

use std::time::{Duration, Instant};

use weir::upstream::failover::{Policy, State};

/// (second, healthy endpoints per region, what happens)
const TIMELINE: &[(u64, [u32; 3], &str)] = &[
    (0, [10, 10, 4], "all healthy"),
    (10, [8, 10, 4], "us-east loses 2 of 10: still >= 70%"),
    (20, [5, 10, 4], "us-east at 50%: keeps 5/7, spills the rest"),
    (30, [2, 10, 4], "us-east at 20%"),
    (40, [0, 10, 4], "us-east down"),
    (50, [0, 6, 4], "us-west degrades to 60% too"),
    (60, [0, 3, 4], "us-west at 30%"),
    (70, [10, 3, 4], "us-east back: waits for failback_after"),
    (90, [10, 3, 4], "20 s healthy: still waiting"),
    (100, [10, 3, 4], "30 s healthy: fails back"),
    (110, [10, 10, 4], "all healthy again"),
];

const SIZES: [u32; 3] = [10, 10, 4];
const NAMES: [&str; 3] = ["us-east", "us-west", "eu-west"];

fn main() {
    let policy = Policy {
        min_healthy: 0.7,
        failback_after: Duration::from_secs(30),
    };
    let mut state = State::default();
    let t0 = Instant::now();
    println!(
        "{:>5}  {:>9} {:>9} {:>9}  event",
        "t (s)", NAMES[0], NAMES[1], NAMES[2]
    );
    for &(second, healthy, event) in TIMELINE {
        let fractions: Vec<f64> = healthy
            .iter()
            .zip(SIZES)
            .map(|(&h, n)| f64::from(h) / f64::from(n))
            .collect();
        let shares = state.step(&fractions, t0 + Duration::from_secs(second), &policy);
        let cells: Vec<String> = shares
            .iter()
            .map(|s| format!("{:>8.1}%", s * 100.0))
            .collect();
        println!("{second:>5}  {}  {event}", cells.join(" "));
    }
}
