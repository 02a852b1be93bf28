//! The admin socket: console commands from `chat-server admin`, over a local Unix socket.
//!
//! The socket is created owner-only, and every connection's peer credentials are checked as
//! well: only the user running the server (or root) gets an answer. Nothing is exposed on the
//! network. One connection carries one command line and its answer, which the server writes
//! a page at a time as it reads it (see `console`): an answer of any length is never held in
//! memory whole, and the `chat-server admin` client prints it as it comes.

use crate::config::Config;
use crate::console::{self, ConsoleContext};
use anyhow::{bail, Context};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// The longest command line accepted.
const MAX_LINE: u64 = 4096;
/// How long a connection may take to send its command line.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The effective user id of this process (the owner of `/proc/self`), on Linux.
pub fn my_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

/// The admin socket of the server that `config` runs: `--admin-socket`, or the default.
pub fn socket_path(config: &Config) -> PathBuf {
    config
        .admin_socket
        .clone()
        .unwrap_or_else(|| default_socket(&config.name))
}

/// Where a server called `name` puts its admin socket unless told otherwise: in a directory of
/// its user's own (see [`default_dir`]).
pub fn default_socket(name: &str) -> PathBuf {
    default_dir().join(format!("{name}.sock"))
}

/// The private directory of the default admin sockets: `$XDG_RUNTIME_DIR/chat-server`, or
/// `chat-server-UID` in the temporary directory.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("chat-server"),
        None => {
            let uid = my_uid().map_or_else(|| "user".to_owned(), |uid| uid.to_string());
            std::env::temp_dir().join(format!("chat-server-{uid}"))
        }
    }
}

/// Creates `dir` for this user alone, or checks that it is so: owned by this user and closed
/// to everyone else. Another user could otherwise plant a socket there first.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(|| format!("cannot create {}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect {}", dir.display()))?;
    if !meta.is_dir() || Some(meta.uid()) != my_uid() || meta.mode() & 0o077 != 0 {
        bail!(
            "{} must be a directory of this user's own, closed to others (mode 700); \
             remove it or choose --admin-socket",
            dir.display()
        );
    }
    Ok(())
}

/// Binds the admin socket at `path`. A socket left behind by a server that died is replaced;
/// one that still answers means a server of this name runs here already, and is an error.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!(
                "a server already answers on the admin socket {}; is a server of this name \
                 running here already?",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale admin socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot create the admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict the admin socket {}", path.display()))?;
    Ok(listener)
}

/// Removes the admin socket after shutdown.
pub fn remove(path: &Path) {
    if let Err(err) = std::fs::remove_file(path) {
        tracing::debug!(%err, path = %path.display(), "could not remove the admin socket");
    }
}

/// Answers admin connections until shutdown.
pub async fn serve(
    listener: UnixListener,
    console: Arc<ConsoleContext>,
    shutdown: CancellationToken,
) {
    let owner = my_uid();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(%err, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let allowed = stream
            .peer_cred()
            .is_ok_and(|cred| cred.uid() == 0 || Some(cred.uid()) == owner);
        if !allowed {
            tracing::warn!("admin connection refused: not the server's user");
            continue;
        }
        tokio::spawn(answer(stream, console.clone()));
    }
}

async fn answer(stream: UnixStream, console: Arc<ConsoleContext>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_LINE));
    let read = tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await;
    // The answer goes out as it is made, a page at a time; none is held whole.
    let written = match read {
        Ok(Ok(_)) => console::execute(&console, line.trim(), &mut write).await,
        Ok(Err(err)) => {
            let reply = format!("error: cannot read the command: {err}\n");
            write.write_all(reply.as_bytes()).await
        }
        Err(_) => return,
    };
    if let Err(err) = written {
        tracing::debug!(%err, "cannot write an admin answer");
    }
    let _ = write.shutdown().await;
}

/// How a command went that the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Ok,
    /// A line of the answer said `error: …`: the command failed, or a list broke off.
    Failed,
}

/// `chat-server admin`: sends `command` to the server at `path` and copies its answer to `out`
/// as it comes, a line at a time. The socket must belong to this user or to root, so that
/// nobody else can answer in its place.
pub async fn request<W: AsyncWrite + Unpin>(
    path: &Path,
    command: &str,
    out: &mut W,
) -> anyhow::Result<Answered> {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.uid() != 0 && Some(meta.uid()) != my_uid() {
            bail!(
                "{} belongs to another user (uid {}); not talking to it",
                path.display(),
                meta.uid()
            );
        }
    }
    let mut stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot reach a server's admin socket at {} (is the server running, as this user?)",
            path.display()
        )
    })?;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = BufReader::new(stream);
    let mut line = Vec::new();
    let mut copied = 0;
    let mut answered = Answered::Ok;
    loop {
        line.clear();
        let n_read = answer
            .read_until(b'\n', &mut line)
            .await
            .context("the server closed the admin socket without answering")?;
        if n_read == 0 {
            break;
        }
        copied += n_read;
        if line.starts_with(console::ERROR.as_bytes()) {
            answered = Answered::Failed;
        }
        out.write_all(&line).await?;
    }
    if copied == 0 {
        bail!("the server refused the admin connection (only its own user may use it)");
    }
    out.flush().await?;
    Ok(answered)
}
