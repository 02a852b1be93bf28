//! The `failover` workload: users logged in at home and living as real clients (see `user`),
//! one server killed with SIGKILL, and the time until each of its users is logged in again on
//! another server; with `--restart-cmd`, the server started again and the time until each of
//! them is home again.
//!
//! A displaced user notices the loss (its socket ends at once, or its heartbeat gives up) and
//! reconnects as the real client does, with `chat_client::failover::reconnect`: the user's
//! ring order with the lost server last, short connect timeouts, jittered backoff, and the
//! login again. The failover time runs from the kill to that login's answer. The way home is
//! whatever the client does (today its look at home every second, `check_home`; a push from the
//! server would be handled in `user`); its time runs from the moment the restarted server
//! first answers a ring request at its address.

use crate::args::FailoverArgs;
use crate::board::Seat;
use crate::farm::Conn;
use crate::messages::discover;
use crate::population::Population;
use crate::procs;
use crate::report::{Latencies, Line, Verdict};
use anyhow::{anyhow, bail, Context as _};
use chat_client::handshake::ServerTrust;
use chat_proto::{Request, Response};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Between two attempts to reach the restarted server.
const READY_POLL: Duration = Duration::from_millis(20);

pub async fn run(args: FailoverArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let victim = procs::server_name(args.kill_pid)?;
    let farm = discover(&args.farm).await?;
    let victim_addr = farm
        .ring
        .addr_of(&victim)
        .ok_or_else(|| anyhow!("{victim} (pid {}) is not on the ring", args.kill_pid))?
        .to_string();
    let (population, first) =
        Population::start_reported(&farm, args.clients, &args.farm, &args.users, deadline).await?;
    let mut verdict = Verdict {
        timed_out: first.timed_out,
        ..Verdict::default()
    };
    verdict.expect_zero("failed logins", first.failed);
    let before = population.board.snapshot();
    let displaced: Vec<usize> = (0..before.len())
        .filter(|idx| before[*idx].server.as_deref() == Some(victim.as_str()))
        .collect();
    if displaced.is_empty() {
        bail!("no user was logged in on {victim}");
    }
    let killed_at = Instant::now();
    kill(Pid::from_raw(args.kill_pid as i32), Signal::SIGKILL)
        .with_context(|| format!("cannot kill pid {}", args.kill_pid))?;
    let away = |server: &str| server != victim;
    let (latencies, failed) = timed_moves(&population, &displaced, killed_at, deadline, away).await;
    let after = population.board.snapshot();
    // Users of the other servers should have kept their connections.
    let ends = |seat: &Seat| u64::from(seat.dropped + seat.lost);
    let errors: u64 = (0..after.len())
        .filter(|idx| !displaced.contains(idx))
        .map(|idx| ends(&after[idx]) - ends(&before[idx]))
        .sum();
    let dropped: u64 = (0..after.len())
        .map(|idx| u64::from(after[idx].dropped - before[idx].dropped))
        .sum();
    Line::new("failover")
        .field("clients", displaced.len())
        .field("ok", latencies.count())
        .field("failed", failed)
        .millis(&latencies)
        .field("dropped", dropped)
        .field("errors", errors)
        .field("server", &victim)
        .print();
    verdict.timed_out |= tokio::time::Instant::now() >= deadline;
    verdict.expect_zero("users not logged in again", failed);
    verdict.expect_zero("users of other servers who lost their connection", errors);
    if let Some(command) = &args.restart_cmd {
        let home = |server: &str| server == victim;
        restart(command).await?;
        let ready_at = wait_ready(&victim_addr, &farm.trust, deadline).await?;
        let (latencies, failed) =
            timed_moves(&population, &displaced, ready_at, deadline, home).await;
        Line::new("home")
            .field("clients", displaced.len())
            .field("ok", latencies.count())
            .field("failed", failed)
            .millis(&latencies)
            .field("down_ms", ready_at.duration_since(killed_at).as_millis())
            .field("server", &victim)
            .print();
        verdict.timed_out |= tokio::time::Instant::now() >= deadline;
        verdict.expect_zero("users not home again", failed);
    }
    population.stop();
    Ok(verdict)
}

/// Waits until each of `who` has logged in at or after `since` on a server that `wanted`
/// accepts (or has given up), or until `deadline`; returns each one's time from `since`, and
/// how many did not get there.
async fn timed_moves(
    population: &Population,
    who: &[usize],
    since: Instant,
    deadline: tokio::time::Instant,
    wanted: impl Fn(&str) -> bool,
) -> (Latencies, u64) {
    let arrived = |seat: &Seat| seat.failed || seat.first_login(since, &wanted).is_some();
    let all_arrived = |seats: &[Seat]| who.iter().all(|idx| arrived(&seats[*idx]));
    population.board.wait_until(deadline, all_arrived).await;
    let seats = population.board.snapshot();
    let mut latencies = Latencies::new();
    let mut failed = 0;
    for idx in who {
        match seats[*idx].first_login(since, &wanted) {
            Some(at) => latencies.record(at.duration_since(since)),
            None => failed += 1,
        }
    }
    (latencies, failed)
}

/// Runs the restart command and fails unless it succeeds.
async fn restart(command: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .context("cannot run the --restart-cmd")?;
    if !status.success() {
        bail!("the --restart-cmd failed ({status})");
    }
    Ok(())
}

/// Waits until the server at `addr` answers a ring request; returns when it did.
async fn wait_ready(
    addr: &str,
    trust: &ServerTrust,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Instant> {
    let answers = async {
        loop {
            if let Ok(mut conn) = Conn::open(addr, trust).await {
                if let Ok(Ok(Response::Ring(_))) = conn.request(Request::Ring).await {
                    return Instant::now();
                }
            }
            tokio::time::sleep(READY_POLL).await;
        }
    };
    tokio::time::timeout_at(deadline, answers)
        .await
        .map_err(|_| anyhow!("the restarted server did not answer at {addr} in time"))
}
