//! A program in a terminal, driven as a person at a keyboard would: tmux runs it in a window
//! of its own, keys are typed with `send-keys`, and the screen is read with `capture-pane`,
//! as the terminal shows it (prompts redrawn, passwords unechoed, messages printed above the
//! line being typed).
//!
//! Each [`Terminal`] has a tmux server of its own (its own socket, no configuration file but
//! one line that keeps a window after its program exits), which is killed when it is dropped.
//! tmux is Debian's package; `scripts/test` installs it when it is missing.

use crate::EVENT_TIMEOUT;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;
use tokio::time::Instant;

/// How often the screen is read again while waiting for it to change.
const POLL: Duration = Duration::from_millis(50);

/// A program running in a tmux window of 200 columns and 50 lines.
pub struct Terminal {
    /// The tmux server's socket name (`tmux -L`).
    socket: String,
    /// Holds the configuration file.
    dir: PathBuf,
}

impl Terminal {
    /// Starts `program` with `args` and these environment variables, in a fresh terminal.
    pub async fn start(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Terminal {
        let socket = format!("chat-test-{}", uuid::Uuid::now_v7().simple());
        let dir = std::env::temp_dir().join(&socket);
        std::fs::create_dir_all(&dir).expect("create the terminal's folder");
        let config = dir.join("tmux.conf");
        std::fs::write(&config, "set-option -g remain-on-exit on\n").expect("write tmux.conf");
        let terminal = Terminal { socket, dir };
        let mut command = vec!["-f".to_string(), config.display().to_string()];
        command
            .extend(["new-session", "-d", "-x", "200", "-y", "50", "--", "env"].map(String::from));
        command.extend(env.iter().map(|(name, value)| format!("{name}={value}")));
        command.push(program.display().to_string());
        command.extend(args.iter().map(|arg| arg.to_string()));
        let refs: Vec<&str> = command.iter().map(String::as_str).collect();
        terminal.tmux(&refs).await;
        terminal
    }

    /// Runs one tmux command against this terminal's server.
    async fn tmux(&self, args: &[&str]) -> Output {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            // The server that the first command starts passes its environment on: no logs
            // on the screen, and no tmux around it.
            .env_remove("RUST_LOG")
            .env_remove("TMUX")
            .output()
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run tmux ({err}): scripts/test installs it (as root), or \
                     `apt-get install tmux`"
                )
            });
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Types `text` as it is, key by key.
    pub async fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-l", "--", text]).await;
    }

    /// Presses one key, by tmux's name for it: `Enter`, `Tab`, `Up`, `C-d`.
    pub async fn press(&self, key: &str) {
        self.tmux(&["send-keys", key]).await;
    }

    /// Types `line` and presses Enter.
    pub async fn type_line(&self, line: &str) {
        self.type_text(line).await;
        self.press("Enter").await;
    }

    /// The screen as it shows now, each line without trailing spaces (a space typed last
    /// shows in what is typed after it), without the empty lines below the last one written.
    pub async fn screen(&self) -> Vec<String> {
        let output = self.tmux(&["capture-pane", "-p", "-J"]).await;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut lines: Vec<String> = text
            .lines()
            .map(|line| line.trim_end().to_owned())
            .collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    }

    /// Waits until the screen satisfies `check`, and returns it. Fails after
    /// [`EVENT_TIMEOUT`], showing the screen.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let screen = self.screen().await;
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {what}; it shows:\n{}",
                screen.join("\n")
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the last line of the screen is `line` (a prompt, say, with what was typed
    /// after it), but for trailing spaces, which the screen does not keep; returns the screen.
    pub async fn wait_for_last_line(&self, line: &str) -> Vec<String> {
        let line = line.trim_end();
        self.wait_for(&format!("the last line {line:?}"), |screen| {
            screen.last().map(String::as_str) == Some(line)
        })
        .await
    }

    /// Waits until a line of the screen is `line`, and returns the screen.
    pub async fn wait_for_line(&self, line: &str) -> Vec<String> {
        self.wait_for(&format!("the line {line:?}"), |screen| {
            screen.iter().any(|shown| shown == line)
        })
        .await
    }

    /// Waits until the program has exited, and returns its exit status.
    pub async fn wait_exit(&self) -> i32 {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let output = self
                .tmux(&["display-message", "-p", "#{pane_dead} #{pane_dead_status}"])
                .await;
            let status = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if let Some(code) = status.strip_prefix("1 ") {
                return code
                    .parse()
                    .expect("tmux gives the exit status as a number");
            }
            // tmux does not always reap the program at once (seen here: a zombie for 15 s and
            // more, the pane not yet dead); the kernel keeps a zombie's status in its stat.
            if let Some(code) = self.zombie_status().await {
                return code;
            }
            assert!(
                Instant::now() < deadline,
                "the program did not exit; the terminal shows:\n{}",
                self.screen().await.join("\n")
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Terminal {
    /// The exit status of the pane's program if it has exited and is waiting to be reaped:
    /// field 52 of `/proc/PID/stat` (`exit_code`, Linux 3.5 and later).
    async fn zombie_status(&self) -> Option<i32> {
        let output = self.tmux(&["display-message", "-p", "#{pane_pid}"]).await;
        let pid = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name, in parentheses, may hold spaces: the fields start after it.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // After the name: field 3 (the state) is fields[0], field 52 is fields[49].
        if fields.first() != Some(&"Z") {
            return None;
        }
        let raw: i32 = fields.get(49)?.parse().ok()?;
        Some((raw >> 8) & 0xff)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Ends this terminal's own tmux server, and the program in it.
        let _ = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
