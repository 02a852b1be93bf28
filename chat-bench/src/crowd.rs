//! The `crowd` workload: users that log in and then live as real clients (heartbeat, failover,
//! going home) until standard input closes or the run's timeout, so that a test can kill and
//! restart servers under their load. It prints the `login` line once every first login has
//! ended, the `online` line once every user is logged in (those whose first login was lost
//! log in again, as the client does), and the `crowd` line at the end, after giving the users
//! `--settle-secs` to be logged in somewhere.

use crate::args::{count, CrowdArgs};
use crate::board::Seat;
use crate::messages::discover;
use crate::population::{names, Population};
use crate::report::{Line, Verdict};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

pub async fn run(args: CrowdArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let farm = discover(&args.farm).await?;
    let users = names(&farm, &args.farm, count(args.clients));
    let n_users = users.len();
    let (population, first) =
        Population::start(&farm, users, &args.farm, &args.users, deadline).await?;
    let all_in = |seats: &[Seat]| {
        seats
            .iter()
            .all(|seat| seat.failed || seat.server.is_some())
    };
    first
        .fields(Line::new("login"), n_users, first.dropped)
        .print();
    let started = std::time::Instant::now();
    population.board.wait_until(deadline, all_in).await;
    let seats = population.board.snapshot();
    Line::new("online")
        .field("clients", n_users)
        .field(
            "online",
            seats.iter().filter(|seat| seat.server.is_some()).count(),
        )
        .field("failed", seats.iter().filter(|seat| seat.failed).count())
        .field("elapsed_ms", started.elapsed().as_millis())
        .print();
    tokio::select! {
        () = stdin_closed() => {}
        () = tokio::time::sleep_until(deadline) => {}
    }
    let settle_end = tokio::time::Instant::now() + Duration::from_secs(args.settle_secs);
    population.board.wait_until(settle_end, all_in).await;
    let seats = population.board.snapshot();
    population.stop();
    let sum = |of: fn(&Seat) -> u64| seats.iter().map(of).sum::<u64>();
    let failed = sum(|seat| u64::from(seat.failed));
    let offline = sum(|seat| u64::from(!seat.failed && seat.server.is_none()));
    Line::new("crowd")
        .field("clients", n_users)
        .field("logins", sum(|seat| seat.logins.len() as u64))
        .field("dropped", sum(|seat| u64::from(seat.dropped)))
        .field("lost", sum(|seat| u64::from(seat.lost)))
        .field("failed", failed)
        .field("offline", offline)
        .print();
    let mut verdict = Verdict::default();
    verdict.expect_zero("users who gave up", failed);
    verdict.expect_zero("users not logged in at the end", offline);
    Ok(verdict)
}

/// Returns once standard input is closed (or cannot be read).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}
