//! Command-line flags of `chat-server`.

use clap::Parser;
use std::time::Duration;

/// A chat server of the farm. It serves clients on `--listen`, keeps its state in the shared
/// PostgreSQL database, and reads admin commands (`help` lists them) on standard input.
#[derive(Debug, Clone, Parser)]
#[command(name = "chat-server", version)]
pub struct Config {
    /// This server's name in the farm; unique among its servers.
    #[arg(long, env = "CHAT_SERVER_NAME")]
    pub name: String,

    /// Where clients connect (HOST:PORT; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub listen: String,

    /// Where other servers of the farm connect (HOST:PORT). It is recorded in `server_info`;
    /// the server-to-server links that will use it are not built yet.
    #[arg(long, default_value = "127.0.0.1:7100")]
    pub peer_listen: String,

    /// PostgreSQL connection URL, e.g. postgres://user@host:5432/chat.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Database connections in the pool.
    #[arg(long, default_value_t = 16)]
    pub db_pool_size: usize,

    /// Milliseconds a batch of messages waits before it is written, so that recipients who
    /// acknowledge in that time cost no write at all.
    #[arg(long, default_value_t = 5)]
    pub commit_delay_ms: u64,

    /// The most messages written in one database transaction.
    #[arg(long, default_value_t = 4096)]
    pub max_batch: usize,

    /// Seconds to finish in-flight work after SIGINT or SIGTERM before exiting anyway.
    #[arg(long, default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
}

impl Config {
    pub fn commit_delay(&self) -> Duration {
        Duration::from_millis(self.commit_delay_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }
}
