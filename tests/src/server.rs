use crate::{binary, TestDb, EVENT_TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::timeout;

/// Limits per source address raised out of the way: every test client comes from 127.0.0.1.
/// The tests of those limits give their own values, which come later and win.
const GENEROUS_LIMITS: &[&str] = &[
    "--max-connections-per-address",
    "100000",
    "--max-registrations-per-hour",
    "1000000",
    "--registration-burst",
    "100000",
];

/// A running `chat-server` process, killed when dropped.
pub struct Server {
    pub name: String,
    /// Where clients connect.
    pub addr: String,
    /// Where other servers link.
    pub peer_addr: String,
    /// Where `chat-server admin` reaches it.
    pub admin_socket: PathBuf,
    /// Where its metrics and health checks answer, when started with `--metrics-listen`.
    pub metrics_addr: Option<String>,
    /// The URL of its web client, when started with `--web-listen`.
    pub web_url: Option<String>,
    child: Child,
    console: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
}

impl Server {
    /// Starts a server on free loopback ports and waits until it is ready.
    pub async fn start(db: &TestDb, name: &str) -> Server {
        Server::start_with(db, name, &[]).await
    }

    /// Starts a server with extra flags.
    pub async fn start_with(db: &TestDb, name: &str, flags: &[&str]) -> Server {
        Server::start_on(db, &db.url, name, flags).await
    }

    /// Starts a server of `db`'s farm on the database at `database_url` (a proxy, say), with
    /// extra flags.
    pub async fn start_on(db: &TestDb, database_url: &str, name: &str, flags: &[&str]) -> Server {
        Server::spawn(db, database_url, name, flags, None).await
    }

    /// Starts a server with extra flags and `RUST_LOG` set to `rust_log`, its logs (standard
    /// error) written to `log_file`.
    pub async fn start_logging(
        db: &TestDb,
        name: &str,
        flags: &[&str],
        rust_log: &str,
        log_file: &Path,
    ) -> Server {
        let log = std::fs::File::create(log_file).expect("create the log file");
        Server::spawn(db, &db.url, name, flags, Some((rust_log, log))).await
    }

    async fn spawn(
        db: &TestDb,
        database_url: &str,
        name: &str,
        flags: &[&str],
        log: Option<(&str, std::fs::File)>,
    ) -> Server {
        let admin_socket =
            std::env::temp_dir().join(format!("chat-test-{}.sock", uuid::Uuid::now_v7().simple()));
        let mut command = Server::command(db, database_url, name, flags, &admin_socket);
        match log {
            Some((rust_log, file)) => command.env("RUST_LOG", rust_log).stderr(file),
            None => command.stderr(log_sink()),
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chat-server");
        let console = child.stdin.take().expect("piped stdin");
        let mut output = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = timeout(EVENT_TIMEOUT, output.next_line())
            .await
            .expect("chat-server did not get ready in time")
            .expect("read chat-server output")
            .expect("chat-server exited before it was ready");
        let field = |key: &str| {
            ready
                .split_whitespace()
                .find_map(|field| field.strip_prefix(key))
                .map(str::to_owned)
        };
        let unexpected = || panic!("unexpected first line from chat-server: {ready}");
        let addr = field("client=").unwrap_or_else(unexpected);
        let peer_addr = field("peer=").unwrap_or_else(unexpected);
        Server {
            name: name.to_owned(),
            addr,
            peer_addr,
            admin_socket,
            metrics_addr: field("metrics="),
            web_url: field("web="),
            child,
            console,
            output,
        }
    }

    /// Runs a server with `flags` that must refuse to start; returns what it said on standard
    /// error.
    pub async fn fails_to_start(db: &TestDb, name: &str, flags: &[&str]) -> String {
        let admin_socket =
            std::env::temp_dir().join(format!("chat-test-{}.sock", uuid::Uuid::now_v7().simple()));
        let output = Server::command(db, &db.url, name, flags, &admin_socket)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = timeout(EVENT_TIMEOUT, output)
            .await
            .expect("chat-server exited in time")
            .expect("run chat-server");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "chat-server started: {stdout}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// The command line of a test server on free loopback ports.
    fn command(
        db: &TestDb,
        database_url: &str,
        name: &str,
        flags: &[&str],
        admin_socket: &Path,
    ) -> Command {
        let mut command = Command::new(binary("chat-server"));
        command
            .args(["--name", name, "--listen", "127.0.0.1:0"])
            .args(GENEROUS_LIMITS)
            .args(flags)
            .args(if flags.contains(&"--peer-listen") {
                &[][..]
            } else {
                &["--peer-listen", "127.0.0.1:0"][..]
            })
            .args(["--database-url", database_url])
            .arg("--admin-socket")
            .arg(admin_socket)
            .arg("--farm-key-file")
            .arg(db.keys.join("farm.key"))
            .arg("--cluster-key-file")
            .arg(db.keys.join("cluster.key"))
            .env_remove("DATABASE_URL");
        command
    }

    /// `GET path` from the server's metrics port: the status code and the body.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let addr = self
            .metrics_addr
            .as_deref()
            .expect("the server was started with --metrics-listen");
        crate::http::get(addr, path).await
    }

    /// Runs an admin console command and returns its first line of output.
    pub async fn console_line(&mut self, command: &str) -> String {
        self.console
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write to the console");
        timeout(EVENT_TIMEOUT, self.output.next_line())
            .await
            .expect("console answer in time")
            .expect("read the console")
            .expect("console output ended")
    }

    /// Runs `chat-server admin <command>` against this server, as an operator would, and
    /// returns its answer without the final newline.
    pub async fn admin(&self, command: &str) -> String {
        let (output, answer) = self.run_admin(command).await;
        assert!(
            output.status.success(),
            "chat-server admin {command} failed ({}): {answer} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        answer
    }

    /// Runs `chat-server admin <command>`, which must fail with status 1, and returns its
    /// answer without the final newline.
    pub async fn admin_failing(&self, command: &str) -> String {
        let (output, answer) = self.run_admin(command).await;
        assert_eq!(
            output.status.code(),
            Some(1),
            "chat-server admin {command} should have failed: {answer}"
        );
        answer
    }

    async fn run_admin(&self, command: &str) -> (std::process::Output, String) {
        let output = Command::new(binary("chat-server"))
            .arg("admin")
            .arg("--socket")
            .arg(&self.admin_socket)
            .args(command.split_whitespace())
            .output();
        let output = timeout(EVENT_TIMEOUT, output)
            .await
            .expect("chat-server admin answered in time")
            .expect("run chat-server admin");
        let answer = String::from_utf8(output.stdout.clone())
            .expect("admin output is UTF-8")
            .trim_end()
            .to_owned();
        (output, answer)
    }

    /// Kills the server at once, as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Freezes the server (SIGSTOP): it holds its sockets open and answers nothing.
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// Stops the server with SIGTERM and returns once it has exited cleanly.
    pub async fn stop(mut self) {
        signal(self.pid(), "TERM");
        let status = timeout(EVENT_TIMEOUT, self.child.wait())
            .await
            .expect("chat-server stopped in time")
            .expect("wait for chat-server");
        assert!(status.success(), "chat-server exited with {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server that was killed leaves its admin socket behind.
        let _ = std::fs::remove_file(&self.admin_socket);
    }
}

pub(crate) fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

pub(crate) fn log_sink() -> Stdio {
    if std::env::var_os("TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}
