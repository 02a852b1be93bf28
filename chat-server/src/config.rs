//! Command-line flags of `chat-server`.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// `chat-server admin`: runs an admin command (`servers`, `active-users`, `help`, ...) on a
/// server running on this machine, through its admin socket, and prints the answer. Exits
/// with status 1 when the command failed (its answer has a line `error: …`) or the server
/// could not be asked.
#[derive(Debug, Parser)]
#[command(name = "chat-server admin", bin_name = "chat-server admin", version)]
pub struct AdminArgs {
    /// The server to ask, by name; its socket is found at the default place.
    #[arg(long, env = "CHAT_SERVER_NAME", required_unless_present = "socket")]
    pub name: Option<String>,

    /// The server's admin socket, when it was started with `--admin-socket`.
    #[arg(long)]
    pub socket: Option<PathBuf>,

    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true)]
    pub command: Vec<String>,
}

/// `chat-server keygen`: makes a farm's keys: `farm.key` (the servers' key for clients),
/// `farm.pub` (its public half, which clients may pin with --server-key) and `cluster.key`
/// (the servers' shared key for their links). Secrets are written mode 600; existing files
/// are never overwritten.
#[derive(Debug, Parser)]
#[command(name = "chat-server keygen", bin_name = "chat-server keygen", version)]
pub struct KeygenArgs {
    /// The directory to write the keys into; it is created if missing.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// A chat server of the farm. It serves clients on `--listen`, links with the other servers of
/// the farm on `--peer-listen`, keeps its state in the shared PostgreSQL database, and reads
/// admin commands (`help` lists them) on standard input and on its admin socket.
///
/// `chat-server admin [--name NAME | --socket PATH] <command>` runs an admin command against
/// a server already running on this machine (`chat-server admin --help`). `chat-server keygen`
/// makes the farm's keys (`chat-server keygen --help`).
///
/// A flag given twice takes its last value.
#[derive(Debug, Clone, Parser)]
#[command(name = "chat-server", version, args_override_self = true)]
pub struct Config {
    /// This server's name in the farm; unique among its servers (1 to 32 of A-Z a-z 0-9 _ . -).
    #[arg(long, env = "CHAT_SERVER_NAME")]
    pub name: String,

    /// Where clients connect (HOST:PORT; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub listen: String,

    /// Where the other servers of the farm connect (HOST:PORT; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:7100")]
    pub peer_listen: String,

    /// The host (or HOST:PORT for the client port) that clients and peers should dial, when
    /// it is not the listening address: behind NAT, or when listening on 0.0.0.0.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub advertise: Option<String>,

    /// The address (HOST:PORT) that other servers should dial for links, when it is neither
    /// the peer listening address nor --advertise's host with the peer port.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise_peer: Option<String>,

    /// The farm key (64 hex digits, mode 600), the same on every server of the farm. Without
    /// it, the CHAT_FARM_KEY environment variable holds the key itself.
    #[arg(long, value_name = "PATH")]
    pub farm_key_file: Option<PathBuf>,

    /// The cluster key shared by the farm's servers (64 hex digits, mode 600). Without it,
    /// the CHAT_CLUSTER_KEY environment variable holds the key itself.
    #[arg(long, value_name = "PATH")]
    pub cluster_key_file: Option<PathBuf>,

    /// PostgreSQL connection URL, e.g. postgres://user@host:5432/chat.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Database connections in the pool.
    #[arg(long, default_value_t = 16)]
    pub db_pool_size: usize,

    /// Milliseconds a message pushed to online recipients waits for their acknowledgements
    /// before it is stored for those who have not acknowledged it. Recipients logged in
    /// nowhere are stored at once. Live chat that is acknowledged in time costs no write.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub ack_deadline_ms: u64,

    /// The most inbox rows written in one database transaction.
    #[arg(long, default_value_t = 4096)]
    pub max_batch: usize,

