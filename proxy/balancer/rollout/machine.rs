//! The rollout step machine: pure, stepped with `now` and the figures of
//! the current window of `to`.
//!
//! - It starts `running` at the first step, with a new window.
//! - Each tick, once the window holds `min_requests`, a breach (error rate
//!   or p99 over its bound) acts at once: `rolled_back` (or `paused` with
//!   `on_failure = "pause"`), for good: only a changed rollout section
//!   starts it again.
//! - When a window has lasted `step_every`: with fewer than `min_requests`
//!   there is no verdict (the step holds, a new window starts); otherwise
//!   the window was clean and the rollout advances one step. Reaching the
//!   last step makes it `complete`.

use std::time::{Duration, Instant};

use crate::config::schema::{self, OnFailure};

/// What the config asks for, checked by `validate` (steps increasing,
/// each ≤ 100, at least one).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<u32>,
    pub step_every: Duration,
    pub max_error_rate: Option<f64>,
    pub max_p99: Option<Duration>,
    pub min_requests: u64,
    pub on_failure: OnFailure,
}

impl From<&schema::Rollout> for Plan {
    fn from(r: &schema::Rollout) -> Plan {
        Plan {
            steps: r.steps.clone(),
            step_every: r.step_every.0,
            max_error_rate: r.max_error_rate,
            max_p99: r.max_p99.map(|d| d.0),
            min_requests: r.min_requests,
            on_failure: r.on_failure,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    Complete,
    RolledBack,
    Paused,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Complete => "complete",
            Phase::RolledBack => "rolled_back",
            Phase::Paused => "paused",
        }
    }
}

/// What one window of `to` saw.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub requests: u64,
    /// 5xx answers, connect failures included (weir answers them 502/503).
    pub errors: u64,
    pub p99: Option<Duration>,
}

impl Figures {
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A full window with too few requests: the step holds.
    Hold,
    /// A clean full window: one step further.
    Advance,
    Breach,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hold => "hold",
            Outcome::Advance => "advance",
            Outcome::Breach => "breach",
        }
    }
}

/// The last judgement, with the figures it was made on.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub at: Instant,
    pub outcome: Outcome,
    pub figures: Figures,
    pub reason: String,
}

/// What a tick changed, so the shell knows to start a new window, move
/// weights and write a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing to do: the window goes on.
    None,
    /// The window ended without a change of step.
    NewWindow,
    /// The step or the phase changed.
    Moved,
}

#[derive(Debug, Clone)]
pub struct Machine {
    plan: Plan,
    phase: Phase,
    step: usize,
    /// When the current step (or phase) began.
    since: Instant,
    window_started: Instant,
    verdict: Option<Verdict>,
}

