//! The `idle` workload: hold many connections and read what they cost the servers in
//! resident memory (`VmRSS` in `/proc/PID/status`).
//!
//! The connections are opened at each name's home server and go through the handshake and
//! the hellos; the first reading is taken before, the second after, and the difference per
//! connection is `per_conn_bytes`. With `--login` the same connections then log in, and a
//! third reading follows (`rss_login_kib`, `per_login_bytes`). That one is mostly password
//! hashing: each argon2 hash takes 19 MiB, which the servers' allocator keeps once the hash
//! is done, so a few hundred logins grow a server by gigabytes and the figure says little
//! about what a logged-in user costs. Hence the connection figure stands alone.

use crate::args::{count, IdleArgs};
use crate::farm::Conn;
use crate::logins::timed;
use crate::messages::discover;
use crate::procs::{find_servers, total_rss_kib};
use crate::report::{Line, Verdict};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long the servers are left to settle before each reading.
const SETTLE: Duration = Duration::from_secs(2);

pub async fn run(args: IdleArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let pids = if args.pids.is_empty() {
        find_servers(&args.farm.servers)?
    } else {
        args.pids.clone()
    };
    let farm = discover(&args.farm).await?;
    let run_id = args.farm.limits.run_id();
    let concurrency = args.farm.limits.concurrency();
    let users = farm.names_by_home(&format!("i{run_id}-"), count(args.clients));
    let before = total_rss_kib(&pids)?;
    let opening = timed(&users, concurrency, |user| {
        let farm = farm.clone();
        async move { Conn::open(&farm.home_addr(&user)?, &farm.trust).await }
    });
    let Ok(opened) = tokio::time::timeout_at(deadline, opening).await else {
        return Ok(Verdict::timed_out());
    };
    opened.print("connect");
    let ok = opened.ok();
    let failed = opened.failed;
    tokio::time::sleep(SETTLE).await;
    let after = total_rss_kib(&pids)?;
    let mut line = Line::new("idle")
        .field("clients", users.len())
        .field("ok", ok)
        .field("failed", failed)
        .field("servers", pids.len())
        .field("rss_before_kib", before)
        .field("rss_after_kib", after)
        .field("per_conn_bytes", per_item(after, before, ok));
    let mut verdict = Verdict::default();
    verdict.expect_zero("failed connections", failed);
    if args.login {
        let conns: Vec<(String, Conn)> = users
            .iter()
            .cloned()
            .zip(opened.conns)
            .filter_map(|(user, conn)| Some((user, conn?)))
            .collect();
        let logging_in = log_in_all(conns, &args.farm.password, concurrency);
        let Ok((n_logged_in, _held)) = tokio::time::timeout_at(deadline, logging_in).await else {
            return Ok(Verdict::timed_out());
        };
        tokio::time::sleep(SETTLE).await;
        let logged_in = total_rss_kib(&pids)?;
        line = line
            .field("logged_in", n_logged_in)
            .field("rss_login_kib", logged_in)
            .field("per_login_bytes", per_item(logged_in, after, n_logged_in));
        verdict.expect_zero("failed logins", ok - n_logged_in);
    }
    line.print();
    Ok(verdict)
}

/// The growth from `before` to `after` KiB, in bytes per item.
fn per_item(after: u64, before: u64, n_items: u64) -> u64 {
    after.saturating_sub(before) * 1024 / n_items.max(1)
}

/// Logs each user in on its connection, at most `concurrency` at a time; returns how many
/// logged in, and the connections, held.
async fn log_in_all(
    conns: Vec<(String, Conn)>,
    password: &str,
    concurrency: usize,
) -> (u64, Vec<Conn>) {
    let places = Arc::new(Semaphore::new(concurrency.max(1)));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|(user, mut conn)| {
            let places = places.clone();
            let password = password.to_string();
            tokio::spawn(async move {
                let _place = places.acquire_owned().await;
                let logged_in = match conn.log_in(&user, &password).await {
                    Ok(None) => true,
                    Ok(Some(addr)) => {
                        eprintln!("error: {user} was redirected to {addr}, away from its home");
                        false
                    }
                    Err(err) => {
                        eprintln!("error: {err:#}");
                        false
                    }
                };
                (logged_in, conn)
            })
        })
        .collect();
    let mut held = Vec::with_capacity(tasks.len());
    let mut n_logged_in = 0;
    for task in tasks {
        if let Ok((logged_in, conn)) = task.await {
            n_logged_in += u64::from(logged_in);
            held.push(conn);
        }
    }
    (n_logged_in, held)
}
