//! Progressive rollout: shifts a route's weight from one backend to
//! another in steps, judged on the `to` backend's errors and p99, rolling
//! back on a breach.
//!
//! The step machine (`machine.rs`) is pure; the window (`window.rs`) is
//! the atomics the request path records into. `Live` holds both and is
//! carried into the next snapshot when a reload leaves the rollout section
//! unchanged; one task per snapshot ticks every rollout and moves the
//! route's weights when the machine moves.

pub mod machine;
pub mod window;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::config::schema;
use crate::router::Route;
use crate::telemetry::access::rfc3339;
use machine::{Machine, Phase, Transition};
use window::Window;

/// The rollout of one compiled route.
#[derive(Debug)]
pub struct Rollout {
    /// Indexes of `from` and `to` among the route's backends.
    pub from: usize,
    pub to: usize,
    /// The section as configured: a reload carries `live` over only when
    /// this is unchanged.
    section: schema::Rollout,
    live: Arc<Live>,
}

/// The state that outlives a snapshot.
#[derive(Debug)]
pub struct Live {
    machine: Mutex<Machine>,
    window: ArcSwap<Window>,
    /// An instant and the wall time it was, to show instants as dates.
    anchor: (Instant, SystemTime),
}

impl Rollout {
    /// Compiles `section` for a route whose backends are named `names`,
    /// taking over `previous`'s state when its section is the same.
    pub fn new(
        section: &schema::Rollout,
        names: &[&str],
        previous: Option<&Rollout>,
        now: Instant,
    ) -> Option<Rollout> {
        let index = |name: &str| names.iter().position(|n| *n == name);
        let (from, to) = (index(&section.from)?, index(&section.to)?);
        let live = match previous {
            Some(p) if p.section == *section => p.live.clone(),
            _ => Arc::new(Live {
                machine: Mutex::new(Machine::new(section.into(), now)),
                window: ArcSwap::default(),
                anchor: (now, SystemTime::now()),
            }),
        };
        Some(Rollout {
            from,
            to,
            section: section.clone(),
            live,
        })
    }

    /// Counts a finished request of backend `index` of the route.
    pub fn record(&self, index: usize, status: u16, elapsed: Duration) {
        if index == self.to {
            self.live.window.load().record(status, elapsed);
        }
    }

    /// Percent of the pair's share going to `to` now.
    pub fn percent(&self) -> u32 {
        self.machine().percent()
    }

    /// The route's weights with `from` and `to` replaced by their share of
    /// the pair's total (`base` are the configured weights). Every weight
    /// is scaled by 100 so the split stays exact at any step.
    pub fn weights(&self, base: &[u32]) -> Vec<u32> {
        let percent = self.percent();
        let pair =
            base.get(self.from).copied().unwrap_or(0) + base.get(self.to).copied().unwrap_or(0);
        // Two backends configured at 0 and 0 still roll out between them.
        let pair = if pair == 0 { 1 } else { pair };
        base.iter()
            .enumerate()
            .map(|(i, &w)| {
                if i == self.to {
                    pair.saturating_mul(percent)
                } else if i == self.from {
                    pair.saturating_mul(100 - percent.min(100))
                } else {
                    w.saturating_mul(100)
                }
            })
            .collect()
    }

    /// Judges the current window; true when the step or phase moved.
    pub fn tick(&self, route: &str, now: Instant) -> bool {
        let mut machine = self.machine();
        let figures = self.live.window.load().figures();
        match machine.tick(now, figures) {
            Transition::None => false,
            Transition::NewWindow => {
                self.live.window.store(Arc::default());
                false
            }
            Transition::Moved => {
                self.live.window.store(Arc::default());
                let reason = machine.verdict().map_or("", |v| v.reason.as_str());
                tracing::info!(
                    route,
                    from = %self.section.from,
                    to = %self.section.to,
                    state = machine.phase().as_str(),
                    step = machine.percent(),
                    reason,
                    "rollout {}",
                    match machine.phase() {
                        Phase::Running => "advanced",
                        Phase::Complete => "complete",
                        Phase::RolledBack => "rolled back",
                        Phase::Paused => "paused",
                    }
                );
                true
            }
        }
    }

    /// How often `tick` should run: often enough that a breach acts within
    /// a quarter second, and a window ends close to `step_every`.
    pub fn tick_every(&self) -> Duration {
        (self.section.step_every.0 / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }

    /// The `rollout` object of a route in `/status`.
    pub fn status(&self) -> Value {
        let machine = self.machine();
        let wall = |at: Instant| {
            let (instant, time) = self.live.anchor;
            rfc3339(time + at.saturating_duration_since(instant))
        };
        let figures = |f: &machine::Figures| {
            json!({
                "requests": f.requests,
                "errors": f.errors,
                "error_rate": f.error_rate(),
                "p99_ms": f.p99.map(|d| d.as_secs_f64() * 1000.0),
            })
        };
        let window = self.live.window.load().figures();
        let mut window = figures(&window);
        window["started"] = json!(wall(machine.window_started()));
        json!({
            "from": self.section.from,
            "to": self.section.to,
            "state": machine.phase().as_str(),
            "step": machine.percent(),
            "step_index": machine.step_index(),
            "steps": machine.plan().steps,
            "since": wall(machine.since()),
            "reason": machine.verdict().map(|v| v.reason.clone()),
            "verdict": machine.verdict().map(|v| {
                let mut verdict = figures(&v.figures);
                verdict["outcome"] = json!(v.outcome.as_str());
                verdict["at"] = json!(wall(v.at));
                verdict
            }),
            "window": window,
        })
    }

    fn machine(&self) -> MutexGuard<'_, Machine> {
        // The machine has no invariant a panicking holder could break half-way.
        self.live
            .machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Ticks every rollout of `routes` until `stop` turns true, moving a
/// route's weights whenever its machine moves (or another snapshot's task
/// moved it: the weights are synced on every tick).
pub fn start(routes: &[Arc<Route>], stop: &tokio::sync::watch::Sender<bool>) {
    let routes: Vec<Arc<Route>> = routes
        .iter()
        .filter(|r| r.rollout.is_some())
        .cloned()
        .collect();
    let Some(every) = routes
        .iter()
        .filter_map(|r| r.rollout.as_ref().map(Rollout::tick_every))
        .min()
    else {
        return;
    };
    let mut stop = stop.subscribe();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let now = Instant::now();
            for route in &routes {
                route.tick_rollout(now);
            }
        }
    });
}
