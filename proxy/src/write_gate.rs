//! Manual write-region failover that loses and reorders nothing.
//!
//! While the write region moves, new writes wait at the gate; writes already in flight finish
//! against the old region; then the new write region is published and the gate opens. A write
//! therefore never lands in the new region while an older one is still being applied in the
//! old region. Reads never wait. The fast path is one atomic load and one atomic add.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct WriteGate {
    paused: AtomicBool,
    resumed: Notify,
    in_flight: AtomicUsize,
    drained: Notify,
}

/// Counts one write as in flight until dropped.
pub struct WriteGuard<'a>(&'a WriteGate);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Methods that change state; what the gate holds back during a write-region move.
pub fn is_write(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl WriteGate {
    /// Lets a write through (waiting while a move is under way, until `deadline`) and counts it.
    pub async fn enter(&self, deadline: Instant) -> Option<WriteGuard<'_>> {
        loop {
            let resumed = self.resumed.notified();
            if !self.paused.load(Ordering::Acquire) {
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                // A move may have started between the check and the add: step back and wait.
                if !self.paused.load(Ordering::Acquire) {
                    return Some(WriteGuard(self));
                }
                drop(WriteGuard(self));
                continue;
            }
            if tokio::time::timeout_at(deadline, resumed).await.is_err() {
                return None;
            }
        }
    }

    /// Holds new writes, waits (up to `drain_timeout`) for in-flight ones, runs `switch`, opens.
    /// Returns how many writes were still in flight when the wait gave up (0 normally).
    pub async fn move_writes<F: Future<Output = ()>>(
        &self,
        drain_timeout: Duration,
        switch: F,
    ) -> usize {
        self.paused.store(true, Ordering::Release);
        let deadline = Instant::now() + drain_timeout;
        loop {
            let drained = self.drained.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                break;
            }
        }
        let left = self.in_flight.load(Ordering::Acquire);
        switch.await;
        self.paused.store(false, Ordering::Release);
        self.resumed.notify_waiters();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_move_waits_for_in_flight_writes_and_holds_new_ones() {
        let gate = Arc::new(WriteGate::default());
        let far = Instant::now() + Duration::from_secs(60);
        let guard = gate.enter(far).await.expect("open gate");

        let moved = Arc::new(AtomicBool::new(false));
        let mover = {
            let (gate, moved) = (gate.clone(), moved.clone());
            tokio::spawn(async move {
                gate.move_writes(Duration::from_secs(10), async {
                    moved.store(true, Ordering::SeqCst);
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        let waiting = {
            let (gate, moved) = (gate.clone(), moved.clone());
            tokio::spawn(async move {
                let _g = gate.enter(far).await.expect("admitted after the move");
                moved.load(Ordering::SeqCst)
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !moved.load(Ordering::SeqCst),
            "the move waits for the in-flight write"
        );
        drop(guard);
        assert_eq!(mover.await.expect("mover"), 0);
        assert!(
            waiting.await.expect("writer"),
            "the new write went in only after the move"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_write_cannot_hold_a_move_forever_nor_a_waiting_write() {
        let gate = Arc::new(WriteGate::default());
        let _stuck = gate.enter(Instant::now() + Duration::from_secs(60)).await;
        let left = gate.move_writes(Duration::from_millis(500), async {}).await;
        assert_eq!(left, 1);
        gate.paused.store(true, Ordering::Release);
        assert!(
            gate.enter(Instant::now() + Duration::from_millis(50))
                .await
                .is_none()
        );
    }
}
