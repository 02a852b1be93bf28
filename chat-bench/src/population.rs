//! Many simulated users at once: their accounts registered first (bounded, not timed), then
//! their first logins, all at once with at most `--concurrency` under way and each timed, and
//! then each user living as the real client does (see `user`), on the [`Board`].
//!
//! A user whose first login is lost because its own heartbeat gave up (the server answered no
//! ping for `misses` intervals while the login waited) counts as **dropped** and its login as
//! failed; like the real client, which re-runs a login that a lost connection left unanswered,
//! it then reconnects and logs in again (which adds to the storm), and lives on. Once logged
//! in, a dropped connection fails over as the client's would.

use crate::args::{count, FarmArgs, UserArgs};
use crate::board::Board;
use crate::chat::Chatting;
use crate::farm::Farm;
use crate::login;
use crate::logins::timed;
use crate::report::{Latencies, Line, Verdict};
use crate::user::{Habits, Life};
use anyhow::bail;
use chat_client::connection::{ConnectOptions, CONNECT_TIMEOUT};
use chat_client::failover::FAILOVER_CONNECT_TIMEOUT;
use chat_client::login::Credentials;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// Open files this process needs besides one per connection: the runtime, standard streams,
/// and connections opened while others are still closing.
const SPARE_FILES: u64 = 512;

/// The names of a run's simulated users. Every workload that simulates users uses the same
/// names for the same `--run-id`, so that one run's accounts serve the next (`--registered`).
pub fn names(farm: &Farm, args: &FarmArgs, n_users: usize) -> Vec<String> {
    farm.names_by_home(&format!("u{}-", args.limits.run_id()), n_users)
}

/// Makes sure this process may hold `connections` sockets at once: the soft limit of open
/// files was raised to the hard one at start, and must leave room for them.
pub fn check_open_files(connections: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{getrlimit, Resource};
    let needed = connections + SPARE_FILES;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < needed {
        bail!(
            "{connections} connections need about {needed} open files, but this process may \
             open {soft} (hard limit {hard}); raise the limit (ulimit -n) or simulate fewer users"
        );
    }
    Ok(())
}

/// Registers `users` (a login each, on a connection closed right after), at most
/// `concurrency` at a time, and prints the `register` line; fails unless all worked.
pub async fn register(
    farm: &Arc<Farm>,
    users: &[String],
    args: &FarmArgs,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    let password: Arc<str> = Arc::from(args.password.as_str());
    let registering = timed(users, args.limits.concurrency(), |user| {
        let farm = farm.clone();
        let password = password.clone();
        async move { farm.log_in(&user, &password).await.map(drop) }
    });
    let Ok(registered) = tokio::time::timeout_at(deadline, registering).await else {
        bail!(
            "the registration of {} users did not end in time",
            users.len()
        );
    };
    registered.print("register");
    registered.all().map(drop)
}

/// The first logins of a population.
pub struct FirstLogins {
    pub latencies: Latencies,
    pub failed: u64,
    /// Of the failed: those whose own heartbeat ended the connection.
    pub dropped: u64,
    /// From the first login's start to the last one's answer.
    pub elapsed: Duration,
    pub timed_out: bool,
}

impl FirstLogins {
    /// The line's fields: clients, ok, failed, `dropped` (given: the caller may count more
    /// than the logins' own), latencies, rate.
    pub fn fields(&self, line: Line, n_users: usize, dropped: u64) -> Line {
        line.field("clients", n_users)
            .field("ok", self.latencies.count())
            .field("failed", self.failed)
            .field("dropped", dropped)
            .millis(&self.latencies)
            .rate("logins_per_s", self.latencies.count(), self.elapsed)
            .field("elapsed_ms", self.elapsed.as_millis())
    }
}

/// Simulated users, each living on its own task until [`Population::stop`].
pub struct Population {
    pub users: Vec<String>,
    pub board: Arc<Board>,
    stop: CancellationToken,
}

