use anyhow::Context;
use chat_server::config::{AdminArgs, KeygenArgs, LogFormat};
use chat_server::{admin, Config};
use clap::Parser;
use std::io::IsTerminal;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: see the workspace's Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // `admin` is parsed on its own: a server's flags read the environment (DATABASE_URL),
    // which an operator's shell may well have set.
    match std::env::args_os().nth(1) {
        Some(arg) if arg == "admin" => {
            let args = AdminArgs::parse_from(std::env::args_os().skip(1));
            return admin(args);
        }
        Some(arg) if arg == "keygen" => {
            let args = KeygenArgs::parse_from(std::env::args_os().skip(1));
            let public = chat_server::keys::keygen(&args.dir)?;
            println!(
                "wrote {dir}/farm.key, {dir}/cluster.key (secret, mode 600) and {dir}/farm.pub\n\
                 farm public key (for chat-client --server-key): {public}",
                dir = args.dir.display()
            );
            return Ok(());
        }
        _ => {}
    }
    let config = Config::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Human => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One JSON object per line, its fields flattened beside the message.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let runtime = runtime(config.worker_threads)?;
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        chat_server::run(config, shutdown).await
    });
    // The console's read of standard input cannot be cancelled; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result
}

/// The server's runtime: `worker_threads` threads (`--worker-threads`), or one per core.
fn runtime(worker_threads: Option<u16>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(usize::from(threads));
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Crates whose debug logs hold secrets: `tokio_postgres` logs every query's parameters, the
/// argon2 hashes among them.
const SECRET_LOGGING_TARGETS: &[&str] = &["tokio_postgres"];

/// The log filter of `RUST_LOG` (`info` without it), with the crates of
/// [`SECRET_LOGGING_TARGETS`] kept at `info` unless `RUST_LOG` names them itself.
fn log_filter(rust_log: Option<&str>) -> EnvFilter {
    let rust_log = rust_log
        .filter(|value| !value.trim().is_empty())
        .unwrap_or("info");
    let mut filter = EnvFilter::try_new(rust_log).unwrap_or_else(|err| {
        eprintln!("ignoring RUST_LOG={rust_log:?}: {err}");
        EnvFilter::new("info")
    });
    for target in SECRET_LOGGING_TARGETS {
        if !rust_log.contains(target) {
            if let Ok(directive) = format!("{target}=info").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    filter
}

/// `chat-server admin`: one command to a running server, its answer on standard output. Exits
/// with status 1 when the command failed, as when the server cannot be asked.
fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let path = match (args.socket, args.name) {
        (Some(path), _) => path,
        (None, Some(name)) => admin::default_socket(&name),
        (None, None) => anyhow::bail!("name the server with --name or --socket"),
    };
    let command = args.command.join(" ");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let answered = runtime.block_on(admin::request(&path, &command, &mut tokio::io::stdout()))?;
    if answered == admin::Answered::Failed {
        std::process::exit(1);
    }
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}
