//! One attempt at one region: the request sent inside its client span, under the attempt's
//! timer (`per_try_timeout` from when the region has the whole request, see `body::upload`),
//! and counted.

use std::time::Duration;

use http::{Request, Response};
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;

use crate::body::ProxyBody;
use crate::body::upload::{PerTry, UploadProgress, per_try_expired};
use crate::error::FailureKind;
use crate::service::Service;
use crate::telemetry::traces;

use super::unanswered::InFlight;

/// How one attempt ended (one per attempt, on the stack: see `Outcome`).
#[allow(clippy::large_enum_variant)]
pub(super) enum Attempt {
    Done(Result<Response<ProxyBody>, crate::error::Error>),
    /// No response head within `per_try_timeout` of the region having the whole request.
    TimedOut,
    /// The request deadline passed while the client was still sending its body.
    ClientTooSlow,
    /// The client's streamed body broke off (it went away mid-upload), which failed the
    /// attempt: not the region's failure.
    ClientGone,
}

/// What the attempt's timer knows: when the attempt started, how long the region gets, and
/// the request's own deadline.
pub(super) struct AttemptClock<'a> {
    pub started: Instant,
    pub per_try: Duration,
    pub deadline: Instant,
    /// A streamed body's progress: the region's time starts when the client's body is done.
    pub upload: Option<&'a UploadProgress>,
}

/// Sends one attempt inside its client span, with the trace context injected, and counts it.
pub(super) async fn send_attempt(
    svc: &Service,
    region: usize,
    attempt: u32,
    mut request: Box<Request<ProxyBody>>,
    clock: AttemptClock<'_>,
) -> Attempt {
    let upstream = &svc.upstreams[region];
    if attempt > 1 {
        svc.metrics.retry();
    }
    let span = traces::attempt_span(
        &upstream.name,
        attempt,
        request.method(),
        upstream.host_header(),
    );
    traces::inject(&span, request.headers_mut());
    let mut in_flight = InFlight::new(svc, region, &span);
    let until = (clock.started + clock.per_try).min(clock.deadline);
    let sent = match clock.upload {
        // The common case, a body read whole before the first attempt (or none): one timer.
        None => match timeout_at(until, upstream.send(request))
            .instrument(span.clone())
            .await
        {
            Ok(done) => Attempt::Done(done),
            Err(_) => Attempt::TimedOut,
        },
        // Boxed: uploads are rare and large, and the common future stays as small as before.
        Some(upload) => {
            let send = upstream.send(request).instrument(span.clone());
            Box::pin(send_streaming(send, until, &clock, upload)).await
        }
    };
    in_flight.done();
    let sent = match sent {
        Attempt::Done(Err(_)) if clock.upload.is_some_and(UploadProgress::client_failed) => {
            Attempt::ClientGone
        }
        sent => sent,
    };
    let (status, failure) = match &sent {
        Attempt::Done(Ok(resp)) if resp.status().is_server_error() => (
            Some(resp.status()),
            Some(FailureKind::Status(resp.status().as_u16())),
        ),
        Attempt::Done(Ok(resp)) => (Some(resp.status()), None),
        Attempt::Done(Err(err)) => (None, Some(err.kind)),
        Attempt::TimedOut => (None, Some(FailureKind::Timeout)),
        // Neither is the region's failure: the attempt ended for the client's sake.
        Attempt::ClientTooSlow | Attempt::ClientGone => {
            svc.metrics.attempt_cancelled(region);
            traces::record_cancelled(&span);
            return sent;
        }
    };
    // A success is counted by `answered`, or by its body when that is watched for stalls
    // (`body::stall`): a body cut off later is an attempt that timed out.
    if failure.is_some() {
        svc.metrics.attempt(region, failure);
    }
    traces::record_attempt(&span, status, failure);
    sent
}

/// An attempt whose body streams from the client: the timer follows the upload (see
/// `body::upload`).
async fn send_streaming(
    send: impl std::future::Future<Output = Result<Response<ProxyBody>, crate::error::Error>>,
    mut until: Instant,
    clock: &AttemptClock<'_>,
    upload: &UploadProgress,
) -> Attempt {
    tokio::pin!(send);
    loop {
        match timeout_at(until, &mut send).await {
            Ok(done) => return Attempt::Done(done),
            Err(_) => match per_try_expired(
                Some(upload),
                clock.started,
                Instant::now(),
                clock.per_try,
                clock.deadline,
            ) {
                PerTry::ExtendTo(later) => until = later,
                PerTry::TimedOut => return Attempt::TimedOut,
                PerTry::ClientTooSlow => return Attempt::ClientTooSlow,
            },
        }
    }
}
