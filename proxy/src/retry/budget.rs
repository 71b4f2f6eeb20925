//! The retry budget: retries may add at most `budget_ratio` of the request rate, plus a floor of
//! `min_retries_per_sec`, measured over a sliding ten-second window.
//!
//! # Why budgets and not max retries?
//!
//! `max_attempts` bounds the retries of one request, not of the service. When a region fails
//! hard, every request retries, and a sidecar in front of every app instance turns an outage
//! into a load multiplier of `max_attempts` on whatever is still standing. A budget caps the
//! extra load at a fixed share of real traffic: retries keep masking sporadic failures, but a
//! retry storm cannot happen. The floor lets low-traffic services still retry.
//!
//! The window is ten one-second slots of atomic counters, so recording a request is one atomic
//! add and the request path never takes a lock.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

const SLOTS: u64 = 10;

#[derive(Debug, Default)]
struct Slot {
    /// Which second (plus one, so zero means unused) the counts belong to.
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

#[derive(Debug)]
pub struct RetryBudget {
    /// `budget_ratio` in thousandths, so the window sums stay integers.
    ratio_milli: u64,
    min_per_sec: u64,
    start: Instant,
    slots: [Slot; SLOTS as usize],
}

impl RetryBudget {
    pub fn new(ratio: f64, min_per_sec: u32) -> Self {
        let ratio_milli = (ratio.clamp(0.0, 1.0) * 1000.0).round() as u64;
        RetryBudget {
            ratio_milli,
            min_per_sec: u64::from(min_per_sec),
            start: Instant::now(),
            slots: Default::default(),
        }
    }

    fn now_second(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.start)
            .as_secs()
            + 1
    }

    /// The slot of the current second, cleared first if it still holds an older second.
    fn current(&self, second: u64) -> &Slot {
        let slot = &self.slots[(second % SLOTS) as usize];
        let seen = slot.second.load(Ordering::Acquire);
        if seen != second
            && slot
                .second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // A concurrent add may land between the swap and the reset: one count lost, harmless.
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Records one request (its first attempt).
    pub fn deposit(&self) {
        self.current(self.now_second())
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; false when the budget is spent.
    pub fn try_withdraw(&self) -> bool {
        let second = self.now_second();
        let (mut requests, mut retries) = (0u64, 0u64);
        for slot in &self.slots {
            let s = slot.second.load(Ordering::Acquire);
            if s != 0 && s + SLOTS > second {
                requests += slot.requests.load(Ordering::Relaxed);
                retries += slot.retries.load(Ordering::Relaxed);
            }
        }
        let allowed = self.min_per_sec * SLOTS + requests * self.ratio_milli / 1000;
        if retries >= allowed {
            return false;
        }
        self.current(second).retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_requests() {
        let budget = RetryBudget::new(0.2, 0);
        for _ in 0..100 {
            budget.deposit();
        }
        let granted = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_retries_without_traffic_and_the_window_slides() {
        let budget = RetryBudget::new(0.0, 1);
        let granted = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 10, "one per second over a ten-second window");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            !budget.try_withdraw(),
            "the spent retries are still in the window"
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        let granted = (0..100).filter(|_| budget.try_withdraw()).count();
        assert_eq!(granted, 10, "old retries slid out of the window");
    }
}
