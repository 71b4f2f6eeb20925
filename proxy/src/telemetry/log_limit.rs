//! Rate limits for log lines that a broken dependency would otherwise repeat on every request
//! (a region's bad certificate, a plugin that keeps failing): at most one line per period,
//! and that line says how many were held back since the last one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct LogLimit {
    period_secs: u64,
    /// Second (on the process clock, plus one period) of the last line let through; 0: none.
    last: AtomicU64,
    held_back: AtomicU64,
}

impl LogLimit {
    pub const fn every(period_secs: u64) -> Self {
        LogLimit {
            period_secs,
            last: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written now.
    pub fn check(&self) -> Option<u64> {
        self.check_at(process_secs())
    }

    fn check_at(&self, secs: u64) -> Option<u64> {
        // Offset by one period so the very first line is always due.
        let now = secs + self.period_secs;
        let last = self.last.load(Ordering::Relaxed);
        if now >= last + self.period_secs
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.held_back.swap(0, Ordering::Relaxed))
        } else {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn process_secs() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_the_next_one_counts_the_rest() {
        let limit = LogLimit::every(10);
        assert_eq!(limit.check_at(0), Some(0), "the first line always goes out");
        assert_eq!(limit.check_at(3), None);
        assert_eq!(limit.check_at(9), None);
        assert_eq!(limit.check_at(10), Some(2), "two lines were held back");
        assert_eq!(limit.check_at(11), None);
        assert_eq!(limit.check_at(25), Some(1));
    }
}
