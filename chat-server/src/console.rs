//! The admin console: commands read line by line from the server's standard input.
//!
//! The end of standard input only ends the console; the server keeps running.

use crate::server::Shared;
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};

const HELP: &str = "\
commands:
  users            every registered user
  users <group>    the members of a group
  groups           every group
  active-users     users logged in on this server, with their session counts
  thread-count     OS threads and live tokio tasks of this process
  help             this list";

pub async fn run(shared: Arc<Shared>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        println!("{}", execute(&shared, line).await);
    }
    tracing::debug!("console input closed; the server keeps running");
}

/// Runs one console command and returns what to print.
pub async fn execute(shared: &Shared, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let result = match words.as_slice() {
        ["users"] => shared.store.all_users().await.map(|users| list(&users)),
        ["users", group] => {
            let group = group.trim_start_matches('#');
            shared
                .store
                .members(group)
                .await
                .map(|members| match members {
                    Some(members) => list(&members),
                    None => format!("no such group: #{group}"),
                })
        }
        ["groups"] => shared.store.all_groups().await.map(|groups| list(&groups)),
        ["active-users"] => Ok(active_users(shared)),
        ["thread-count"] => Ok(thread_count()),
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

fn active_users(shared: &Shared) -> String {
    let users = shared.hub.users();
    if users.is_empty() {
        return "(none)".to_owned();
    }
    let mut out = String::new();
    for (user, n_sessions) in users {
        let _ = writeln!(out, "{user} sessions={n_sessions} server={}", shared.name);
    }
    out.trim_end().to_owned()
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
