//! Bounded polling: wait for a condition the test cannot be told about directly.

use std::future::Future;
use std::time::Duration;

/// How often conditions are re-checked.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `done` every [`POLL`] until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    eventually(timeout, POLL, || std::future::ready(done())).await
}

/// Polls the async `check` every `every` until it returns true or `timeout` passes
/// (e.g. until `/status` shows a region ejected); returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let every = every.max(Duration::from_millis(1));
    // At most timeout/every + 1 checks, and never past the deadline by more than one check.
    let max_checks = timeout.as_millis() / every.as_millis() + 1;
    for _ in 0..max_checks {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
    check().await
}
