//! The write-safety rule, in one place: when may a failed attempt be sent again?
//!
//! A retry is allowed when the failure is one the service opted into (`retry_on`) and either
//! the method is idempotent, the request carries an `Idempotency-Key`, or the request provably
//! never reached the backend (connect failure, refused stream). Everything else surfaces the
//! error: a write is never sent twice on a guess.

use http::Method;

use crate::config::RetryOn;
use crate::error::FailureKind;

/// Safe methods (RFC 9110 section 9.2.1): they do not ask the region to change anything.
pub fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Methods whose repetition has the same effect as one call (RFC 9110 section 9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn opted_in(failure: FailureKind, retry_on: &RetryOn) -> bool {
    match failure {
        FailureKind::Connect => retry_on.connect_failure,
        FailureKind::RefusedStream => retry_on.refused_stream,
        FailureKind::Reset => retry_on.reset,
        FailureKind::Timeout => retry_on.timeout,
        FailureKind::Status(s) => retry_on.status_5xx && (500..600).contains(&s),
        FailureKind::Other => false,
    }
}

/// Whether an attempt that failed with `failure` may be sent again.
pub fn may_retry(
    method: &Method,
    has_idempotency_key: bool,
    failure: FailureKind,
    retry_on: &RetryOn,
) -> bool {
    opted_in(failure, retry_on)
        && (is_idempotent(method) || has_idempotency_key || failure.never_reached_backend())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: RetryOn = RetryOn {
        connect_failure: true,
        refused_stream: true,
        reset: true,
        timeout: true,
        status_5xx: true,
    };

    #[test]
    fn idempotent_methods_retry_on_every_opted_in_failure() {
        for m in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            for f in [
                FailureKind::Connect,
                FailureKind::Reset,
                FailureKind::Timeout,
                FailureKind::Status(503),
            ] {
                assert!(may_retry(&m, false, f, &ALL), "{m} {f:?}");
            }
            assert!(!may_retry(&m, false, FailureKind::Other, &ALL));
        }
    }

    #[test]
    fn a_write_is_retried_only_when_it_never_left_or_has_a_key() {
        let post = Method::POST;
        assert!(may_retry(&post, false, FailureKind::Connect, &ALL));
        assert!(may_retry(&post, false, FailureKind::RefusedStream, &ALL));
        for f in [
            FailureKind::Reset,
            FailureKind::Timeout,
            FailureKind::Status(503),
        ] {
            assert!(
                !may_retry(&post, false, f, &ALL),
                "{f:?} must not resend a write"
            );
            assert!(
                may_retry(&post, true, f, &ALL),
                "{f:?} with Idempotency-Key"
            );
        }
        assert!(!may_retry(
            &Method::PATCH,
            false,
            FailureKind::Timeout,
            &ALL
        ));
    }

    #[test]
    fn retry_on_is_respected() {
        let only_connect = RetryOn {
            connect_failure: true,
            ..RetryOn::default()
        };
        assert!(may_retry(
            &Method::GET,
            false,
            FailureKind::Connect,
            &only_connect
        ));
        assert!(!may_retry(
            &Method::GET,
            false,
            FailureKind::Status(503),
            &only_connect
        ));
        assert!(!may_retry(
            &Method::GET,
            false,
            FailureKind::Status(404),
            &ALL
        ));
    }
}