    /// Milliseconds without a heartbeat after which a server counts as down. Servers
    /// heartbeat every second; give every server of the farm the same value, or they will
    /// disagree about the ring.
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1500..=600_000))]
    pub heartbeat_timeout_ms: u64,

    /// The admin socket (a Unix socket, owner only). Default: NAME.sock in the private
    /// directory $XDG_RUNTIME_DIR/chat-server, or else /tmp/chat-server-UID.
    #[arg(long)]
    pub admin_socket: Option<PathBuf>,

    /// The most client connections at once; more are refused at the hello, with a reason.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,

    /// Frames a second that one client connection may send on average (bursts of twice as
    /// many); beyond that its requests are refused as too fast, and a flood is disconnected.
    #[arg(long, default_value_t = 1000)]
    pub max_frames_per_sec: u32,

    /// Seconds a resume ticket is valid after it is issued. Every login (by password or by
    /// ticket) issues a fresh one, and clients renew theirs past half its life, so a session in
    /// use never runs out; a ticket left unused expires, and `logout` or `passwd` revokes all of
    /// a user's at once.
    #[arg(long, default_value_t = 4 * 3600, value_parser = clap::value_parser!(u64).range(10..=30 * 24 * 3600))]
    pub ticket_lifetime_secs: u64,

    /// The most client connections at once from one source address (IPv4, or IPv6 address);
    /// more are refused at the hello, with a reason. Loopback is not special: a proxy in front
    /// of the server makes every client one address, and then this must be raised.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_address: u64,

    /// Seconds a client connection may stay open without being logged in (it may ask for the
    /// ring and ping meanwhile); then it is closed with a reason. A login being checked does
    /// not run out of time.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub login_timeout_secs: u64,

    /// Seconds the writer of a connection may take to hand a batch of frames to a peer that
    /// does not read them (its TCP window shut) before the connection is dropped.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub write_timeout_secs: u64,

    /// New accounts an hour that one source address may register, on average.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_registrations_per_hour: u32,

    /// New accounts that one source address may register at once, before the hourly rate.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub registration_burst: u32,

    /// Threads that run the server's connections and links. Default: the number of cores.
    /// Where several servers share a machine's cores, one each is faster: a message then
    /// passes no frames and wakes no tasks between threads (`scripts/bench` runs its three
    /// servers on two cores with 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,

    /// Passwords hashed at once (argon2id, 19 MiB each, kept for reuse). Default: the number
    /// of cores.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub hash_threads: Option<u64>,

    /// Logins (and registrations) that may wait for a hashing thread; more are refused at
    /// once as busy.
    #[arg(long, default_value_t = 4096)]
    pub max_hash_queue: usize,

    /// Seconds a login may wait for a hashing thread before it is refused as busy.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_hash_wait_secs: u64,

    /// Where to serve Prometheus metrics and the health checks over HTTP (HOST:PORT; port 0
    /// picks a free one): /metrics, /healthz (alive) and /readyz (registered, linked with
    /// every live server and able to reach the database). Off without it.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,

    /// Where to serve the web client (HOST:PORT; port 0 picks a free one): a page, and a
    /// WebSocket at /ws that speaks chat-client's JSON. Off without it. Plain HTTP is served
    /// only on a loopback address, unless --web-tls-cert and --web-tls-key give HTTPS or
    /// --web-allow-plain says a TLS proxy is in front.
    #[arg(long, value_name = "HOST:PORT")]
    pub web_listen: Option<String>,

    /// The web client's TLS certificate chain (PEM), for HTTPS and WSS.
    #[arg(long, value_name = "PATH", requires_all = ["web_tls_key", "web_listen"])]
    pub web_tls_cert: Option<PathBuf>,

    /// The web client's TLS private key (PEM).
    #[arg(long, value_name = "PATH", requires_all = ["web_tls_cert", "web_listen"])]
    pub web_tls_key: Option<PathBuf>,

    /// Serve the web client over plain HTTP on an address that is not loopback: only behind
    /// a proxy that terminates TLS, since a page over plain HTTP can be altered in transit.
    #[arg(long)]
    pub web_allow_plain: bool,

    /// The URL that browsers open for this server's web client, when it is not the scheme,
    /// --advertise's host and the bound port (behind a proxy, or a name on the certificate).
    #[arg(long, value_name = "URL")]
    pub web_url: Option<String>,

    /// An origin (https://chat.example) whose pages may open the WebSocket, besides the
    /// farm's own web URLs. Repeat for more.
    #[arg(long = "web-origin", value_name = "ORIGIN")]
    pub web_origins: Vec<String>,

    /// The most web clients at once; more are answered 503. Each is a session from this
    /// server's address to the farm, so keep it below --max-connections-per-address.
    #[arg(long, default_value_t = chat_web::DEFAULT_MAX_CONNECTIONS)]
    pub web_max_connections: usize,

    /// How logs are written on standard error: `human` lines, or one JSON object per line
    /// for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Seconds to finish in-flight work after SIGINT or SIGTERM before exiting anyway.
    #[arg(long, default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
}

/// How logs are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

impl Config {
    pub fn ack_deadline(&self) -> Duration {
        Duration::from_millis(self.ack_deadline_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn ticket_lifetime(&self) -> Duration {
        Duration::from_secs(self.ticket_lifetime_secs)
    }

    pub fn heartbeat_timeout(&self) -> Duration {
        Duration::from_millis(self.heartbeat_timeout_ms)
    }

    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }

    /// The web client's settings, when `--web-listen` asks for it.
    pub fn web(&self) -> Option<chat_web::WebConfig> {
        let listen = self.web_listen.clone()?;
        let tls = match (&self.web_tls_cert, &self.web_tls_key) {
            (Some(cert), Some(key)) => Some(chat_web::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        Some(chat_web::WebConfig {
            listen,
            tls,
            allow_plain: self.web_allow_plain,
            extra_origins: self.web_origins.clone(),
            max_connections: self.web_max_connections,
        })
    }
}
