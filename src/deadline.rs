//! The deadline of the request being served, carried with the task that serves it, so that
//! every storage call on its way can fit its attempts, backoffs and timeouts inside it
//! without each layer passing it on by hand.

use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` with `deadline` as the deadline of everything it calls. Not an `async fn`,
/// which would hold `work` beside the scope that holds it too, doubling the future's size.
pub fn within<F: Future>(deadline: Instant, work: F) -> impl Future<Output = F::Output> {
    DEADLINE.scope(deadline, work)
}

/// The time left before the current deadline; `None` outside of [`within`], as for the
/// recovery task, which has no caller waiting.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_time_left_is_known_inside_a_deadline_only() {
        assert_eq!(remaining(), None);
        let left = within(Instant::now() + Duration::from_secs(5), async {
            remaining()
        })
        .await;
        assert!(
            left.is_some_and(|left| left > Duration::from_secs(4)),
            "{left:?}"
        );
        let past = within(Instant::now(), async { remaining() }).await;
        assert_eq!(past, Some(Duration::ZERO));
    }
}
