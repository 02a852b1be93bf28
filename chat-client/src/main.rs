//! The `chat-client` binary: parses the command line, connects, and runs a session.

use anyhow::Context as _;
use chat_client::farm::connect_any;
use chat_client::input::Input;
use chat_client::output::{Format, Output};
use chat_client::session::{Session, CONNECTION};
use chat_client::terminal::TerminalInput;
use clap::Parser;
use std::io::IsTerminal;
use tokio::io::BufReader;

/// A command-line chat client.
///
/// At a terminal it shows a prompt with history and tab completion. Otherwise it reads one
/// command per line from standard input, runs them in order, and exits once the input has
/// ended and every command has been answered.
///
/// Commands: login <user> [<password>], logout, send <user> <text>, send #<group> <text>,
/// join <group>, leave <group>, groups, readlog, who, whois <user>, whoami, help, quit.
///
/// A login moves the client to the user's home server on the farm's ring (or the first
/// successor that answers), following the farm's redirects.
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
    let code = runtime.block_on(run(cli))?;
    // Exit without waiting for the runtime: a read of standard input may still be blocked on
    // one of its threads, and would hold the process open.
    std::process::exit(code)
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let format = if cli.json {
        Format::Json
    } else {
        Format::Human
    };
    let (mut input, output) = if std::io::stdin().is_terminal() {
        let (terminal, printer) =
            TerminalInput::start().context("cannot set up the terminal prompt")?;
        let output = match printer {
            Some(printer) => Output::new(format, printer),
            None => Output::stdout(format),
        };
        (Input::Terminal(terminal), output)
    } else {
        let stdin = BufReader::new(tokio::io::stdin());
        (Input::lines(stdin), Output::stdout(format))
    };
    let code = match connect_any(&cli.servers).await {
        Ok((connection, incoming)) => {
            let session = Session::new(&output);
            session.run(connection, incoming, &mut input).await.code()
        }
        Err(err) => {
            output.error(CONNECTION, err.to_string());
            1
        }
    };
    input.finish().await;
    Ok(code)
}