impl Population {
    /// `--clients` users named for this run, started as [`Population::start`] does, with
    /// their first logins printed as a `login` line.
    pub async fn start_reported(
        farm: &Arc<Farm>,
        clients: u64,
        args: &FarmArgs,
        habits_args: &UserArgs,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<(Population, FirstLogins)> {
        let users = names(farm, args, count(clients));
        let (population, first) =
            Population::start(farm, users, args, habits_args, None, deadline).await?;
        first
            .fields(Line::new("login"), population.users.len(), first.dropped)
            .print();
        Ok((population, first))
    }

    /// Registers `users` unless `--registered`, then logs each in at home at once, at most
    /// `--concurrency` under way, and starts its life; with `chatting`, each user takes its
    /// part in that traffic once logged in.
    pub async fn start(
        farm: &Arc<Farm>,
        users: Vec<String>,
        args: &FarmArgs,
        habits_args: &UserArgs,
        chatting: Option<&Chatting>,
        deadline: tokio::time::Instant,
    ) -> anyhow::Result<(Population, FirstLogins)> {
        check_open_files(users.len() as u64)?;
        if !habits_args.registered {
            register(farm, &users, args, deadline).await?;
        }
        let board = Board::new(users.len());
        let stop = CancellationToken::new();
        let heartbeat = habits_args.heartbeat();
        let habits = Habits {
            seeds: args.servers.clone(),
            options: ConnectOptions {
                timeout: FAILOVER_CONNECT_TIMEOUT,
                heartbeat,
                trust: farm.trust.clone(),
                forwarded: None,
            },
            home_poll: habits_args.home_poll(),
        };
        let first = ConnectOptions {
            timeout: CONNECT_TIMEOUT,
            heartbeat,
            trust: farm.trust.clone(),
            forwarded: None,
        };
        let places = Arc::new(Semaphore::new(args.limits.concurrency().max(1)));
        let (results_tx, mut results) = mpsc::channel(1024);
        let started = Instant::now();
        for (idx, user) in users.iter().enumerate() {
            let credentials = Credentials::password(user.clone(), args.password.clone());
            let life = Life {
                idx,
                credentials,
                ring: farm.ring.clone(),
                habits: habits.clone(),
                board: board.clone(),
                chat: chatting.map(|chatting| chatting.chat(idx, &users, stop.clone())),
            };
            let (farm, first, places, results_tx, stop) = (
                farm.clone(),
                first.clone(),
                places.clone(),
                results_tx.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut life = life;
                let place = places.acquire_owned().await;
                let began = Instant::now();
                let credentials = &life.credentials;
                let password = credentials.password.as_deref().unwrap_or_default();
                let result = login::log_in(&farm, &credentials.user, password, &first).await;
                drop(place);
                match result {
                    Ok((moved, ticket)) => {
                        life.credentials.ticket = Some(ticket);
                        let _ = results_tx.send(Ok(began.elapsed())).await;
                        life.run(moved, stop).await;
                    }
                    Err(mut failure) => {
                        let lost = failure.lost.take();
                        match &lost {
                            Some(_) => life.board.ended(life.idx, failure.dropped),
                            None => life.board.failed(life.idx, failure.dropped),
                        }
                        let _ = results_tx.send(Err(failure)).await;
                        if let Some(lost) = lost {
                            life.rejoin(lost, stop).await;
                        }
                    }
                }
            });
        }
        drop(results_tx);
        let mut logins = FirstLogins {
            latencies: Latencies::new(),
            failed: 0,
            dropped: 0,
            elapsed: Duration::ZERO,
            timed_out: false,
        };
        const PRINTED_FAILURES: u64 = 5;
        for _ in 0..users.len() {
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some(Ok(took))) => {
                    logins.latencies.record(took);
                    logins.elapsed = started.elapsed();
                }
                Ok(Some(Err(failure))) => {
                    if logins.failed < PRINTED_FAILURES {
                        eprintln!("error: {:#}", failure.error);
                    }
                    logins.failed += 1;
                    logins.dropped += u64::from(failure.dropped);
                }
                Ok(None) => break,
                Err(_) => {
                    logins.timed_out = true;
                    break;
                }
            }
        }
        let answered = logins.latencies.count() + logins.failed;
        logins.failed += users.len() as u64 - answered;
        let population = Population { users, board, stop };
        Ok((population, logins))
    }

    /// Ends every user's life; their connections close.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// The `logins` workload: the users log in at once, then hold their connections for
/// `--hold-secs` while their heartbeats run; a connection its heartbeat ended counts as
/// dropped, whether during the login or after.
pub async fn logins(
    args: crate::args::LoginsArgs,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Verdict> {
    let farm = crate::messages::discover(&args.farm).await?;
    let users = names(&farm, &args.farm, count(args.clients));
    let n_users = users.len();
    let (population, first) =
        Population::start(&farm, users, &args.farm, &args.users, None, deadline).await?;
    let hold_end = tokio::time::Instant::now() + Duration::from_secs(args.hold_secs);
    tokio::time::sleep_until(hold_end.min(deadline)).await;
    let seats = population.board.snapshot();
    population.stop();
    let dropped: u64 = seats.iter().map(|seat| u64::from(seat.dropped)).sum();
    let lost: u64 = seats.iter().map(|seat| u64::from(seat.lost)).sum();
    first
        .fields(Line::new("logins"), n_users, dropped)
        .field("dropped_in_login", first.dropped)
        .field("lost", lost)
        .field("hold_s", args.hold_secs)
        .print();
    let mut verdict = Verdict {
        timed_out: first.timed_out,
        ..Verdict::default()
    };
    verdict.expect_zero("failed logins", first.failed);
    verdict.expect_zero("connections dropped by their heartbeat", dropped);
    Ok(verdict)
}
