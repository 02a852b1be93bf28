//! `chat-bench`: load for the chat farm, and the same direct-message load for IRC networks,
//! so that the farm is measured side by side with its peers.
//!
//! - `farm`: reaching the farm: the ring, names placed on chosen homes, logging in at home.
//! - `logins`: many logins at once with bounded concurrency, timed.
//! - `ledger`: what was sent and delivered, the windows, doubles and misses.
//! - `flow`: the hot loop of one farm connection (a reader and a writer task).
//! - `messages`: the `dm` and `group` workloads.
//! - `storm`, `idle`: logins at once, idle connections.
//! - `login`: the one login of chat-bench (where a resume ticket would go).
//! - `board`, `user`, `population`: simulated users living as the real client does (heartbeat,
//!   failover, going home), where each is logged in, and many of them started at once.
//! - `chat`: simulated users that chat (`crowd --messages`), each message kept with its id
//!   until the farm answers it, as the real client keeps it.
//! - `logins`, `crowd`, `failover`, `rss`, `lists` (in `population`, `crowd`, `failover`,
//!   `rss`, `lists`): the workloads at scale.
//! - `procs`: what `/proc` says of the servers (memory, names).
//! - `irc`: the `dm` workload spoken as IRC.
//! - `report`: the `key=value` lines and the latency histograms.
//!
//! Every phase prints **one line of `key=value` pairs on standard output**, a stable interface
//! that `scripts/bench` and the tests parse; everything else goes to standard error. **Every
//! run stops by itself** (`--timeout-secs`), and the exit status is non-zero when it timed out
//! or counted errors, missing or doubled messages. **It never trusts an unknown key**: the
//! farm's public key must be given.

mod args;
mod board;
mod chat;
mod cpu;
mod crowd;
mod failover;
mod farm;
mod flow;
mod idle;
mod irc;
mod ledger;
mod lists;
mod login;
mod logins;
mod messages;
mod population;
mod procs;
mod report;
mod rss;
mod stop_watch;
mod storm;
mod user;

use anyhow::Context as _;
use args::{Cli, Workload};
use clap::Parser as _;
use report::Verdict;

/// mimalloc rather than glibc's malloc, as in the servers: thousands of simulated clients on
/// one machine must cost as little as they can, or the load generator, not the farm, is what
/// a run measures (glibc's malloc and free were 15% of its CPU under `failover`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let code = match run(cli) {
        Ok(verdict) if verdict.is_clean() => 0,
        Ok(verdict) => {
            if verdict.timed_out {
                eprintln!("chat-bench: the run timed out");
            }
            for problem in &verdict.problems {
                eprintln!("chat-bench: {problem}");
            }
            1
        }
        Err(err) => {
            eprintln!("chat-bench: {err:#}");
            1
        }
    };
    // Exit without waiting for tasks still blocked on sockets that will not answer.
    std::process::exit(code)
}

fn run(cli: Cli) -> anyhow::Result<Verdict> {
    raise_open_files_limit();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let limits = cli.workload.limits();
    let deadline = limits.deadline();
    let workload = async move {
        match cli.workload {
            Workload::Dm(args) => messages::dm(args, deadline).await,
            Workload::Group(args) => messages::group(args, deadline).await,
            Workload::Storm(args) => storm::run(args, deadline).await,
            Workload::Idle(args) => idle::run(args, deadline).await,
            Workload::Failover(args) => failover::run(args, deadline).await,
            Workload::Irc(args) => irc::run(args, deadline).await,
            Workload::Logins(args) => population::logins(args, deadline).await,
            Workload::Crowd(args) => crowd::run(args, deadline).await,
            Workload::Rss(args) => rss::run(args, deadline).await,
            Workload::Lists(args) => lists::run(args, deadline).await,
        }
    };
    runtime.block_on(async move {
        // The workloads stop measuring at the deadline and report; this is the backstop for
        // a phase that cannot.
        match tokio::time::timeout_at(deadline + args::REPORT_GRACE, workload).await {
            Ok(verdict) => verdict,
            Err(_) => Ok(Verdict::timed_out()),
        }
    })
}

/// Raises the soft limit of open files to the hard limit: every client is a socket.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                eprintln!(
                    "warning: cannot raise the open files limit from {soft} to {hard}: {err}"
                );
            }
        }
        Ok(_) => {}
        Err(err) => eprintln!("warning: cannot read the open files limit: {err}"),
    }
}
