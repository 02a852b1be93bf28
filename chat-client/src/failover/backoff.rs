//! The pauses between two walks of a reconnect: exponential, capped, and jittered.

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

    /// The next pause, between half the current step and the whole of it; then doubles the
    /// step, up to the cap.
    pub fn pause(&mut self) -> Duration {
        let step = self.step.min(self.cap);
        self.step = step.saturating_mul(2).min(self.cap);
        let half = step / 2;
        half + half.mul_f64(random_fraction())
    }
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
