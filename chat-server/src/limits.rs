//! Limits that keep one client from hurting the others: a request rate per connection, and
//! growing delays after failed logins, per user name and per source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A token bucket: `rate` requests a second on average, bursts of up to `burst`.
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one; false when the caller is over the limit.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Failed logins allowed per user name before delays start.
const FREE_FAILURES_PER_USER: u32 = 3;
/// Failed logins allowed per source address before delays start: several people may share
/// one address.
const FREE_FAILURES_PER_ADDRESS: u32 = 20;
/// The longest delay between two login attempts.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// How many names and addresses are tracked at most; the oldest entries are dropped first.
const MAX_TRACKED: usize = 100_000;

/// Failed logins, per user name and per source address, with the delay each must wait.
#[derive(Default)]
pub struct LoginThrottle {
    state: Mutex<Throttle>,
}

#[derive(Default)]
struct Throttle {
    users: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    /// No attempt is accepted before this.
    blocked_until: Instant,
}

impl LoginThrottle {
    /// `None` if a login of `user` from `addr` may be tried now; otherwise how long to wait.
    pub fn check(&self, user: &str, addr: IpAddr, now: Instant) -> Option<Duration> {
        let state = self.lock();
        let waits = [
            state.users.get(user).map(|f| f.blocked_until),
            state.addresses.get(&addr).map(|f| f.blocked_until),
        ];
        waits
            .into_iter()
            .flatten()
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Records a wrong password: each failure beyond the free ones doubles the delay.
    pub fn failed(&self, user: &str, addr: IpAddr, now: Instant) {
        let mut state = self.lock();
        if state.users.len() >= MAX_TRACKED {
            state.users.clear();
        }
        if state.addresses.len() >= MAX_TRACKED {
            state.addresses.clear();
        }
        let user_failures = state.users.entry(user.to_owned()).or_insert(Failures {
            count: 0,
            blocked_until: now,
        });
        bump(user_failures, FREE_FAILURES_PER_USER, now);
        let addr_failures = state.addresses.entry(addr).or_insert(Failures {
            count: 0,
            blocked_until: now,
        });
        bump(addr_failures, FREE_FAILURES_PER_ADDRESS, now);
    }

    /// A successful login forgets the user's failures (not the address's).
    pub fn succeeded(&self, user: &str) {
        self.lock().users.remove(user);
    }

    fn lock(&self) -> MutexGuard<'_, Throttle> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn bump(failures: &mut Failures, free: u32, now: Instant) {
    failures.count = failures.count.saturating_add(1);
    if failures.count > free {
        let doublings = (failures.count - free - 1).min(6);
        let delay = (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_DELAY);
        failures.blocked_until = now + delay;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, 3);
        assert_eq!(
            (0..5).map(|_| limit.allow(start)).collect::<Vec<_>>(),
            [true, true, true, false, false]
        );
        // A tenth of a second later, one more.
        let later = start + Duration::from_millis(100);
        assert!(limit.allow(later));
        assert!(!limit.allow(later));
    }

    #[test]
    fn delays_grow_after_the_free_failures_and_a_success_clears_them() {
        let throttle = LoginThrottle::default();
        let addr: IpAddr = [10, 0, 0, 1].into();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES_PER_USER {
            assert_eq!(throttle.check("alice", addr, now), None);
            throttle.failed("alice", addr, now);
        }
        assert_eq!(throttle.check("alice", addr, now), None);
        throttle.failed("alice", addr, now);
        assert_eq!(
            throttle.check("alice", addr, now),
            Some(Duration::from_secs(1))
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(throttle.check("alice", addr, later), None);
        throttle.failed("alice", addr, later);
        assert_eq!(
            throttle.check("alice", addr, later),
            Some(Duration::from_secs(2))
        );
        // Others from the same address are not held up by alice's failures alone.
        assert_eq!(throttle.check("bob", addr, later), None);
        throttle.succeeded("alice");
        assert_eq!(throttle.check("alice", [10, 0, 0, 2].into(), later), None);
    }

    #[test]
    fn many_failures_from_one_address_delay_every_name_from_it() {
        let throttle = LoginThrottle::default();
        let addr: IpAddr = [10, 0, 0, 9].into();
        let now = Instant::now();
        for i in 0..=FREE_FAILURES_PER_ADDRESS {
            throttle.failed(&format!("user{i}"), addr, now);
        }
        assert!(throttle.check("someone-new", addr, now).is_some());
        assert_eq!(
            throttle.check("someone-new", [10, 0, 0, 8].into(), now),
            None
        );
    }
}
