//! What a run prints: one line of `key=value` pairs per phase on standard output, and the
//! latency summaries in those lines.
//!
//! The keys are a stable interface (the README lists them): scripts split the line on spaces
//! and each field on its first `=`. Values never contain spaces.

use hdrhistogram::Histogram;
use std::fmt::{Display, Write as _};
use std::time::Duration;

/// The longest latency a histogram holds, in microseconds; longer ones count as this.
const MAX_LATENCY_US: u64 = 600_000_000;

/// Latencies in microseconds, with 3 significant digits.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    pub fn new() -> Latencies {
        Latencies(
            Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("the histogram's bounds are valid"),
        )
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.clamp(1, MAX_LATENCY_US));
    }

    pub fn add(&mut self, other: &Latencies) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    fn quantile_us(&self, quantile: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(quantile)
        }
    }

    fn max_us(&self) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.max()
        }
    }
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies::new()
    }
}

/// One output line, built field by field.
pub struct Line(String);

impl Line {
    /// A line for the phase `phase`.
    pub fn new(phase: &str) -> Line {
        Line(format!("phase={phase}"))
    }

    pub fn field(mut self, key: &str, value: impl Display) -> Line {
        let _ = write!(self.0, " {key}={value}");
        self
    }

    /// `p50_us`, `p99_us`, `p999_us` and `max_us`.
    pub fn micros(self, latencies: &Latencies) -> Line {
        self.field("p50_us", latencies.quantile_us(0.50))
            .field("p99_us", latencies.quantile_us(0.99))
            .field("p999_us", latencies.quantile_us(0.999))
            .field("max_us", latencies.max_us())
    }

    /// `p50_ms`, `p99_ms` and `max_ms`, rounded to whole milliseconds.
    pub fn millis(self, latencies: &Latencies) -> Line {
        let ms = |us: u64| (us + 500) / 1000;
        self.field("p50_ms", ms(latencies.quantile_us(0.50)))
            .field("p99_ms", ms(latencies.quantile_us(0.99)))
            .field("max_ms", ms(latencies.max_us()))
    }

    /// A rate per second with one decimal.
    pub fn rate(self, key: &str, count: u64, elapsed: Duration) -> Line {
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 { count as f64 / secs } else { 0.0 };
        self.field(key, format!("{rate:.1}"))
    }

    /// Prints the line on standard output.
    pub fn print(self) {
        println!("{}", self.0);
    }

    #[cfg(test)]
    fn text(&self) -> &str {
        &self.0
    }
}

/// What went wrong in a run, for the exit status and standard error.
#[derive(Debug, Default)]
pub struct Verdict {
    pub timed_out: bool,
    pub problems: Vec<String>,
}

impl Verdict {
    /// A run that stopped at its deadline before it could measure.
    pub fn timed_out() -> Verdict {
        Verdict {
            timed_out: true,
            problems: Vec::new(),
        }
    }

    pub fn problem(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// Notes a count that should have been zero.
    pub fn expect_zero(&mut self, what: &str, count: u64) {
        if count > 0 {
            self.problem(format!("{count} {what}"));
        }
    }

    pub fn is_clean(&self) -> bool {
        !self.timed_out && self.problems.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_lists_fields_in_order() {
        let mut latencies = Latencies::new();
        for ms in 1..=100 {
            latencies.record(Duration::from_millis(ms));
        }
        let line = Line::new("dm")
            .field("clients", 2)
            .rate("msgs_per_s", 30, Duration::from_secs(2))
            .millis(&latencies);
        assert_eq!(
            line.text(),
            "phase=dm clients=2 msgs_per_s=15.0 p50_ms=50 p99_ms=99 max_ms=100"
        );
    }

    #[test]
    fn empty_latencies_read_as_zero() {
        let line = Line::new("x").micros(&Latencies::new());
        assert_eq!(line.text(), "phase=x p50_us=0 p99_us=0 p999_us=0 max_us=0");
    }
}
