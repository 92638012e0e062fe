//! How calls to a remote storage survive its failures without holding callers for long: each
//! attempt has a timeout, transient failures are retried with exponential backoff and jitter
//! (or after the storage's own `Retry-After`), nothing outlasts the deadline of the request
//! being served, and a storage that keeps failing is not called at all for a while, so that
//! callers get their `503` at once instead of after every timeout.
//!
//! Retrying is safe because every operation of the storage port is idempotent: orders are
//! created once per id, stock is taken and given back at most once per order, and status
//! changes compare and set.

use std::{sync::Mutex, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use futures::{
    FutureExt,
    future::{self, Either},
};
use tokio::time::Instant;

use crate::{deadline, domain::storage::StorageError, metrics, telemetry::ErrorChain};

/// Attempts, backoff and timeouts of one storage call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first one included; at least 1.
    pub attempts: u32,
    /// Time one attempt may take, from sending to the end of the answer.
    pub attempt_timeout: Duration,
    /// Wait before the second attempt; each later wait is four times longer, and each is
    /// spread at random up to twice as long, so that callers that failed together do not
    /// come back together.
    pub first_backoff: Duration,
}

/// Why one attempt failed, and when the storage asked to be called again.
#[derive(Debug)]
pub struct Failure {
    pub error: StorageError,
    /// The storage's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// Whether another attempt may succeed: what the error says, unless the storage refused
    /// something that stays the same from one attempt to the next, such as this service's
    /// token.
    pub retryable: bool,
}

impl From<StorageError> for Failure {
    fn from(error: StorageError) -> Self {
        Self {
            retryable: error.is_retryable(),
            error,
            retry_after: None,
        }
    }
}

/// Why an attempt was not made or not waited for; the source of an `Unavailable`.
#[derive(Debug, thiserror::Error)]
enum Withheld {
    #[error("the storage failed {0} attempts in a row; calls are held back until a probe succeeds")]
    CircuitOpen(u32),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("the request's deadline has passed")]
    DeadlinePassed,
}

/// Runs `send` until it succeeds, fails for good, has used up its attempts, or would outlast
/// the current deadline; classifies nothing itself: `send` answers a classified failure.
pub async fn call<T, F, Fut>(
    operation: &'static str,
    policy: RetryPolicy,
    breaker: &Breaker,
    mut send: F,
) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let backoff = ExponentialBuilder::new()
        .with_min_delay(policy.first_backoff)
        .with_factor(4.0)
        .with_jitter()
        .with_max_times(policy.attempts.saturating_sub(1) as usize);
    let attempt = || {
        let admitted = breaker.admit();
        let timeout = deadline::remaining().map_or(policy.attempt_timeout, |left| {
            left.min(policy.attempt_timeout)
        });
        // Sent here, not inside the future, so that `send` is only borrowed for the call.
        // Combinators rather than an `async` block, which would hold the call's future twice:
        // as what it captured and as what it awaits.
        let Some(answer) = (admitted && !timeout.is_zero()).then(&mut send) else {
            let why = if admitted {
                Withheld::DeadlinePassed
            } else {
                metrics::storage_breaker_rejected(operation);
                Withheld::CircuitOpen(breaker.threshold)
            };
            return Either::Left(future::ready(Err(Failure::from(
                StorageError::Unavailable(why.into()),
            ))));
        };
        Either::Right(tokio::time::timeout(timeout, answer).map(move |answered| {
            let result = match answered {
                Ok(result) => result,
                Err(_) => Err(StorageError::Unavailable(Withheld::TimedOut(timeout).into()).into()),
            };
            // Any answer but a transient failure shows the storage at work, a refusal too.
            breaker.record(!matches!(&result, Err(failure) if failure.error.is_retryable()));
            result
        }))
    };
    attempt
        .retry(backoff)
        .when(|failure| failure.retryable && breaker.is_closed())
        .adjust(|failure, backoff| {
            // `None` once the attempts are used up, whatever the storage asks.
            let wait = failure.retry_after.unwrap_or(backoff?);
            // A wait that leaves no time for the attempt after it only delays the answer.
            match deadline::remaining() {
                Some(left) if left <= wait => None,
                _ => Some(wait),
            }
        })
        .notify(|failure, wait| {
            metrics::storage_retry(operation);
            tracing::warn!(
                operation,
                retry_in = ?wait,
                error = %ErrorChain(&failure.error),
                "storage call failed; retrying"
            );
        })
        .await
        .map_err(|failure| failure.error)
}

