//! The per-user order limit (`ORDERS_PER_USER_PER_MINUTE`): at most N orders of one user a
//! minute, with a burst of N, kept by a keyed GCRA limiter in this replica's memory. Each
//! replica counts only the orders it takes, so with R replicas a user gets up to R x N.

use std::{
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::HashMapStateStore,
};

use crate::{domain::model::UserId, periodic};

/// How often the users whose quota is full again are forgotten. governor drops a user's state
/// one replenish interval (60 s / N) after their quota is full again, which is at most a
/// minute and an interval after their last order; a state outlives that by at most this
/// period.
pub const UPKEEP_PERIOD: Duration = Duration::from_secs(60);

/// At most `per_minute` orders of each user a minute.
pub struct UserLimit<C: Clock = DefaultClock> {
    per_minute: NonZeroU32,
    limiter: RateLimiter<UserId, HashMapStateStore<UserId>, C, NoOpMiddleware<C::Instant>>,
}

impl UserLimit {
    pub fn new(per_minute: NonZeroU32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

/// An order refused because its user is past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// How long until the user's next order would be admitted.
    pub wait: Duration,
}

impl Refused {
    /// `wait` in whole seconds for `Retry-After`, rounded up (a client that waits what it is
    /// told is then admitted) and at least 1 (0 would invite an immediate retry).
    pub fn retry_after_seconds(&self) -> u64 {
        let whole = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        whole.max(1)
    }
}

impl<C: Clock> UserLimit<C> {
    pub fn with_clock(per_minute: NonZeroU32, clock: C) -> Self {
        Self {
            per_minute,
            limiter: RateLimiter::hashmap_with_clock(Quota::per_minute(per_minute), clock),
        }
    }

    pub fn per_minute(&self) -> NonZeroU32 {
        self.per_minute
    }

    /// Counts one order of `user`, or refuses it when the user has no quota left.
    pub fn admit(&self, user: &UserId) -> Result<(), Refused> {
        self.limiter.check_key(user).map_err(|not_until| Refused {
            wait: not_until.wait_time_from(self.limiter.clock().now()),
        })
    }

    /// Forgets the users whose quota is full again, so that the memory the limiter holds
    /// follows the users of the last minutes, not every user id ever sent.
    pub fn forget_idle_users(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// The users the limiter holds a state for.
    #[cfg(test)]
    fn users(&self) -> usize {
        self.limiter.len()
    }
}

/// Forgets idle users every `period` for as long as the service that owns `limit` lives.
/// Without it the limiter would keep a state for every user id it was ever sent, and a client
/// that sends orders under ever new user ids would grow the replica's memory without bound.
pub async fn upkeep<C: Clock>(limit: Weak<UserLimit<C>>, period: Duration) {
    periodic::while_alive(limit, period, UserLimit::forget_idle_users).await;
}

/// The limit of `per_minute` orders, with its upkeep running on the current Tokio runtime
/// until the returned limit is dropped.
pub fn spawn(per_minute: NonZeroU32) -> Arc<UserLimit> {
    let limit = Arc::new(UserLimit::new(per_minute));
    tokio::spawn(upkeep(Arc::downgrade(&limit), UPKEEP_PERIOD));
    limit
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn limit(per_minute: u32) -> UserLimit<FakeRelativeClock> {
        UserLimit::with_clock(
            NonZeroU32::new(per_minute).unwrap(),
            FakeRelativeClock::default(),
        )
    }

    fn advance(limit: &UserLimit<FakeRelativeClock>, by: Duration) {
        limit.limiter.clock().advance(by);
    }

    #[test]
    fn a_user_gets_a_burst_of_the_limit_then_is_refused_until_a_share_of_the_minute_passed() {
        let limit = limit(3);
        let alice = user("alice");
        for _ in 0..3 {
            assert_eq!(limit.admit(&alice), Ok(()));
        }
        // Three a minute: one more every 20 seconds.
        assert_eq!(
            limit.admit(&alice),
            Err(Refused {
                wait: Duration::from_secs(20)
            })
        );
        advance(&limit, Duration::from_secs(5));
        assert_eq!(
            limit.admit(&alice),
            Err(Refused {
                wait: Duration::from_secs(15)
            })
        );
        advance(&limit, Duration::from_secs(15));
        assert_eq!(limit.admit(&alice), Ok(()));
        assert!(limit.admit(&alice).is_err());
    }

    #[test]
    fn each_user_has_a_quota_of_their_own() {
        let limit = limit(1);
        assert_eq!(limit.admit(&user("alice")), Ok(()));
        assert!(limit.admit(&user("alice")).is_err());
        assert_eq!(limit.admit(&user("bob")), Ok(()));
        assert_eq!(limit.users(), 2);
    }

    #[test]
    fn retry_after_is_the_wait_rounded_up_to_whole_seconds_and_at_least_one() {
        for (wait, seconds) in [
            (Duration::ZERO, 1),
            (Duration::from_millis(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1_001), 2),
            (Duration::from_secs(60), 60),
        ] {
            assert_eq!(Refused { wait }.retry_after_seconds(), seconds, "{wait:?}");
        }
    }

    #[test]
    fn a_refused_wait_of_a_fraction_of_a_second_asks_for_the_next_whole_second() {
        // 7 a minute: one every 8.57 s.
        let limit = limit(7);
        let alice = user("alice");
        for _ in 0..7 {
            limit.admit(&alice).unwrap();
        }
        let refused = limit.admit(&alice).unwrap_err();
        assert!(refused.wait > Duration::from_secs(8), "{refused:?}");
        assert_eq!(refused.retry_after_seconds(), 9);
        advance(&limit, Duration::from_secs(9));
        assert_eq!(limit.admit(&alice), Ok(()));
    }

    #[test]
    fn users_are_forgotten_a_replenish_interval_after_their_quota_is_full_again() {
        // Two a minute: one every 30 s.
        let limit = limit(2);
        let (alice, bob) = (user("alice"), user("bob"));
        limit.admit(&alice).unwrap();
        limit.admit(&alice).unwrap();
        advance(&limit, Duration::from_secs(50));
        limit.admit(&bob).unwrap();

        limit.forget_idle_users();
        assert_eq!(limit.users(), 2, "neither has a full quota again yet");

        // Alice's quota is full at 60 s, Bob's at 80 s; each is forgotten 30 s later.
        advance(&limit, Duration::from_secs(40));
        limit.forget_idle_users();
        assert_eq!(limit.users(), 1, "alice is forgotten, bob is not yet");
        advance(&limit, Duration::from_secs(20));
        limit.forget_idle_users();
        assert_eq!(limit.users(), 0);
        assert_eq!(
            limit.admit(&alice),
            Ok(()),
            "a forgotten user starts afresh"
        );
        assert_eq!(limit.admit(&alice), Ok(()));
        assert!(limit.admit(&alice).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_upkeep_forgets_idle_users_each_period_and_ends_with_the_limit() {
        let limit = Arc::new(limit(1));
        limit.admit(&user("alice")).unwrap();
        let task = tokio::spawn(upkeep(Arc::downgrade(&limit), UPKEEP_PERIOD));

        advance(&limit, Duration::from_secs(180));
        tokio::time::sleep(UPKEEP_PERIOD / 2).await;
        assert_eq!(limit.users(), 1, "no round before the first period");
        tokio::time::sleep(UPKEEP_PERIOD).await;
        assert_eq!(limit.users(), 0);

        drop(limit);
        tokio::time::sleep(UPKEEP_PERIOD).await;
        assert!(task.is_finished());
    }
}
