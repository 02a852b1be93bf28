//! The pauses between two walks of a reconnect: exponential, capped, and jittered; and the
//! jittered period of the looks at home.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Pauses that double from a first step up to a cap, each drawn at random from the upper half
/// of its step, so that clients that lost the same server spread out.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        Backoff { step: first, cap }
    }

    /// Changes the cap of the pauses to come; the step keeps growing from where it is.
    pub fn set_cap(&mut self, cap: Duration) {
        self.cap = cap;
    }

    /// The next pause, between half the current step and the whole of it; then doubles the
    /// step, up to the cap.
    pub fn pause(&mut self) -> Duration {
        let step = self.step.min(self.cap);
        self.step = step.saturating_mul(2).min(self.cap);
        let half = step / 2;
        half + half.mul_f64(random_fraction())
    }
}

/// `period` give or take a quarter, at random, so that clients started together do not act in
/// step.
pub fn around(period: Duration) -> Duration {
    period.mul_f64(0.75 + 0.5 * random_fraction())
}

/// A number in `[0, 1)` that differs between processes and between calls: the standard
/// library's randomly keyed hasher over the clock and the process id. Good enough to spread
/// reconnects; not for anything secret.
fn random_fraction() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    // The top 53 bits fill an f64's mantissa exactly.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let steps = [100, 200, 400, 800, 1600, 2000, 2000];
        for step in steps {
            let step = Duration::from_millis(step);
            let pause = backoff.pause();
            assert!(
                pause >= step / 2 && pause <= step,
                "{pause:?} for a step of {step:?}"
            );
        }
    }

    #[test]
    fn a_raised_cap_lets_the_pauses_grow_on() {
        let mut backoff = Backoff::new(Duration::from_millis(1000), Duration::from_secs(1));
        assert!(backoff.pause() <= Duration::from_secs(1));
        backoff.set_cap(Duration::from_secs(10));
        for step in [1, 2, 4, 8, 10, 10] {
            let step = Duration::from_secs(step);
            let pause = backoff.pause();
            assert!(pause >= step / 2 && pause <= step, "{pause:?} for {step:?}");
        }
        backoff.set_cap(Duration::from_secs(2));
        assert!(backoff.pause() <= Duration::from_secs(2));
    }

    #[test]
    fn periods_are_jittered_by_a_quarter() {
        let period = Duration::from_secs(30);
        let periods: Vec<Duration> = (0..50).map(|_| around(period)).collect();
        assert!(periods
            .iter()
            .all(|p| *p >= period * 3 / 4 && *p <= period * 5 / 4));
        assert!(periods.iter().any(|p| *p != periods[0]), "{periods:?}");
    }

    #[test]
    fn jitter_spreads() {
        let fractions: Vec<f64> = (0..50).map(|_| random_fraction()).collect();
        assert!(fractions
            .iter()
            .all(|fraction| (0.0..1.0).contains(fraction)));
        let mut distinct = fractions.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert!(distinct.len() > 45, "{fractions:?}");
    }
}
