//! CPU time used during a phase, by the servers under test and by chat-bench itself, read
//! from `/proc/PID/stat`. Unlike a rate, it hardly depends on what else the machine does, so
//! it compares systems measured minutes apart.

use std::time::Duration;

/// The CPU time of some processes at the start of a phase.
pub struct CpuClock {
    pids: Vec<u32>,
    servers_at_start: Duration,
    bench_at_start: Duration,
}

/// CPU time used during a phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUsed {
    /// By the servers given with --pids; `None` without them.
    pub servers: Option<Duration>,
    pub bench: Duration,
}

impl CpuClock {
    pub fn start(pids: &[u32]) -> CpuClock {
        CpuClock {
            pids: pids.to_vec(),
            servers_at_start: total(pids),
            bench_at_start: of_process("self").unwrap_or_default(),
        }
    }

    pub fn stop(&self) -> CpuUsed {
        let servers = total(&self.pids).saturating_sub(self.servers_at_start);
        CpuUsed {
            servers: (!self.pids.is_empty()).then_some(servers),
            bench: of_process("self")
                .unwrap_or_default()
                .saturating_sub(self.bench_at_start),
        }
    }
}

/// The summed CPU time of these processes; one that is gone counts as none.
fn total(pids: &[u32]) -> Duration {
    pids.iter()
        .filter_map(|pid| of_process(&pid.to_string()))
        .sum()
}

/// User plus system time of `/proc/<which>`.
fn of_process(which: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{which}/stat")).ok()?;
    let ticks = parse_stat(&stat)?;
    // Linux reports these in clock ticks, which are 100 a second on every platform it runs
    // on today (USER_HZ).
    Some(Duration::from_millis(ticks * 10))
}

/// utime + stime, fields 14 and 15 of a stat line; the command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last ')'.
fn parse_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_the_command_name() {
        let stat = "4242 (chat (serv) er) S 1 2 3 4 5 6 7 8 9 10 170 30 0 0 20 0 9";
        assert_eq!(parse_stat(stat), Some(200));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(of_process("self").is_some());
    }
}
