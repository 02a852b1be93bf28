//! Limits that keep one client from hurting the others: a request rate per connection,
//! connections and new accounts per source address, and growing delays after failed logins,
//! per user name and per source address (`throttle`).
//!
//! Every map here is bounded: by the connections open ([`AddressSlots`]), or to a fixed number
//! of keys that forgets the one touched longest ago first (`tracked`).

mod throttle;
mod tracked;

pub use throttle::{Attempt, LoginThrottle};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracked::Tracked;

/// A token bucket: `rate` requests a second on average, bursts of up to `burst`.
pub struct RateLimit {
    /// Tokens a second.
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit::per_second(f64::from(rate.max(1)), burst, Instant::now())
    }

    /// `rate` tokens a second (a fraction for slower ones), full at `now`.
    fn per_second(rate: f64, burst: u32, now: Instant) -> RateLimit {
        RateLimit {
            rate,
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
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

    /// How long until the next token.
    fn next_token(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0))
    }
}

/// How many source addresses the registration limit tracks; the oldest goes first.
const MAX_REGISTERING_ADDRESSES: usize = 100_000;

/// New accounts per source address: a token bucket per address.
pub struct Registrations {
    per_hour: u32,
    burst: u32,
    buckets: Mutex<Tracked<IpAddr, RateLimit>>,
}

impl Registrations {
    /// `per_hour` new accounts an hour from one address on average, `burst` at once.
    pub fn new(per_hour: u32, burst: u32) -> Registrations {
        Registrations {
            per_hour,
            burst,
            buckets: Mutex::new(Tracked::new(MAX_REGISTERING_ADDRESSES)),
        }
    }

    /// Takes one registration for `addr` (its [`source_of`]); otherwise how long until the
    /// next one.
    pub fn allow(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.per_hour.max(1)) / 3600.0;
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.touch(&source_of(addr), || {
            RateLimit::per_second(rate, self.burst, now)
        });
        if bucket.allow(now) {
            Ok(())
        } else {
            Err(bucket.next_token())
        }
    }
}

/// Connections open per source address, at most `max` each.
pub struct AddressSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place among its address's; given back when dropped.
pub struct AddressSlot {
    slots: Arc<AddressSlots>,
    addr: IpAddr,
}

impl AddressSlots {
    pub fn new(max: usize) -> Arc<AddressSlots> {
        Arc::new(AddressSlots {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for one more connection from `addr` (its [`source_of`]), if it has fewer than
    /// `max` open.
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<AddressSlot> {
        let addr = source_of(addr);
        let mut open = lock(&self.open);
        let count = open.entry(addr).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: self.clone(),
            addr,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.slots.open);
        if let Some(count) = open.get_mut(&self.addr) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

/// The source that the limits per address count: an IPv4 address (also when written as an
/// IPv4-mapped IPv6 one), or an IPv6 address's /64 network, which one host may well hold all
/// of.
pub fn source_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
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
    fn registrations_per_address_a_burst_then_the_hourly_rate() {
        let registrations = Registrations::new(60, 3);
        let (addr, other): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(registrations.allow(addr, now), Ok(()));
        }
        let wait = registrations.allow(addr, now).unwrap_err();
        assert!(
            wait > Duration::from_secs(59) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert_eq!(registrations.allow(other, now), Ok(()));
        assert_eq!(
            registrations.allow(addr, now + Duration::from_secs(60)),
            Ok(())
        );
    }

    #[test]
    fn an_ipv6_network_is_one_source() {
        #[track_caller]
        fn check(addr: &str, source: &str) {
            let addr: IpAddr = addr.parse().unwrap();
            assert_eq!(source_of(addr), source.parse::<IpAddr>().unwrap());
        }
        check("192.0.2.7", "192.0.2.7");
        check("::ffff:192.0.2.7", "192.0.2.7");
        check("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::");
        check("::1", "::");
    }

    #[test]
    fn connections_per_address_are_capped_and_given_back() {
        let slots = AddressSlots::new(2);
        let (addr, other): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let first = slots.admit(addr).expect("first");
        let _second = slots.admit(addr).expect("second");
        assert!(slots.admit(addr).is_none());
        assert!(slots.admit(other).is_some());
        drop(first);
        assert!(slots.admit(addr).is_some());
        // The map holds only addresses with connections open.
        assert!(lock(&slots.open).contains_key(&addr));
        assert!(!lock(&slots.open).contains_key(&other));
    }
}
