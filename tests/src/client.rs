use crate::server::{log_sink, signal};
use crate::{binary, Server, EVENT_TIMEOUT};
use serde_json::Value;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// A `chat-client --json` process driven through its standard input, as a bot would.
pub struct Client {
    child: Child,
    input: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<Value>,
    /// Events received but not yet taken by a test.
    unclaimed: Vec<Value>,
}

impl Client {
    /// Starts a client of `server` and waits for its `connected` event.
    pub async fn connect(server: &Server) -> Client {
        let mut client = Client::spawn(&[&server.addr]);
        let connected = client.event(|ev| ev["type"] == "connected").await;
        assert_eq!(connected["server"], server.name.as_str());
        client
    }

    /// Starts a client with these `--server` addresses, without waiting for anything. It
    /// trusts servers on first use, in a known-servers file of its own.
    pub fn spawn(servers: &[&str]) -> Client {
        Client::spawn_trusting(servers, &[])
    }

    /// As [`Client::spawn`], with extra flags.
    pub fn spawn_trusting(servers: &[&str], flags: &[&str]) -> Client {
        let known_servers =
            std::env::temp_dir().join(format!("chat-test-known-{}", uuid::Uuid::now_v7().simple()));
        let known_servers = known_servers.to_string_lossy().into_owned();
        let mut all_flags = vec!["--known-servers", &known_servers];
        all_flags.extend_from_slice(flags);
        Client::spawn_with(servers, &all_flags)
    }

    /// Starts a client with these `--server` addresses and extra flags.
    pub fn spawn_with(servers: &[&str], flags: &[&str]) -> Client {
        let mut command = Command::new(binary("chat-client"));
        command.arg("--json").args(flags);
        for server in servers {
            command.args(["--server", server]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_sink())
            .kill_on_drop(true)
            .spawn()
            .expect("start chat-client");
        let input = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut event: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|err| panic!("chat-client printed non-JSON {line:?}: {err}"));
                // When the harness read it, for measuring failovers.
                event["_at_ms"] = Value::from(crate::now_ms());
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Client {
            child,
            input,
            events,
            unclaimed: Vec::new(),
        }
    }

    /// A client of `server`, logged in as `user` with password `pw-<user>`.
    pub async fn login(server: &Server, user: &str) -> Client {
        let mut client = Client::connect(server).await;
        client.ok(&format!("login {user} pw-{user}")).await;
        client
    }

    /// Types one line.
    pub async fn type_line(&mut self, line: &str) {
        let input = self.input.as_mut().expect("stdin is still open");
        input
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to chat-client");
    }

    /// Closes the client's standard input, as at the end of a script.
    pub fn close_input(&mut self) {
        self.input = None;
    }

    /// Types a command and returns its answer (`ok` or `error`).
    pub async fn command(&mut self, line: &str) -> Value {
        let name = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        self.type_line(line).await;
        self.event(|ev| (ev["type"] == "ok" || ev["type"] == "error") && ev["command"] == *name)
            .await
    }

    /// Types a command that must succeed, and returns its `ok` answer.
    pub async fn ok(&mut self, line: &str) -> Value {
        let answer = self.command(line).await;
        assert_eq!(answer["type"], "ok", "`{line}` failed: {answer}");
        answer
    }

    /// Repeats a command until it succeeds with an answer that satisfies `check`: for views
    /// that other servers update a moment later (who is online where), and for a service that
    /// is coming back. Fails after [`EVENT_TIMEOUT`].
    pub async fn ok_until(&mut self, line: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        loop {
            let answer = self.command(line).await;
            if answer["type"] == "ok" && check(&answer) {
                return answer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{line}` still answers {answer}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Types a command that must fail, and returns its error message.
    pub async fn error(&mut self, line: &str) -> String {
        let answer = self.command(line).await;
        assert_eq!(
            answer["type"], "error",
            "`{line}` should have failed: {answer}"
        );
        answer["message"]
            .as_str()
            .expect("an error has a message")
            .to_owned()
    }

    /// Waits for the first event, old or new, that `matches`, and takes it.
    pub async fn event(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(idx) = self.unclaimed.iter().position(&matches) {
            return self.unclaimed.remove(idx);
        }
        loop {
            let event = timeout(EVENT_TIMEOUT, self.events.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("no matching event in time; unclaimed: {:?}", self.unclaimed)
                })
                .unwrap_or_else(|| panic!("chat-client exited; unclaimed: {:?}", self.unclaimed));
            if matches(&event) {
                return event;
            }
            self.unclaimed.push(event);
        }
    }

    /// Waits for a message with this text and returns it.
    pub async fn message(&mut self, text: &str) -> Value {
        self.event(|ev| ev["type"] == "message" && ev["text"] == text)
            .await
    }

    /// Takes every message event received so far with this text.
    pub fn take_messages(&mut self, text: &str) -> Vec<Value> {
        self.take_events(|ev| ev["type"] == "message" && ev["text"] == text)
    }

    /// Takes every event received so far that `matches`, in order, without waiting.
    pub fn take_events(&mut self, matches: impl Fn(&Value) -> bool) -> Vec<Value> {
        while let Ok(event) = self.events.try_recv() {
            self.unclaimed.push(event);
        }
        let (taken, rest) = std::mem::take(&mut self.unclaimed)
            .into_iter()
            .partition(|ev| matches(ev));
        self.unclaimed = rest;
        taken
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        timeout(EVENT_TIMEOUT, self.child.wait())
            .await
            .expect("chat-client exited in time")
            .expect("wait for chat-client")
            .code()
    }

    /// Kills the client at once.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Freezes the client (SIGSTOP), so that it reads nothing.
    pub fn freeze(&self) {
        signal(self.child.id().expect("running"), "STOP");
    }
}
