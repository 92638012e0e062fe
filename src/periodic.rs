//! Upkeep on a timer: for as long as what it keeps up lives, or for ever beside a server.

use std::{convert::Infallible, sync::Weak, time::Duration};

use tokio::time::Interval;

/// Runs `round` on what `owner` points to every `period`, the first time one period from now,
/// until the owner is dropped. Holding it weakly lets the task end on its first round after
/// the owner is gone, rather than keep it alive.
pub async fn while_alive<T>(owner: Weak<T>, period: Duration, round: impl Fn(&T)) {
    let mut rounds = from_next_period(period).await;
    loop {
        rounds.tick().await;
        let Some(owner) = owner.upgrade() else {
            return;
        };
        round(&owner);
    }
}

/// Runs `round` every `period`, the first time one period from now, for ever: upkeep that
/// lasts as long as the server it runs beside.
pub async fn forever(period: Duration, mut round: impl FnMut()) -> Infallible {
    let mut rounds = from_next_period(period).await;
    loop {
        rounds.tick().await;
        round();
    }
}

/// An interval whose next tick is one period from now: tokio's first tick completes at once,
/// and what is kept up was set up just now.
async fn from_next_period(period: Duration) -> Interval {
    let mut rounds = tokio::time::interval(period);
    rounds.tick().await;
    rounds
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    const PERIOD: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn rounds_come_each_period_from_the_next_one_on_and_end_with_the_owner() {
        let owner = Arc::new(AtomicU32::new(0));
        let task = tokio::spawn(while_alive(Arc::downgrade(&owner), PERIOD, |rounds| {
            rounds.fetch_add(1, Ordering::SeqCst);
        }));
        tokio::time::sleep(PERIOD / 2).await;
        assert_eq!(
            owner.load(Ordering::SeqCst),
            0,
            "no round before the first period"
        );
        tokio::time::sleep(PERIOD * 2).await;
        assert_eq!(owner.load(Ordering::SeqCst), 2);

        drop(owner);
        tokio::time::sleep(PERIOD).await;
        assert!(task.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_go_on_for_ever_from_the_next_period_on() {
        let rounds = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&rounds);
        let task = tokio::spawn(forever(PERIOD, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        }));
        tokio::time::sleep(PERIOD / 2).await;
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            0,
            "no round before the first period"
        );
        tokio::time::sleep(PERIOD * 10).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 10);
        assert!(!task.is_finished());
        task.abort();
    }
}
