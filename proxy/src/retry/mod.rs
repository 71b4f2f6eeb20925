//! Retries: which failures may be retried and where (`classify`), and how many (`budget`).

pub mod budget;
pub mod classify;

pub use budget::RetryBudget;
pub use classify::may_retry;
