//! [`LoginThrottle`]: growing delays after failed logins, per user name and per source address,
//! with the attempts still being checked counted against them.
//!
//! A login takes an [`Attempt`] before its password is checked, and turns it into a failure or
//! a success after. While attempts are in flight they count as failures that may still come:
//! past the free failures only one attempt at a time is checked for a name (or an address), so
//! that many wrong passwords sent at once are checked no faster than one after another.

use super::source_of;
use super::tracked::Tracked;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Per user name: 3 failed logins before delays start, and attempts in flight count from the
/// first, since one person logs in once at a time.
const USER: Rule = Rule {
    free: 3,
    in_flight_before_failures: true,
};
/// Per source address: 20 failed logins before delays start, since several people may share
/// one address; and attempts in flight count once one has failed, so that many honest logins
/// from one address (a NAT) may be checked at once.
const ADDRESS: Rule = Rule {
    free: 20,
    in_flight_before_failures: false,
};
/// The longest delay between two login attempts.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// How many names and addresses are tracked at most; the one touched longest ago goes first.
const MAX_TRACKED: usize = 100_000;
/// The wait given to an attempt refused because others of its name are still being checked.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

/// Failed logins, per user name and per source address, with the delay each must wait.
pub struct LoginThrottle {
    state: Mutex<Throttle>,
}

struct Throttle {
    users: Tracked<String, Failures>,
    addresses: Tracked<IpAddr, Failures>,
}

/// How failures of one kind of key (a name, an address) are counted.
struct Rule {
    /// Failures allowed before delays start.
    free: u32,
    /// Whether attempts in flight count against `free` before any attempt failed.
    in_flight_before_failures: bool,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    /// No attempt is accepted before this.
    blocked_until: Instant,
    /// Attempts whose password is being checked.
    in_flight: u32,
}

impl Failures {
    fn new(now: Instant) -> Failures {
        Failures {
            count: 0,
            blocked_until: now,
            in_flight: 0,
        }
    }

    /// How long a new attempt must wait, if it must.
    fn wait(&self, rule: &Rule, now: Instant) -> Option<Duration> {
        if self.blocked_until > now {
            return Some(self.blocked_until - now);
        }
        let counted = rule.in_flight_before_failures || self.count > 0;
        let may_fail = self.count.saturating_add(self.in_flight);
        (counted && self.in_flight > 0 && may_fail >= rule.free).then_some(IN_FLIGHT_WAIT)
    }

    /// Records a wrong password: each failure beyond the free ones doubles the delay.
    fn failed(&mut self, rule: &Rule, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.count = self.count.saturating_add(1);
        if self.count > rule.free {
            let doublings = (self.count - rule.free - 1).min(6);
            let delay = (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_DELAY);
            self.blocked_until = now + delay;
        }
    }
}

impl Default for LoginThrottle {
    fn default() -> LoginThrottle {
        LoginThrottle::with_capacity(MAX_TRACKED)
    }
}

impl LoginThrottle {
    /// A throttle that tracks at most `capacity` names and as many addresses.
    pub fn with_capacity(capacity: usize) -> LoginThrottle {
        LoginThrottle {
            state: Mutex::new(Throttle {
                users: Tracked::new(capacity),
                addresses: Tracked::new(capacity),
            }),
        }
    }

