//! The admin console: commands read line by line from the server's standard input, or one at
//! a time from the admin socket (`chat-server admin <command>`).
//!
//! The lists (`users`, `groups`, `active-users`, `users <group>`) are read and written a page
//! at a time (keyset pages of the store, or of the lists in memory), so an answer is never held
//! whole, whatever the number of users and groups.
//!
//! The end of standard input only ends the console; the server keeps running.
//!
//! **A command that fails says so in a line that starts with `error: `**, and no other line
//! does (names hold no colon or space), so that `chat-server admin` can exit with status 1.

use crate::commands::{online_page, LoginCounts};
use crate::farm::Farm;
use crate::hub::Hub;
use crate::links::Links;
use crate::members::Members;
use crate::paging::split_page;
use crate::presence::Presence;
use crate::store::{Store, StoreError};
use chat_proto::MAX_PAGE;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::time::timeout;

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

/// How the line of a failed command starts.
pub const ERROR: &str = "error: ";

/// How long one page of an answer may take to write: a reader that stops reading is left.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let mut stdout = tokio::io::stdout();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Err(err) = execute(&ctx, line, &mut stdout).await {
            tracing::warn!(%err, "cannot write the console's answer");
        }
    }
    tracing::debug!("console input closed; the server keeps running");
}

/// Runs one console command and writes its answer to `out`, each line ending in a newline.
/// Lists are read and written a page at a time, so no answer is ever held whole, however long.
pub async fn execute<W: AsyncWrite + Unpin>(
    ctx: &ConsoleContext,
    line: &str,
    out: &mut W,
) -> io::Result<()> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let size = MAX_PAGE as usize;
    let answer = match words.as_slice() {
        ["users"] => {
            let page = |after: Option<String>| async move {
                let users = ctx.store.users_after(after.as_deref(), size + 1).await?;
                Ok(split_page(users, size))
            };
            return write_pages(out, page, |_| String::new()).await;
        }
        ["users", group] => return write_members(ctx, group.trim_start_matches('#'), out).await,
        ["groups"] => {
            let page = |after: Option<String>| async move {
                let groups = ctx.store.groups_after(after.as_deref(), size + 1).await?;
                Ok(split_page(groups, size))
            };
            return write_pages(out, page, |_| String::new()).await;
        }
        ["active-users"] => {
            let page = |after: Option<String>| async move {
                Ok(online_page(&ctx.hub, &ctx.presence, after.as_deref(), size))
            };
            return write_pages(out, page, |user| where_online(ctx, user)).await;
        }
        ["servers"] => servers(ctx).await,
        ["links"] => Ok(links(ctx)),
        ["thread-count"] => Ok(thread_count()),
        ["logins"] => Ok(ctx.logins.to_string()),
        ["help"] => Ok(HELP.to_owned()),
        _ => Ok(format!("{ERROR}unknown command: {line} (try help)")),
    };
    let answer = answer.unwrap_or_else(|err| format!("{ERROR}{err}"));
    emit(out, &format!("{answer}\n")).await
}

/// Writes a list one page at a time, one line per name: `page(after)` reads the names after the
/// cursor and whether more follow, and `details(name)` is what follows the name on its line.
/// "(none)" stands for an empty list; a failure midway ends the answer with an error line.
async fn write_pages<W, F, Fut>(
    out: &mut W,
    mut page: F,
    details: impl Fn(&str) -> String,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<String>, bool), StoreError>>,
{
    let mut after = None;
    let mut any = false;
    loop {
        let (names, more) = match page(after.take()).await {
            Ok(page) => page,
            Err(err) => return emit(out, &format!("{ERROR}{err}\n")).await,
        };
        let mut text = String::new();
        for name in &names {
            let _ = writeln!(text, "{name}{}", details(name));
        }
        any |= !names.is_empty();
        if !any && !more {
            text.push_str("(none)\n");
        }
        emit(out, &text).await?;
        after = names.last().cloned();
        if !more || after.is_none() {
            return Ok(());
        }
    }
}

/// The members of a group as group sends here see them, a page of lines at a time.
async fn write_members<W: AsyncWrite + Unpin>(
    ctx: &ConsoleContext,
    group: &str,
    out: &mut W,
) -> io::Result<()> {
    let members = match ctx.members.get(group).await {
        Ok(Some(members)) => members,
        Ok(None) => return emit(out, &format!("{ERROR}no such group: #{group}\n")).await,
        Err(err) => return emit(out, &format!("{ERROR}{err}\n")).await,
    };
    if members.is_empty() {
        return emit(out, "(none)\n").await;
    }
    for page in members.chunks(MAX_PAGE as usize) {
        let mut text = page.join("\n");
        text.push('\n');
        emit(out, &text).await?;
    }
    Ok(())
}

/// Writes `text`, giving up on a reader that stops reading.
async fn emit<W: AsyncWrite + Unpin>(out: &mut W, text: &str) -> io::Result<()> {
    let written = async {
        out.write_all(text.as_bytes()).await?;
        out.flush().await
    };
    match timeout(WRITE_TIMEOUT, written).await {
        Ok(written) => written,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the reader of the answer stopped reading",
        )),
    }
}

/// Where `user` is logged in, as an `active-users` line goes on after the name: here with the
/// number of sessions, and each other server.
fn where_online(ctx: &ConsoleContext, user: &str) -> String {
    let mut text = String::new();
    let mut servers = ctx.presence.servers_of(user);
    let n_sessions = ctx.hub.n_sessions(user);
    if n_sessions > 0 {
        servers.push(ctx.name.clone());
        servers.sort();
    }
    for (idx, server) in servers.iter().enumerate() {
        if idx > 0 {
            let _ = write!(text, "\n{user}");
        }
        let _ = write!(text, " server={server}");
        if *server == ctx.name && n_sessions > 0 {
            let _ = write!(text, " sessions={n_sessions}");
        }
    }
    text
}

/// Every registered server: whether it is live, where, its link from here, how many users are
/// logged in on it, and how many registered users the ring gives it.
async fn servers(ctx: &ConsoleContext) -> Result<String, StoreError> {
    let view = ctx.farm.view();
    let mut homed: HashMap<&str, usize> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let size = MAX_PAGE as usize;
        let users = ctx.store.users_after(after.as_deref(), size).await?;
        for user in &users {
            if let Some(home) = view.ring.home(user) {
                *homed.entry(home).or_default() += 1;
            }
        }
        if users.len() < size {
            break;
        }
        after = users.last().cloned();
    }
    let online = ctx.presence.counts();
    let mut out = String::new();
    for server in &view.servers {
        let (link, n_online) = if server.name == ctx.name {
            ("self", ctx.hub.n_users())
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

fn list(lines: &[String]) -> String {
    if lines.is_empty() {
        "(none)".to_owned()
    } else {
        lines.join("\n")
    }
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
