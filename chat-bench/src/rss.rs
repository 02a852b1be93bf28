//! The `rss` workload: each server's resident memory (`VmRSS`) with `--clients` users logged in
//! and living as real clients, then during a storm of `--storm` password logins by other users
//! (sampled every 100 ms for the peak), and after it, once the storm's connections are closed.
//!
//! It prints one `rss` line per server (`server=NAME`) and one for their sum (`server=all`,
//! whose peak is the highest summed sample), and the storm's own `storm` line.

use crate::args::{count, RssArgs};
use crate::logins::farm_logins;
use crate::messages::discover;
use crate::population::{check_open_files, register, Population};
use crate::procs;
use crate::report::{Line, Verdict};
use std::collections::HashMap;
use std::time::Duration;

/// Between two readings during the storm.
const SAMPLE: Duration = Duration::from_millis(100);

/// One server's readings, in KiB.
struct Readings {
    name: String,
    pid: u32,
    before: u64,
    peak: u64,
    after: u64,
}

pub async fn run(args: RssArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let pids = if args.pids.is_empty() {
        procs::find_servers(&args.farm.servers)?
    } else {
        args.pids.clone()
    };
    let farm = discover(&args.farm).await?;
    check_open_files(args.clients + args.storm)?;
    let stormers = farm.names_by_home(
        &format!("r{}-", args.farm.limits.run_id()),
        count(args.storm),
    );
    register(&farm, &stormers, &args.farm, deadline).await?;
    let (population, first) =
        Population::start_reported(&farm, args.clients, &args.farm, &args.users, deadline).await?;
    let settle = Duration::from_millis(args.settle_ms);
    tokio::time::sleep(settle).await;
    let mut readings = Vec::new();
    for pid in &pids {
        let before = procs::rss_kib(*pid)?;
        readings.push(Readings {
            name: procs::server_name(*pid)?,
            pid: *pid,
            before,
            peak: before,
            after: before,
        });
    }
    let mut total_peak = readings.iter().map(|reading| reading.before).sum::<u64>();
    let storm = farm_logins(
        &farm,
        &stormers,
        &args.farm.password,
        args.farm.limits.concurrency(),
    );
    tokio::pin!(storm);
    let storm = loop {
        tokio::select! {
            storm = &mut storm => break Some(storm),
            () = tokio::time::sleep(SAMPLE) => {}
            () = tokio::time::sleep_until(deadline) => break None,
        }
        let mut total = 0;
        for reading in &mut readings {
            let now = procs::rss_kib(reading.pid)?;
            reading.peak = reading.peak.max(now);
            total += now;
        }
        total_peak = total_peak.max(total);
    };
    let Some(mut storm) = storm else {
        population.stop();
        return Ok(Verdict::timed_out());
    };
    storm.print("storm");
    // Closing the storm's connections logs its users out again.
    storm.conns.clear();
    tokio::time::sleep(settle).await;
    for reading in &mut readings {
        reading.after = procs::rss_kib(reading.pid)?;
        reading.peak = reading.peak.max(reading.after);
    }
    let seats = population.board.snapshot();
    population.stop();
    let mut users_on: HashMap<&str, u64> = HashMap::new();
    for server in seats.iter().filter_map(|seat| seat.server.as_deref()) {
        *users_on.entry(server).or_default() += 1;
    }
    for reading in &readings {
        print_line(
            reading,
            users_on.get(reading.name.as_str()).copied().unwrap_or(0),
        );
    }
    let sum = |of: fn(&Readings) -> u64| readings.iter().map(of).sum::<u64>();
    print_line(
        &Readings {
            name: "all".to_string(),
            pid: 0,
            before: sum(|reading| reading.before),
            peak: total_peak,
            after: sum(|reading| reading.after),
        },
        users_on.values().sum(),
    );
    let mut verdict = Verdict {
        timed_out: first.timed_out,
        ..Verdict::default()
    };
    verdict.expect_zero("failed logins", first.failed);
    verdict.expect_zero("failed logins in the storm", storm.failed);
    Ok(verdict)
}

fn print_line(reading: &Readings, users: u64) {
    Line::new("rss")
        .field("server", &reading.name)
        .field("pid", reading.pid)
        .field("users", users)
        .field("rss_before_kb", reading.before)
        .field("rss_peak_kb", reading.peak)
        .field("rss_after_kb", reading.after)
        .field(
            "after_vs_before_pct",
            percent(reading.after, reading.before),
        )
        .print();
}

/// `after` as a percentage of `before`, rounded.
fn percent(after: u64, before: u64) -> u64 {
    (after * 100 + before / 2) / before.max(1)
}
