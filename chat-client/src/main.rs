//! The `chat-client` binary: parses the command line, connects, and runs a session.

use anyhow::Context as _;
use chat_client::clock::Clock;
use chat_client::completion::Vocabulary;
use chat_client::farm::connect_any;
use chat_client::handshake::ServerTrust;
use chat_client::heartbeat::Heartbeat;
use chat_client::history;
use chat_client::input::Input;
use chat_client::known_servers::KnownServers;
use chat_client::output::{Format, Output};
use chat_client::session::{Config, Session, CONNECTION};
use chat_client::terminal::TerminalInput;
use clap::{CommandFactory as _, Parser};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::BufReader;

/// A command-line chat client.
///
/// At a terminal it shows a prompt with a history kept across runs and tab completion of
/// commands, users and groups, and shows each message with its local time. Otherwise it
/// reads one command per line from standard input, runs them in order, and exits once the
/// input has ended and every command has been answered, with status 1 when the last answer
/// was an error.
///
/// Commands: login <user> [<password>], logout, passwd <old> <new>, send <user> <text>,
/// send #<group> <text>, join <group>, leave <group>, groups, readlog, who, whois <user>,
/// whoami, help, quit, and /me <text>. A leading / is accepted on each (/join #ops, /quit),
/// and /msg and /part are send and leave, as in IRC.
///
/// A login moves the client to the user's home server on the farm's ring (or the first
/// successor that answers), following the farm's redirects.
///
/// When the server is lost (it closes the connection, says goodbye, or stops answering pings),
/// the client moves by itself to the next server in the user's ring order (home, backup, then
/// clockwise), logs in again, runs again the command that was waiting, and shows what was
/// stored meanwhile. It prints one `connected` line for the new server. While logged in away
/// from home, it moves back home when home calls (the server pushes it once home is back), or
/// at the next slow look at home. When no server of the farm answers, it says so and keeps
/// trying; `quit`, Ctrl-D or Ctrl-C leave at once.
///
/// Every connection is encrypted, and the client checks the server's key: it must be the key
/// given with --server-key, or else, trusted on first use, the key recorded for that server
/// in the known-servers file. A server with another key is refused, and is passed over when
/// failing over; when every server is refused so, the client says so and exits.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A chat server to connect to. Repeat the option to name others; the client connects to
    /// the first that answers, in the order given.
    #[arg(
        long = "server",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:7000"
    )]
    servers: Vec<String>,

    /// Print one JSON object per line (each with a "type" field) instead of lines for people.
    #[arg(long)]
    json: bool,

    /// Show messages without their local time (`[12:04] [alice] hi` becomes `[alice] hi`).
    /// JSON always carries `sent_at`.
    #[arg(long)]
    no_timestamps: bool,

    /// The prompt's history file, kept across runs; a line with a password never enters it.
    /// [default: $XDG_CONFIG_HOME/chat-client/history, or ~/.config/chat-client/history]
    #[arg(long, value_name = "PATH")]
    history: Option<PathBuf>,

    /// The farm's public key, 64 hex digits (`chat-server keygen` prints it): every server of
    /// the farm must present it, or it is refused. Without it, the client trusts each server's
    /// key the first time it connects there, records it in the known-servers file, and refuses
    /// that server if its key ever changes.
    #[arg(long, value_name = "HEX", value_parser = parse_key)]
    server_key: Option<[u8; 32]>,

    /// The known-servers file, for trust on first use without --server-key: one line
    /// `HOST:PORT KEY` per server. [default: $XDG_CONFIG_HOME/chat-client/known_servers, or
    /// ~/.config/chat-client/known_servers]
    #[arg(long, value_name = "PATH", conflicts_with = "server_key")]
    known_servers: Option<PathBuf>,

    /// Ping the server this often, in milliseconds. Each ping may take this long to answer.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    ping_interval_ms: u64,

    /// A server that has answered nothing for this many ping intervals counts as dead (three
    /// missed pings, by default), and the client moves to another.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    ping_misses: u32,

    /// While logged in, refresh the farm's ring this often (give or take a quarter), in
    /// milliseconds; away from home, also try home this often, and move there once it takes
    /// the user again. A fallback: the server tells its users when their home is back.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    home_poll_ms: u64,
}

impl Cli {
    /// The session's configuration; exits with a usage error when the flags do not make one.
    fn config(&self) -> Config {
        Config {
            seeds: self.servers.clone(),
            heartbeat: Some(Heartbeat {
                interval: Duration::from_millis(self.ping_interval_ms),
                misses: self.ping_misses,
            }),
            home_poll: Duration::from_millis(self.home_poll_ms),
            trust: self.trust(),
            forwarded: None,
        }
    }

    fn trust(&self) -> ServerTrust {
        if let Some(key) = self.server_key {
            return ServerTrust::Pinned(key);
        }
        let path = self
            .known_servers
            .clone()
            .or_else(KnownServers::default_path)
            .unwrap_or_else(|| {
                let message = "no place for the known-servers file: neither XDG_CONFIG_HOME \
                               nor HOME is set; give --known-servers PATH, or pin the farm's \
                               key with --server-key";
                Cli::command()
                    .error(clap::error::ErrorKind::MissingRequiredArgument, message)
                    .exit()
            });
        ServerTrust::FirstUse(KnownServers::new(path))
    }
}

/// Reads `--server-key`: a public key in hex.
fn parse_key(text: &str) -> Result<[u8; 32], String> {
    chat_proto::key_from_hex(text)
        .ok_or_else(|| "expected the farm's public key: 64 hex digits".to_string())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = cli.config();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(run(cli, config))?;
    // Exit without waiting for the runtime: a read of standard input may still be blocked on
    // one of its threads, and would hold the process open.
    std::process::exit(code)
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<i32> {
    let format = if cli.json {
        Format::Json
    } else {
        Format::Human
    };
    let interactive = std::io::stdin().is_terminal();
    let (mut input, output) = if interactive {
        let vocabulary = Vocabulary::default();
        let history = cli.history.clone().or_else(history::default_path);
        let (terminal, printer) = TerminalInput::start(vocabulary.clone(), history)
            .context("cannot set up the terminal prompt")?;
        let output = match printer {
            Some(printer) => Output::new(format, printer),
            None => Output::stdout(format),
        };
        (Input::Terminal(terminal), output.teaching(vocabulary))
    } else {
        let stdin = BufReader::new(tokio::io::stdin());
        (Input::lines(stdin), Output::stdout(format))
    };
    let output = if cli.no_timestamps {
        output
    } else {
        output.with_timestamps(Clock::local())
    };
    let code = match connect_any(&cli.servers, &config.connect_options()).await {
        Ok((connection, incoming)) => {
            let session = Session::new(&output, config);
            let code = session.run(connection, incoming, &mut input).await.code();
            // A script learns from the status whether its last command failed.
            if code == 0 && !interactive && output.last_failed() {
                1
            } else {
                code
            }
        }
        Err(err) => {
            output.error(CONNECTION, err.to_string());
            1
        }
    };
    input.finish().await;
    Ok(code)
}
