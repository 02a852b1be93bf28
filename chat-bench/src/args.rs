//! The command line: one subcommand per workload, and the flags they share.

use anyhow::Context as _;
use chat_client::handshake::ServerTrust;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod scale;

pub use scale::{CrowdArgs, FailoverArgs, ListsArgs, LoginsArgs, RssArgs, UserArgs};

/// How long after the deadline a workload may take to stop and print its figures.
pub const REPORT_GRACE: Duration = Duration::from_secs(10);

/// Load for the chat farm, and the same direct-message load for IRC networks.
///
/// Each workload prints one line of key=value pairs per phase on standard output (phase=login,
/// phase=dm, ...), and exits with status 1 when the run timed out or counted errors, missing
/// or doubled messages, saying why on standard error. Users are new names (`b<run>-<k>` and
/// the like), so every run registers its own.
#[derive(Debug, Parser)]
#[command(name = "chat-bench", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub workload: Workload,

    /// Threads of the load generator's runtime. Default: one per core. On a machine whose
    /// cores it shares with the servers it loads, one is faster (`scripts/bench` runs its dm,
    /// irc and group loads with 1).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Direct messages between pairs of clients whose homes are different servers: each
    /// client sends --messages messages of --size bytes to its partner, at most --window in
    /// flight; a message is done once the partner has it and the sender was told "sent".
    Dm(DmArgs),
    /// One group of --members members spread over all servers; --senders of them send
    /// --messages messages each, at most --window in flight; a message is done once the
    /// sender was told "sent" and every other member has it. Rates count deliveries.
    Group(GroupArgs),
    /// --clients logins at once, at most --concurrency under way, each a new user that
    /// registers at its home server; reports login latencies.
    Storm(StormArgs),
    /// Holds --clients connections (handshake and hellos done, at each name's home), and
    /// reports the servers' resident memory (VmRSS) before and after, and per connection;
    /// with --login they log in too, and a third reading follows.
    Idle(IdleArgs),
    /// Logs in --clients users at home, kills the server --kill-pid with SIGKILL, and times
    /// how long each of its users takes to be logged in again elsewhere, walking the ring as
    /// the real client does; with --restart-cmd, then how long each takes to be home again.
    Failover(FailoverArgs),
    /// --clients users with existing accounts (registered first, not timed) log in at once,
    /// each keeping a heartbeat as the real client; reports the logins and the connections
    /// their heartbeat dropped.
    Logins(LoginsArgs),
    /// --clients users log in and live as real clients (heartbeat, failover, going home)
    /// until standard input closes or the timeout; load for the chaos test.
    Crowd(CrowdArgs),
    /// Each server's resident memory with --clients users logged in, at the peak of a storm
    /// of --storm password logins, and after it.
    Rss(RssArgs),
    /// Creates --groups groups with --clients users online, then asks `groups` and `who`
    /// and reports the size of each reply frame, or that it never came.
    Lists(ListsArgs),
    /// The dm workload spoken as IRC to an IRC network: NICK and USER, then PRIVMSG to a
    /// partner on another server; the window counts messages not yet delivered.
    Irc(IrcArgs),
}

impl Workload {
    pub fn limits(&self) -> &Limits {
        match self {
            Workload::Dm(args) => &args.farm.limits,
            Workload::Group(args) => &args.farm.limits,
            Workload::Storm(args) => &args.farm.limits,
            Workload::Idle(args) => &args.farm.limits,
            Workload::Failover(args) => &args.farm.limits,
            Workload::Logins(args) => &args.farm.limits,
            Workload::Crowd(args) => &args.farm.limits,
            Workload::Rss(args) => &args.farm.limits,
            Workload::Lists(args) => &args.farm.limits,
            Workload::Irc(args) => &args.limits,
        }
    }
}

/// What bounds every run.
#[derive(Debug, Clone, Args)]
pub struct Limits {
    /// Stop after this many seconds whatever happens, report what was measured, and exit
    /// with status 1.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,

    /// At most this many logins (or IRC registrations) under way at once.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: u64,

    /// A tag in this run's user names (letters and digits, at most 12), so that runs against
    /// one database never share users. [default: the time, in base 36]
    #[arg(long, value_name = "TAG", value_parser = parse_run_id)]
    pub run_id: Option<String>,
}

impl Limits {
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(self.timeout_secs)
    }

    pub fn concurrency(&self) -> usize {
        usize::try_from(self.concurrency).unwrap_or(usize::MAX)
    }

    /// This run's tag.
    pub fn run_id(&self) -> String {
        self.run_id.clone().unwrap_or_else(|| {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis());
            base36(millis % 36u128.pow(8))
        })
    }
}

/// How to reach the farm.
#[derive(Debug, Clone, Args)]
pub struct FarmArgs {
    /// The farm's servers (HOST:PORT, comma-separated). Any one will do: the first that
    /// answers gives the ring, and users log in at their homes on it.
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        required = true
    )]
    pub servers: Vec<String>,

    /// The farm's public key, 64 hex digits (`farm.pub`, printed by `chat-server keygen`),
    /// as chat-client takes it: every server must present it.
    #[arg(long, value_name = "HEX", value_parser = parse_key, required_unless_present = "server_key_file")]
    pub server_key: Option<[u8; 32]>,

    /// A file holding the farm's public key (such as `farm.pub`), instead of --server-key.
    #[arg(long, value_name = "PATH", conflicts_with = "server_key")]
    pub server_key_file: Option<PathBuf>,

    /// The password of every user of the run.
    #[arg(long, value_name = "TEXT", default_value = "bench-password")]
    pub password: String,

    #[command(flatten)]
    pub limits: Limits,
}

