//! The flags of the workloads that simulate many users living as the real client does:
//! `logins`, `crowd`, `failover`, `rss` and `lists`.

use super::FarmArgs;
use chat_client::heartbeat::Heartbeat;
use clap::Args;
use std::time::Duration;

/// How the simulated users behave; the defaults are the real client's.
#[derive(Debug, Clone, Args)]
pub struct UserArgs {
    /// Skip the registration: the users' accounts exist already (an earlier run with the same
    /// --run-id registered them), or their first logins may register them, since a login of a
    /// new name registers it.
    #[arg(long)]
    pub registered: bool,

    /// Milliseconds between two pings of a connection, as the client's heartbeat; 0 sends none.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,

    /// Unanswered pings in a row after which a connection is given up (dropped).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub heartbeat_misses: u32,

    /// Milliseconds between two looks at home (the ring), as the client polls; 0 never looks.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub home_poll_ms: u64,
}

impl UserArgs {
    pub fn heartbeat(&self) -> Option<Heartbeat> {
        (self.heartbeat_ms > 0).then(|| Heartbeat {
            interval: Duration::from_millis(self.heartbeat_ms),
            misses: self.heartbeat_misses,
        })
    }

    pub fn home_poll(&self) -> Option<Duration> {
        (self.home_poll_ms > 0).then(|| Duration::from_millis(self.home_poll_ms))
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoginsArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Users, spread evenly over the servers.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Seconds to hold the connections after the last login, heartbeats running.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub hold_secs: u64,
    #[command(flatten)]
    pub users: UserArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CrowdArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Users, spread evenly over the servers.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Seconds the users are given, once told to stop, to be logged in somewhere and to have
    /// every message they were told is sent delivered.
    #[arg(long, value_name = "SECS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(0..=9))]
    pub settle_secs: u64,
    /// Direct messages each user sends to the next user (whose home is another server), one
    /// at a time, each kept with its id until the farm answers it, through failovers; the
    /// `crowd` line then counts them (sent=, delivered=, missing=, doubled=). 0: the users
    /// only live.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub messages: u32,
    /// Messages per second from each user, at most, with --messages.
    #[arg(long, value_name = "R", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate: u32,
    /// Bytes of text per message, with --messages.
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub size: u64,
    #[command(flatten)]
    pub users: UserArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Users logged in, spread evenly over the servers.
    #[arg(long, value_name = "N", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// The server process to kill with SIGKILL; its name is read from its --name flag.
    #[arg(long, value_name = "PID")]
    pub kill_pid: u32,
    /// After the failover, a shell command (`sh -c`) that starts the killed server again at
    /// the same client address and returns (it may leave the server in the background);
    /// then the `home` phase times each displaced user's way home from the moment the server
    /// answers.
    #[arg(long, value_name = "COMMAND")]
    pub restart_cmd: Option<String>,
    #[command(flatten)]
    pub users: UserArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RssArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Users logged in and held, spread evenly over the servers.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub clients: u64,
    /// Password logins in the storm, by other users (registered before the first reading).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub storm: u64,
    /// The servers' process ids (comma-separated). [default: the chat-server processes
    /// whose --listen is one of --servers]
    #[arg(long, value_name = "PID,...", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Milliseconds the servers are left to settle before the first and the last reading.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub settle_ms: u64,
    #[command(flatten)]
    pub users: UserArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ListsArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    /// Users online (logged in and held), spread evenly over the servers.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(2..))]
    pub clients: u64,
    /// Groups to create, by the users' joins.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub groups: u64,
    /// Characters in each group name (the most a name may have is 32).
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u64).range(16..=32))]
    pub group_name_len: u64,
    #[command(flatten)]
    pub users: UserArgs,
}
