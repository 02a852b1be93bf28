//! The `failover` workload: users logged in at home, one server killed with SIGKILL, and the
//! time until each of its users is logged in again on another server.
//!
//! Each connection is watched for its end. When a displaced user's connection ends, it
//! reconnects exactly as the real client does, with `chat_client::failover::reconnect`: the
//! user's ring order (home, backup, then clockwise) with the lost server last, short connect
//! timeouts, jittered backoff, and the login again. The time counted runs from the kill to
//! that login's answer, so it includes noticing the loss.

use crate::args::{count, FailoverArgs};
use crate::farm::Conn;
use crate::idle::flag_value;
use crate::logins::farm_logins;
use crate::messages::discover;
use crate::report::{Latencies, Line, Verdict};
use anyhow::{anyhow, Context as _};
use chat_client::connection::ConnectOptions;
use chat_client::failover::{self, LostServer, Plan, FAILOVER_CONNECT_TIMEOUT};
use chat_client::login::Credentials;
use chat_proto::ServerFrame;
use futures::StreamExt as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How a watched connection ended up.
enum Watched {
    /// Logged in again elsewhere, this long after the kill.
    Back(Duration),
    /// Its connection ended, though its server was not the one killed.
    LostElsewhere,
}

pub async fn run(args: FailoverArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let victim = server_name(args.kill_pid)?;
    let farm = discover(&args.farm).await?;
    let victim_addr = farm
        .ring
        .addr_of(&victim)
        .ok_or_else(|| anyhow!("{victim} (pid {}) is not on the ring", args.kill_pid))?
        .to_string();
    let run_id = args.farm.limits.run_id();
    let users = farm.names_by_home(&format!("f{run_id}-"), count(args.clients));
    let password = &args.farm.password;
    let logins = farm_logins(&farm, &users, password, args.farm.limits.concurrency()).await;
    logins.print("login");
    let conns = logins.all()?;
    let options = ConnectOptions {
        timeout: FAILOVER_CONNECT_TIMEOUT,
        heartbeat: None,
        trust: farm.trust.clone(),
    };
    let killed_at = Instant::now();
    let watchers: Vec<(bool, JoinHandle<anyhow::Result<Watched>>)> = users
        .iter()
        .zip(conns)
        .map(|(user, conn)| {
            let displaced = conn.server == victim;
            let plan = Plan {
                seeds: args.farm.servers.clone(),
                ring: Some(farm.ring.clone()),
                credentials: Some(Credentials::password(user.clone(), password.clone())),
                lost: Some(LostServer {
                    name: victim.clone(),
                    addr: victim_addr.clone(),
                }),
                options: options.clone(),
            };
            (
                displaced,
                tokio::spawn(watch(conn, displaced, plan, killed_at)),
            )
        })
        .collect();
    kill(Pid::from_raw(args.kill_pid), Signal::SIGKILL)
        .with_context(|| format!("cannot kill pid {}", args.kill_pid))?;
    let (displaced, others): (Vec<_>, Vec<_>) =
        watchers.into_iter().partition(|(displaced, _)| *displaced);
    let n_displaced = displaced.len();
    let mut latencies = Latencies::new();
    let mut failed = 0u64;
    let mut timed_out = false;
    for (_, watcher) in displaced {
        match tokio::time::timeout_at(deadline, watcher).await {
            Ok(Ok(Ok(Watched::Back(took)))) => latencies.record(took),
            Ok(Ok(Ok(Watched::LostElsewhere))) => failed += 1,
            Ok(Ok(Err(err))) => {
                eprintln!("error: {err:#}");
                failed += 1;
            }
            Ok(Err(join_error)) => {
                eprintln!("error: a failover task failed: {join_error}");
                failed += 1;
            }
            Err(_) => {
                timed_out = true;
                failed += 1;
            }
        }
    }
    // The other users stay where they are: a watcher that has ended lost its connection.
    let mut errors = 0u64;
    for (_, watcher) in others {
        if watcher.is_finished() {
            errors += 1;
        }
        watcher.abort();
    }
    Line::new("failover")
        .field("clients", n_displaced)
        .field("ok", latencies.count())
        .field("failed", failed)
        .millis(&latencies)
        .field("errors", errors)
        .field("server", &victim)
        .print();
    let mut verdict = Verdict {
        timed_out,
        ..Verdict::default()
    };
    verdict.expect_zero("users not logged in again", failed);
    verdict.expect_zero("users of other servers who lost their connection", errors);
    if n_displaced == 0 {
        verdict.problem(format!("no user was logged in on {victim}"));
    }
    Ok(verdict)
}

/// Waits for the connection to end; for a displaced user, reconnects as the real client does.
async fn watch(
    mut conn: Conn,
    displaced: bool,
    plan: Plan,
    killed_at: Instant,
) -> anyhow::Result<Watched> {
    // Anything but a delivery or a reply ends the connection: a goodbye, an error, the end.
    while let Some(Ok(ServerFrame::Deliver(_) | ServerFrame::Reply { .. })) =
        conn.framed.next().await
    {}
    if !displaced {
        return Ok(Watched::LostElsewhere);
    }
    let user = plan
        .credentials
        .as_ref()
        .map(|credentials| credentials.user.clone())
        .unwrap_or_default();
    let reconnected = failover::reconnect(plan)
        .await
        .with_context(|| format!("{user} could not reconnect"))?;
    let took = killed_at.elapsed();
    match reconnected.relogin {
        failover::Relogin::LoggedIn(_) => {
            reconnected.moved.connection.close().await;
            Ok(Watched::Back(took))
        }
        other => Err(anyhow!(
            "{user} reconnected but is not logged in: {other:?}"
        )),
    }
}

/// The `--name` of the chat-server process `pid`.
fn server_name(pid: i32) -> anyhow::Result<String> {
    let path = format!("/proc/{pid}/cmdline");
    let cmdline = std::fs::read(&path).with_context(|| format!("cannot read {path}"))?;
    let args: Vec<String> = cmdline
        .split(|byte| *byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    flag_value(&args, "--name")
        .with_context(|| format!("pid {pid} has no --name flag: is it a chat-server?"))
}