    /// Starts a login of `user` from `addr` (its [`source_of`]) if one may be tried now; otherwise says how long
    /// to wait. The attempt counts against both until it ends.
    pub fn begin(&self, user: &str, addr: IpAddr, now: Instant) -> Result<Attempt<'_>, Duration> {
        let addr = source_of(addr);
        let mut state = self.lock();
        let waits = [
            state.users.get(user).and_then(|f| f.wait(&USER, now)),
            state
                .addresses
                .get(&addr)
                .and_then(|f| f.wait(&ADDRESS, now)),
        ];
        if let Some(wait) = waits.into_iter().flatten().max() {
            // A refused attempt is news of the guesser too: its keys stay among the newest.
            state.users.refresh(user);
            state.addresses.refresh(&addr);
            return Err(wait);
        }
        state
            .users
            .touch(&user.to_owned(), || Failures::new(now))
            .in_flight += 1;
        state
            .addresses
            .touch(&addr, || Failures::new(now))
            .in_flight += 1;
        Ok(Attempt {
            throttle: self,
            user: user.to_owned(),
            addr,
            ended: false,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Throttle> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// A login whose password is being checked; dropped without an outcome (the check could not
/// be done), it counts as nothing.
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    user: String,
    addr: IpAddr,
    ended: bool,
}

impl Attempt<'_> {
    /// The password was wrong: a failure of the name and of the address.
    pub fn failed(mut self, now: Instant) {
        self.ended = true;
        let mut state = self.throttle.lock();
        let new = || Failures::new(now);
        state.users.touch(&self.user, new).failed(&USER, now);
        state.addresses.touch(&self.addr, new).failed(&ADDRESS, now);
    }

    /// The password was right: the name's failures are forgotten (not the address's).
    pub fn succeeded(mut self) {
        self.ended = true;
        self.release(true);
    }

    fn release(&self, forget_user: bool) {
        let mut state = self.throttle.lock();
        let now = Instant::now();
        let user = state.users.touch(&self.user, || Failures::new(now));
        user.in_flight = user.in_flight.saturating_sub(1);
        if forget_user {
            *user = Failures {
                in_flight: user.in_flight,
                ..Failures::new(now)
            };
        }
        if user.in_flight == 0 && user.count == 0 {
            state.users.remove(&self.user);
        }
        let addr = state.addresses.touch(&self.addr, || Failures::new(now));
        addr.in_flight = addr.in_flight.saturating_sub(1);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.release(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tries a login and fails it at once; `Err` is the wait it was refused with.
    fn fail(
        throttle: &LoginThrottle,
        user: &str,
        addr: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        throttle
            .begin(user, addr, now)
            .map(|attempt| attempt.failed(now))
    }

    #[test]
    fn delays_grow_after_the_free_failures_and_a_success_clears_them() {
        let throttle = LoginThrottle::default();
        let addr: IpAddr = [10, 0, 0, 1].into();
        let now = Instant::now();
        for _ in 0..=USER.free {
            assert_eq!(fail(&throttle, "alice", addr, now), Ok(()));
        }
        assert_eq!(
            fail(&throttle, "alice", addr, now),
            Err(Duration::from_secs(1))
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(fail(&throttle, "alice", addr, later), Ok(()));
        assert_eq!(
            fail(&throttle, "alice", addr, later),
            Err(Duration::from_secs(2))
        );
        // Others from the same address are not held up by alice's failures alone.
        assert!(throttle.begin("bob", addr, later).is_ok());
        let much_later = later + Duration::from_secs(2);
        throttle
            .begin("alice", [10, 0, 0, 2].into(), much_later)
            .unwrap()
            .succeeded();
        assert!(throttle.begin("alice", addr, much_later).is_ok());
    }

    #[test]
    fn many_failures_from_one_address_delay_every_name_from_it() {
        let throttle = LoginThrottle::default();
        let addr: IpAddr = [10, 0, 0, 9].into();
        let now = Instant::now();
        for i in 0..=ADDRESS.free {
            fail(&throttle, &format!("user{i}"), addr, now).unwrap();
        }
        assert!(throttle.begin("someone-new", addr, now).is_err());
        assert!(throttle
            .begin("someone-new", [10, 0, 0, 8].into(), now)
            .is_ok());
    }

    #[test]
    fn attempts_in_flight_count_against_the_free_failures() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        // Two hundred guesses at once, from as many addresses: only the free ones are checked.
        let addr = |i: u8| IpAddr::from([10, 1, 0, i]);
        let attempts: Vec<_> = (0..200)
            .filter_map(|i| throttle.begin("carol", addr(i), now).ok())
            .collect();
        assert_eq!(attempts.len(), USER.free as usize);
        // An attempt that ends without an outcome gives its place back.
        let mut attempts = attempts.into_iter();
        drop(attempts.next());
        let again = throttle.begin("carol", addr(1), now).expect("a free place");
        for attempt in attempts.chain([again]) {
            attempt.failed(now);
        }
        // Past the free failures, one at a time, and each failure delays the next.
        let fourth = throttle.begin("carol", addr(2), now).expect("one more");
        assert_eq!(
            throttle.begin("carol", addr(3), now).err(),
            Some(IN_FLIGHT_WAIT)
        );
        fourth.failed(now);
        assert_eq!(
            throttle.begin("carol", addr(4), now).err(),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn filling_the_map_with_other_names_does_not_reset_a_victim() {
        let throttle = LoginThrottle::with_capacity(100);
        let (victim_addr, filler_addr): (IpAddr, IpAddr) =
            ([10, 2, 0, 1].into(), [10, 3, 0, 1].into());
        let mut now = Instant::now();
        for i in 0..1000 {
            // The victim's guesser keeps trying (and is refused while delayed) ...
            if i % 50 == 0 {
                let _ = fail(&throttle, "victim", victim_addr, now);
            }
            // ... while the attacker fills the map with names that failed once, from an
            // address whose own delays the test skips over.
            let _ = fail(&throttle, &format!("filler{i}"), filler_addr, now);
            now += Duration::from_millis(100);
            throttle.lock().addresses.remove(&filler_addr);
        }
        let wait = throttle.begin("victim", [10, 4, 0, 1].into(), now).err();
        assert!(wait.is_some(), "the victim's delay was forgotten");
        assert!(throttle.lock().users.len() <= 100);
    }
}
