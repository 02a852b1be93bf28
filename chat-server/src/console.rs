//! The admin console: commands read line by line from the server's standard input, or one at
//! a time from the admin socket (`chat-server admin <command>`).
//!
//! The end of standard input only ends the console; the server keeps running.

use crate::commands::LoginCounts;
use crate::farm::Farm;
use crate::hub::Hub;
use crate::links::Links;
use crate::members::Members;
use crate::presence::Presence;
use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What the admin commands look at, and nothing more.
pub struct ConsoleContext {
    /// This server's name in the farm.
    pub name: String,
    pub store: Store,
    pub farm: Arc<Farm>,
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    pub links: Arc<Links>,
    /// The groups' members, as group sends here see them.
    pub members: Arc<Members>,
    /// How this server's logins went.
    pub logins: Arc<LoginCounts>,
}

const HELP: &str = "\
commands:
  users            every registered user
  users <group>    the members of a group, as group sends here see them
  groups           every group
  active-users     users logged in anywhere in the farm, with their server
  servers          the registry: each server's liveness, address, link and users
  links            this server's links, with the frames that crossed each
  thread-count     OS threads and live tokio tasks of this process
  logins           argon2 uses, ticket logins, refused and renewed tickets since start
  help             this list";

pub async fn run(ctx: Arc<ConsoleContext>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        println!("{}", execute(&ctx, line).await);
    }
    tracing::debug!("console input closed; the server keeps running");
}

/// Runs one console command and returns what to print.
pub async fn execute(ctx: &ConsoleContext, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let result = match words.as_slice() {
        ["users"] => ctx.store.all_users().await.map(|users| list(&users)),
        ["users", group] => {
            let group = group.trim_start_matches('#');
            ctx.members.get(group).await.map(|members| match members {
                Some(members) => list(&members),
                None => format!("no such group: #{group}"),
            })
        }
        ["groups"] => ctx.store.all_groups().await.map(|groups| list(&groups)),
        ["active-users"] => Ok(active_users(ctx)),
        ["servers"] => servers(ctx).await,
        ["links"] => Ok(links(ctx)),
        ["thread-count"] => Ok(thread_count()),
        ["logins"] => Ok(ctx.logins.to_string()),
        ["help"] => Ok(HELP.to_owned()),
        _ => Ok(format!("unknown command: {line} (try help)")),
    };
    result.unwrap_or_else(|err| format!("error: {err}"))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join("\n")
    }
}

fn active_users(ctx: &ConsoleContext) -> String {
    let mut lines: Vec<String> = ctx
        .hub
        .users()
        .into_iter()
        .map(|(user, n_sessions)| format!("{user} server={} sessions={n_sessions}", ctx.name))
        .collect();
    lines.extend(
        ctx.presence
            .all()
            .into_iter()
            .map(|(user, server)| format!("{user} server={server}")),
    );
    lines.sort();
    list(&lines)
}

/// Every registered server: whether it is live, where, its link from here, how many users are
/// logged in on it, and how many registered users the ring gives it.
async fn servers(ctx: &ConsoleContext) -> Result<String, StoreError> {
    let view = ctx.farm.view();
    let users = ctx.store.all_users().await?;
    let mut homed: HashMap<&str, usize> = HashMap::new();
    for user in &users {
        if let Some(home) = view.ring.home(user) {
            *homed.entry(home).or_default() += 1;
        }
    }
    let online = ctx.presence.counts();
    let mut out = String::new();
    for server in &view.servers {
        let (link, n_online) = if server.name == ctx.name {
            ("self", ctx.hub.users().len())
        } else if ctx.links.is_up(&server.name) {
            ("up", online.get(&server.name).copied().unwrap_or(0))
        } else {
            ("down", 0)
        };
        let _ = writeln!(
            out,
            "{} {} client={} peer={} link={link} online={n_online} homed={}",
            server.name,
            if server.live { "live" } else { "down" },
            server.client_addr,
            server.peer_addr,
            homed.get(server.name.as_str()).copied().unwrap_or(0),
        );
    }
    let _ = write!(
        out,
        "ring: {} live, V={}",
        view.ring.servers().len(),
        view.vnodes
    );
    Ok(out)
}

fn links(ctx: &ConsoleContext) -> String {
    let lines: Vec<String> = ctx
        .links
        .report()
        .into_iter()
        .map(|(peer, up, stats)| {
            let state = if up { "up" } else { "down" };
            format!("{peer} {state} {}", stats.describe())
        })
        .collect();
    list(&lines)
}

fn thread_count() -> String {
    let metrics = tokio::runtime::Handle::current().metrics();
    let os_threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .map(|count| count.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!(
        "os_threads={os_threads} tokio_workers={} tokio_tasks={}",
        metrics.num_workers(),
        metrics.num_alive_tasks()
    )
}
