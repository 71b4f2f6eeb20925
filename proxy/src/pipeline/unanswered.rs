//! Requests and attempts the client gave up on. When a client goes away before its answer
//! (its own timeout during a brownout, a user navigating away), hyper drops the request's
//! future where it stands, so nothing after that point runs: without these guards such a
//! request appeared in no metric, though it reached a region, and dashboards showed traffic
//! falling to zero with no errors. A request is counted with code 499 (nginx's "client closed
//! request") under the region it was waiting for, and its attempt in flight as `cancelled`.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use tokio::time::Instant;

use crate::service::Service;

/// No attempt started yet.
const NO_REGION: usize = usize::MAX;

/// The request's attempts so far; counts the request as 499 when dropped before
/// [`Unanswered::answered`]. Atomics, since the request's future must be `Send`: it is the
/// only writer.
pub(super) struct Unanswered<'a> {
    svc: &'a Service,
    span: &'a tracing::Span,
    started: Instant,
    attempts: AtomicU32,
    /// The region of the attempt under way, for the count's `region` label.
    region: AtomicUsize,
    answered: bool,
}

impl<'a> Unanswered<'a> {
    pub(super) fn new(svc: &'a Service, span: &'a tracing::Span, started: Instant) -> Self {
        Unanswered {
            svc,
            span,
            started,
            attempts: AtomicU32::new(0),
            region: AtomicUsize::new(NO_REGION),
            answered: false,
        }
    }

    /// An attempt at `region` begins: its number, from 1.
    pub(super) fn attempt_at(&self, region: usize) -> u32 {
        self.region.store(region, Ordering::Relaxed);
        // The only writer: no read-modify-write needed.
        let attempt = self.attempts.load(Ordering::Relaxed) + 1;
        self.attempts.store(attempt, Ordering::Relaxed);
        attempt
    }

    /// Attempts made so far.
    pub(super) fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// The request has its answer (counted by the caller).
    pub(super) fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let region = match self.region.load(Ordering::Relaxed) {
            NO_REGION => None,
            region => Some(region),
        };
        self.svc
            .metrics
            .request(region, 499, self.started.elapsed());
        crate::telemetry::traces::record_cancelled(self.span);
        // The span says what the metrics say: 499, the region waited for, the attempts made.
        let region = region.and_then(|r| self.svc.upstreams.get(r));
        crate::telemetry::traces::record_unanswered(
            self.span,
            region.map(|u| &*u.name),
            self.attempts(),
        );
    }
}

/// Counts the attempt as `cancelled` when dropped before [`InFlight::done`], and marks its
/// span so.
pub(super) struct InFlight<'a> {
    svc: &'a Service,
    region: usize,
    span: &'a tracing::Span,
    done: bool,
}

impl<'a> InFlight<'a> {
    pub(super) fn new(svc: &'a Service, region: usize, span: &'a tracing::Span) -> Self {
        InFlight {
            svc,
            region,
            span,
            done: false,
        }
    }

    /// The attempt ended (counted by the caller).
    pub(super) fn done(&mut self) {
        self.done = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.svc.metrics.attempt_cancelled(self.region);
            crate::telemetry::traces::record_cancelled(self.span);
        }
    }
}