impl Machine {
    pub fn new(plan: Plan, now: Instant) -> Machine {
        let phase = if plan.steps.len() <= 1 {
            Phase::Complete
        } else {
            Phase::Running
        };
        Machine {
            plan,
            phase,
            step: 0,
            since: now,
            window_started: now,
            verdict: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Percent of the pair's share that goes to `to` now.
    pub fn percent(&self) -> u32 {
        match self.phase {
            Phase::RolledBack => 0,
            Phase::Complete => self.plan.steps.last().copied().unwrap_or(100),
            Phase::Running | Phase::Paused => self.plan.steps.get(self.step).copied().unwrap_or(0),
        }
    }

    pub fn step_index(&self) -> usize {
        self.step
    }

    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn window_started(&self) -> Instant {
        self.window_started
    }

    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Judges the current window (`figures`) at `now`.
    pub fn tick(&mut self, now: Instant, figures: Figures) -> Transition {
        if self.phase != Phase::Running {
            return Transition::None;
        }
        let counted = figures.requests > 0 && figures.requests >= self.plan.min_requests;
        if counted && let Some(reason) = self.breach(&figures) {
            self.phase = match self.plan.on_failure {
                OnFailure::Rollback => Phase::RolledBack,
                OnFailure::Pause => Phase::Paused,
            };
            self.judge(now, Outcome::Breach, figures, reason);
            self.since = now;
            return Transition::Moved;
        }
        if now.saturating_duration_since(self.window_started) < self.plan.step_every {
            return Transition::None;
        }
        self.window_started = now;
        if figures.requests < self.plan.min_requests {
            let reason = format!(
                "{} of {} requests needed",
                figures.requests, self.plan.min_requests
            );
            self.judge(now, Outcome::Hold, figures, reason);
            return Transition::NewWindow;
        }
        self.step += 1;
        self.since = now;
        if self.step + 1 >= self.plan.steps.len() {
            self.step = self.plan.steps.len().saturating_sub(1);
            self.phase = Phase::Complete;
        }
        let reason = format!("clean window of {} requests", figures.requests);
        self.judge(now, Outcome::Advance, figures, reason);
        Transition::Moved
    }

    fn judge(&mut self, at: Instant, outcome: Outcome, figures: Figures, reason: String) {
        self.verdict = Some(Verdict {
            at,
            outcome,
            figures,
            reason,
        });
    }

    /// The first bound the window breaks, in words.
    fn breach(&self, figures: &Figures) -> Option<String> {
        let rate = figures.error_rate();
        if let Some(max) = self.plan.max_error_rate
            && rate > max
        {
            return Some(format!(
                "error rate {rate:.3} over {max} ({} of {} requests)",
                figures.errors, figures.requests
            ));
        }
        if let (Some(max), Some(p99)) = (self.plan.max_p99, figures.p99)
            && p99 > max
        {
            return Some(format!(
                "p99 {}ms over {}ms ({} requests)",
                p99.as_millis(),
                max.as_millis(),
                figures.requests
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(on_failure: OnFailure) -> Plan {
        Plan {
            steps: vec![5, 25, 100],
            step_every: Duration::from_secs(60),
            max_error_rate: Some(0.05),
            max_p99: Some(Duration::from_millis(500)),
            min_requests: 10,
            on_failure,
        }
    }

    fn figures(requests: u64, errors: u64, p99_ms: u64) -> Figures {
        Figures {
            requests,
            errors,
            p99: Some(Duration::from_millis(p99_ms)),
        }
    }

    #[test]
    fn clean_windows_advance_to_complete() {
        let t0 = Instant::now();
        let mut m = Machine::new(plan(OnFailure::Rollback), t0);
        assert_eq!((m.phase(), m.percent()), (Phase::Running, 5));
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(m.tick(at(30), figures(50, 0, 10)), Transition::None);
        assert_eq!(m.tick(at(60), figures(50, 0, 10)), Transition::Moved);
        assert_eq!((m.phase(), m.percent()), (Phase::Running, 25));
        assert_eq!(m.window_started(), at(60));
        // The new window runs from the advance, not from t0.
        assert_eq!(m.tick(at(100), figures(50, 0, 10)), Transition::None);
        assert_eq!(m.tick(at(120), figures(50, 0, 10)), Transition::Moved);
        assert_eq!((m.phase(), m.percent()), (Phase::Complete, 100));
        assert_eq!(m.tick(at(500), figures(50, 50, 10)), Transition::None);
        assert_eq!(m.phase(), Phase::Complete, "complete is final");
    }

    #[test]
    fn too_few_requests_hold_the_step() {
        let t0 = Instant::now();
        let mut m = Machine::new(plan(OnFailure::Rollback), t0);
        let at = |s| t0 + Duration::from_secs(s);
        // Errors below min_requests give no verdict, not a breach.
        assert_eq!(m.tick(at(10), figures(9, 9, 10)), Transition::None);
        assert_eq!(m.tick(at(60), figures(9, 9, 10)), Transition::NewWindow);
        assert_eq!((m.phase(), m.percent()), (Phase::Running, 5));
        assert_eq!(m.verdict().map(|v| v.outcome), Some(Outcome::Hold));
        assert_eq!(m.since(), t0, "the step did not change");
    }

    #[test]
    fn a_breach_acts_before_the_window_ends() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut m = Machine::new(plan(OnFailure::Rollback), t0);
        assert_eq!(m.tick(at(5), figures(10, 1, 10)), Transition::Moved);
        assert_eq!((m.phase(), m.percent()), (Phase::RolledBack, 0));
        let verdict = m.verdict().cloned().expect("a verdict");
        assert_eq!(verdict.outcome, Outcome::Breach);
        assert!(verdict.reason.contains("error rate 0.100"), "{verdict:?}");
        // Rolled back stays rolled back, however clean later windows are.
        assert_eq!(m.tick(at(600), figures(100, 0, 1)), Transition::None);
        assert_eq!(m.phase(), Phase::RolledBack);

        let mut m = Machine::new(plan(OnFailure::Rollback), t0);
        m.tick(at(5), figures(20, 0, 900));
        assert_eq!(m.phase(), Phase::RolledBack);
        let reason = &m.verdict().expect("a verdict").reason;
        assert!(reason.contains("p99 900ms over 500ms"), "{reason}");
    }

    #[test]
    fn pause_holds_the_step_it_was_on() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut m = Machine::new(plan(OnFailure::Pause), t0);
        m.tick(at(60), figures(10, 0, 1));
        assert_eq!(m.percent(), 25);
        m.tick(at(70), figures(10, 5, 1));
        assert_eq!((m.phase(), m.percent()), (Phase::Paused, 25));
        assert_eq!(m.tick(at(900), figures(100, 0, 1)), Transition::None);
    }

    #[test]
    fn without_bounds_or_min_requests_every_window_advances() {
        let t0 = Instant::now();
        let mut m = Machine::new(
            Plan {
                steps: vec![10, 20, 30],
                step_every: Duration::from_secs(1),
                max_error_rate: None,
                max_p99: None,
                min_requests: 0,
                on_failure: OnFailure::Rollback,
            },
            t0,
        );
        assert_eq!(
            m.tick(t0 + Duration::from_secs(1), Figures::default()),
            Transition::Moved
        );
        assert_eq!(m.percent(), 20);
        m.tick(t0 + Duration::from_secs(2), figures(5, 5, 99_999));
        assert_eq!((m.phase(), m.percent()), (Phase::Complete, 30));
    }

    #[test]
    fn one_step_is_complete_at_once() {
        let mut m = Machine::new(
            Plan {
                steps: vec![100],
                ..plan(OnFailure::Rollback)
            },
            Instant::now(),
        );
        assert_eq!((m.phase(), m.percent()), (Phase::Complete, 100));
        assert_eq!(
            m.tick(Instant::now(), figures(100, 100, 1)),
            Transition::None
        );
    }
}
