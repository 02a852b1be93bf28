//! The `crowd` workload: users that log in and then live as real clients (heartbeat, failover,
//! going home) until standard input closes or the run's timeout, so that a test can kill and
//! restart servers under their load. It prints the `login` line once every first login has
//! ended, the `online` line once every user is logged in (those whose first login was lost
//! log in again, as the client does), and the `crowd` line at the end, after giving the users
//! `--settle-secs` to be logged in somewhere.
//!
//! With `--messages`, the users chat from the `online` line on (a name is registered by its
//! first login), for as long as they live (see `chat`): each sends direct messages to the
//! next, and reads the offline log after every login, and the `crowd` line adds what the farm answered as sent (`sent=`), what
//! arrived (`delivered=`), what was sent but never arrived (`missing=`) and what arrived twice
//! under different ids (`doubled=`). Once told to stop, no user starts another message; the
//! ones under way are given the same `--settle-secs` to be answered, and then every user reads
//! its offline log a last time, as the chaos test's clients do.

use crate::args::{count, CrowdArgs};
use crate::board::Seat;
use crate::chat::Chatting;
use crate::messages::discover;
use crate::population::{names, Population};
use crate::report::{Line, Verdict};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

pub async fn run(args: CrowdArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let farm = discover(&args.farm).await?;
    let users = names(&farm, &args.farm, count(args.clients));
    let n_users = users.len();
    let chatting = (args.messages > 0).then(|| {
        let size = usize::try_from(args.size).unwrap_or(4096);
        Chatting::new(n_users, args.messages, args.rate, size)
    });
    let (population, first) = Population::start(
        &farm,
        users,
        &args.farm,
        &args.users,
        chatting.as_ref(),
        deadline,
    )
    .await?;
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
    if let Some(chatting) = &chatting {
        chatting.begin();
    }
    tokio::select! {
        () = stdin_closed() => {}
        () = tokio::time::sleep_until(deadline) => {}
    }
    let settle_end = tokio::time::Instant::now() + Duration::from_secs(args.settle_secs);
    if let Some(chatting) = &chatting {
        chatting.ledger.stop_sending();
        chatting.ledger.wait_answered(settle_end).await;
        chatting.read_finally(settle_end).await;
        chatting.ledger.wait_done(settle_end).await;
    }
    population.board.wait_until(settle_end, all_in).await;
    let seats = population.board.snapshot();
    population.stop();
    let sum = |of: fn(&Seat) -> u64| seats.iter().map(of).sum::<u64>();
    let failed = sum(|seat| u64::from(seat.failed));
    let offline = sum(|seat| u64::from(!seat.failed && seat.server.is_none()));
    let mut line = Line::new("crowd")
        .field("clients", n_users)
        .field("logins", sum(|seat| seat.logins.len() as u64))
        .field("dropped", sum(|seat| u64::from(seat.dropped)))
        .field("lost", sum(|seat| u64::from(seat.lost)))
        .field("failed", failed)
        .field("offline", offline);
    let mut verdict = Verdict::default();
    if let Some(chatting) = &chatting {
        let tally = chatting.ledger.tally();
        line = line
            .field("sent", chatting.ledger.sent_count())
            .field("delivered", tally.delivered)
            .field("missing", tally.missing)
            .field("doubled", tally.doubled)
            .field("errors", tally.errors);
        verdict.expect_zero("messages sent but not delivered", tally.missing);
        verdict.expect_zero("messages delivered twice", tally.doubled);
        verdict.expect_zero("errors", tally.errors);
    }
    line.print();
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
