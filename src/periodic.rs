//! Upkeep on a timer that lasts as long as what it keeps up.

use std::{sync::Weak, time::Duration};

/// Runs `round` on what `owner` points to every `period`, the first time one period from now,
/// until the owner is dropped. Holding it weakly lets the task end on its first round after
/// the owner is gone, rather than keep it alive.
pub async fn while_alive<T>(owner: Weak<T>, period: Duration, round: impl Fn(&T)) {
    let mut rounds = tokio::time::interval(period);
    // The first tick completes at once, when the owner was set up just now.
    rounds.tick().await;
    loop {
        rounds.tick().await;
        let Some(owner) = owner.upgrade() else {
            return;
        };
        round(&owner);
    }
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
}