/// A circuit breaker: after `threshold` failed attempts in a row it opens, and every call
/// fails at once; once `cooldown` has passed it lets one attempt through as a probe, and
/// closes again when an attempt succeeds. Written here rather than taken from a crate: it is
/// a few lines over one mutex, and the crates that offer it are either unmaintained or built
/// around tower services, which a progenitor client is not.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    /// No attempt until `until`; then one, and the next window starts.
    Open {
        until: Instant,
    },
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is two words that every path leaves valid: a panic elsewhere while the
        // lock was held cannot have broken it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether an attempt may go out now. While open, one attempt per cooldown goes out as
    /// the probe.
    fn admit(&self) -> bool {
        let mut state = self.state();
        match *state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if Instant::now() >= until => {
                *state = BreakerState::Open {
                    until: Instant::now() + self.cooldown,
                };
                true
            }
            BreakerState::Open { .. } => false,
        }
    }

    fn record(&self, success: bool) {
        let mut state = self.state();
        *state = match (*state, success) {
            (BreakerState::Open { .. }, true) => {
                metrics::storage_breaker_entered("closed");
                BreakerState::Closed { failures: 0 }
            }
            (BreakerState::Closed { .. }, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            (BreakerState::Closed { .. }, false) => {
                tracing::warn!(
                    failures = self.threshold,
                    cooldown = ?self.cooldown,
                    "the storage keeps failing: holding calls back"
                );
                metrics::storage_breaker_entered("open");
                BreakerState::Open {
                    until: Instant::now() + self.cooldown,
                }
            }
            (open @ BreakerState::Open { .. }, false) => open,
        };
    }

    /// Whether calls go out; an open breaker lets through only its probe.
    pub fn is_closed(&self) -> bool {
        matches!(*self.state(), BreakerState::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick_policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            attempt_timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(1),
        }
    }

    fn unavailable() -> Failure {
        StorageError::Unavailable("down".into()).into()
    }

    fn breaker() -> Breaker {
        Breaker::new(100, Duration::from_secs(60))
    }

    #[tokio::test]
    async fn retries_transient_failures_up_to_the_attempts() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = call("test", quick_policy(3), &breaker(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(unavailable()) }
        })
        .await;
        assert!(matches!(result, Err(StorageError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn stops_retrying_at_the_first_success() {
        let calls = AtomicU32::new(0);
        let result = call("test", quick_policy(3), &breaker(), || {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 0 {
                    Err(unavailable())
                } else {
                    Ok(call)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 1);
    }

    #[tokio::test]
    async fn never_retries_a_permanent_answer() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = call("test", quick_policy(3), &breaker(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(StorageError::NotFound.into()) }
        })
        .await;
        assert!(matches!(result, Err(StorageError::NotFound)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_does_not_answer_times_out_and_is_retried() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            attempt_timeout: Duration::from_millis(200),
            ..quick_policy(2)
        };
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = call("test", policy, &breaker(), || {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending()
        })
        .await;
        assert!(matches!(result, Err(StorageError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() < Duration::from_millis(450));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_outlasts_the_deadline_of_the_request() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            attempt_timeout: Duration::from_secs(2),
            ..quick_policy(10)
        };
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = deadline::within(started + Duration::from_secs(3), async {
            call("test", policy, &breaker(), || {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending()
            })
            .await
        })
        .await;
        assert!(matches!(result, Err(StorageError::Unavailable(_))));
        assert!(
            started.elapsed() <= Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "2 s, then what is left of 3 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_storages_retry_after_is_honoured_when_it_fits_the_deadline() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let asks_for_a_second = || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err::<(), _>(Failure {
                    error: StorageError::Unavailable("busy".into()),
                    retry_after: Some(Duration::from_secs(1)),
                    retryable: true,
                })
            }
        };
        let _ = call("test", quick_policy(2), &breaker(), asks_for_a_second).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() >= Duration::from_secs(1));

        // Half a second left: waiting a second would only delay the answer.
        calls.store(0, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let _ = deadline::within(started + Duration::from_millis(500), async {
            call("test", quick_policy(2), &breaker(), asks_for_a_second).await
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_millis(10));
    }

    #[tokio::test]
    async fn a_breaker_opens_after_failures_in_a_row_and_fails_calls_without_sending_them() {
        let breaker = Breaker::new(3, Duration::from_secs(60));
        let calls = AtomicU32::new(0);
        for _ in 0..3 {
            let _: Result<(), _> = call("test", quick_policy(1), &breaker, || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(unavailable()) }
            })
            .await;
        }
        assert!(!breaker.is_closed());
        let result: Result<(), _> = call("test", quick_policy(3), &breaker, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .await;
        assert!(matches!(result, Err(StorageError::Unavailable(_))));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "the fourth call was not sent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_its_cooldown_a_breaker_sends_one_probe_and_closes_when_it_succeeds() {
        let breaker = Breaker::new(1, Duration::from_secs(1));
        let _: Result<(), _> = call("test", quick_policy(1), &breaker, || async {
            Err(unavailable())
        })
        .await;
        assert!(!breaker.is_closed());
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(breaker.admit(), "the probe");
        assert!(!breaker.admit(), "only one probe per cooldown");
        breaker.record(true);
        assert!(breaker.is_closed());
        assert!(breaker.admit());
    }
}
