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
use crate::report::{Line, Verdict};
use anyhow::{bail, Context as _};
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

/// The summed `VmRSS` of these processes, in KiB.
fn total_rss_kib(pids: &[u32]) -> anyhow::Result<u64> {
    let mut total = 0;
    for pid in pids {
        let path = format!("/proc/{pid}/status");
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        total += vm_rss_kib(&status).with_context(|| format!("no VmRSS in {path}"))?;
    }
    Ok(total)
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `chat-server` processes whose `--listen` address is one of `servers`.
fn find_servers(servers: &[String]) -> anyhow::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|byte| *byte == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let is_server = args
            .first()
            .is_some_and(|program| program.ends_with("chat-server"));
        if is_server && flag_value(&args, "--listen").is_some_and(|addr| servers.contains(&addr)) {
            pids.push(pid);
        }
    }
    if pids.is_empty() {
        bail!("no chat-server process listens on one of --servers; give --pids");
    }
    Ok(pids)
}

/// The value of `--flag VALUE` or `--flag=VALUE` in a command line.
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == flag {
            return iter.next().cloned();
        }
        if let Some(value) = arg
            .strip_prefix(flag)
            .and_then(|rest| rest.strip_prefix('='))
        {
            return Some(value.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_flags_are_read() {
        let status = "Name:\tchat-server\nVmPeak:\t 900 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(vm_rss_kib(status), Some(12345));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
        let args: Vec<String> = ["chat-server", "--name", "s1", "--listen=127.0.0.1:7"]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
        assert_eq!(flag_value(&args, "--name").as_deref(), Some("s1"));
        assert_eq!(
            flag_value(&args, "--listen").as_deref(),
            Some("127.0.0.1:7")
        );
        assert_eq!(flag_value(&args, "--peer-listen"), None);
    }
}