impl FarmArgs {
    pub fn trust(&self) -> anyhow::Result<ServerTrust> {
        if let Some(key) = self.server_key {
            return Ok(ServerTrust::Pinned(key));
        }
        let path = self
            .server_key_file
            .as_ref()
            .context("give the farm's key with --server-key or --server-key-file")?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let key = chat_proto::key_from_hex(&text)
            .with_context(|| format!("{} does not hold a key of 64 hex digits", path.display()))?;
        Ok(ServerTrust::Pinned(key))
    }
}

/// The messages each sender sends.
#[derive(Debug, Clone, Args)]
pub struct Traffic {
    /// Messages per sending client.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub messages: u32,

    /// The most messages of one sender in flight (closed loop).
    #[arg(long, value_name = "W", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,

    /// Messages per second from each sender, evenly spaced (still within the window): a steady
    /// chatting load, for a test that breaks something under it. Without it each sender sends
    /// as fast as its window allows.
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: Option<u32>,

    /// Bytes of text per message, padded after its stamp (sender, number and send time).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub size: u64,

    /// The servers' process ids (P1,P2,...): the phase line then reports the CPU time they
    /// used during it (server_cpu_ms=), next to chat-bench's own (bench_cpu_ms=).
    #[arg(long, value_name = "P1,P2", value_delimiter = ',')]
    pub pids: Vec<u32>,
}

impl Traffic {
    pub fn size(&self) -> usize {
        usize::try_from(self.size).unwrap_or(4096)
    }

    /// The time between two messages of one sender at `--rate`.
    pub fn pace(&self) -> Option<Duration> {
        self.rate
            .map(|rate| Duration::from_secs_f64(1.0 / f64::from(rate)))
    }
}

#[derive(Debug, Clone, Args)]
pub struct DmArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Clients, in pairs: an even number.
    #[arg(long, value_name = "N", default_value_t = 90, value_parser = even_count)]
    pub clients: u64,
    #[command(flatten)]
    pub traffic: Traffic,
}

#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Members of the group, spread evenly over the servers.
    #[arg(long, value_name = "M", default_value_t = 100, value_parser = clap::value_parser!(u64).range(2..=10_000))]
    pub members: u64,
    /// How many of the members send.
    #[arg(long, value_name = "K", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub senders: u64,
    #[command(flatten)]
    pub traffic: Traffic,
}

#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Logins in the storm.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
}

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Connections to hold, logged in.
    #[arg(long, value_name = "N", default_value_t = 6000, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// The servers' process ids (comma-separated). [default: the chat-server processes
    /// whose --listen is one of --servers]
    #[arg(long, value_name = "PID,...", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Log the connections in too, and take a third reading (password hashing dominates it).
    #[arg(long)]
    pub login: bool,
}

#[derive(Debug, Clone, Args)]
pub struct IrcArgs {
    /// The IRC network's servers (HOST:PORT, comma-separated): client i connects to server
    /// i mod n, and its partner to the next one.
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        required = true
    )]
    pub servers: Vec<String>,
    /// Clients, in pairs: an even number.
    #[arg(long, value_name = "N", default_value_t = 90, value_parser = even_count)]
    pub clients: u64,
    #[command(flatten)]
    pub traffic: Traffic,
    #[command(flatten)]
    pub limits: Limits,
}

fn parse_key(text: &str) -> Result<[u8; 32], String> {
    chat_proto::key_from_hex(text)
        .ok_or_else(|| "expected the farm's public key: 64 hex digits".to_string())
}

fn parse_run_id(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 12 || !text.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err("expected 1 to 12 letters and digits".to_string());
    }
    Ok(text.to_string())
}

fn even_count(text: &str) -> Result<u64, String> {
    let count: u64 = text.parse().map_err(|_| "expected a number".to_string())?;
    if count == 0 || count % 2 == 1 {
        return Err("expected a positive even number: clients come in pairs".to_string());
    }
    Ok(count)
}

fn base36(mut value: u128) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(value % 36) as usize]);
        value /= 36;
        if value == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `count` as an index bound; counts come from the command line, bounded well below.
pub fn count(count: u64) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "chat-bench",
            "dm",
            "--servers",
            "a:1,b:2",
            "--server-key",
            &"ab".repeat(32),
            "--clients",
            "6",
            "--messages",
            "50",
        ])
        .unwrap();
        let Workload::Dm(args) = cli.workload else {
            panic!("not dm")
        };
        assert_eq!(args.farm.servers, ["a:1", "b:2"]);
        assert_eq!((args.clients, args.traffic.messages), (6, 50));
        assert_eq!((args.traffic.window, args.traffic.size), (8, 64));
        assert!(matches!(args.farm.trust(), Ok(ServerTrust::Pinned(_))));
        let odd = Cli::try_parse_from(["chat-bench", "irc", "--servers", "a:1", "--clients", "3"]);
        assert!(odd.is_err());
        let keyless = Cli::try_parse_from(["chat-bench", "storm", "--servers", "a:1"]);
        assert!(keyless.is_err());
    }

    #[test]
    fn run_ids_are_short_and_plain() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 + 35), "10z");
        assert!(parse_run_id("abc9").is_ok());
        assert!(parse_run_id("a-b").is_err());
        assert!(parse_run_id("").is_err());
    }
}
