//! When a failed attempt may be tried again: idempotent requests without a
//! body to replay, within a per-service budget so that retries can add at
//! most a fifth to the load on a failing service.

use std::sync::atomic::{AtomicI64, Ordering};

use http::Method;

/// Retries may add this share of requests (in tenths: 2 = 20 %).
const DEPOSIT_PER_REQUEST: i64 = 2;
const COST_PER_RETRY: i64 = 10;
/// Tokens at start and the most the budget can save up (100 retries).
const CAP: i64 = 1000;

#[derive(Debug)]
pub struct Budget {
    tokens: AtomicI64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            tokens: AtomicI64::new(CAP / 10),
        }
    }
}

impl Budget {
    /// Every request pays into the budget.
    pub fn deposit(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < CAP).then_some((t + DEPOSIT_PER_REQUEST).min(CAP))
            });
    }

    /// Takes the cost of one retry, if the budget has it.
    pub fn withdraw(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= COST_PER_RETRY).then_some(t - COST_PER_RETRY)
            })
            .is_ok()
    }
}

/// Safe to send twice: RFC 9110 idempotent methods.
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_a_fifth_of_traffic_in_retries() {
        let budget = Budget::default();
        let mut retries = 0;
        // Drain the initial reserve first.
        while budget.withdraw() {
            retries += 1;
        }
        assert_eq!(retries, 10);
        let mut allowed = 0;
        for _ in 0..1000 {
            budget.deposit();
            if budget.withdraw() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 200);
    }

    #[test]
    fn idempotency() {
        assert!(idempotent(&Method::GET));
        assert!(idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST));
        assert!(!idempotent(&Method::PATCH));
    }
}
