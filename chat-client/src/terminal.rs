//! Interactive mode: a rustyline prompt with history and completion of command words.
//!
//! rustyline blocks, so it runs on its own thread, which owns the terminal's input. The
//! session asks that thread for one line (or one password) at a time and waits for the
//! answer, so the prompt shows only when the previous command has been answered. Messages
//! that arrive meanwhile go through rustyline's external printer, which prints them above the
//! line being typed instead of through it.

use crate::command::COMMAND_NAMES;
use crate::output::LineSink;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};
use std::io::{self, Write};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;

const PROMPT: &str = "> ";

/// How long to let the prompt thread print the last message before the terminal is restored.
const LAST_PRINT_GRACE: Duration = Duration::from_millis(100);

/// What the session asks the prompt thread for.
enum Ask {
    Line,
    Password(String),
}

/// What the prompt thread answers.
enum Answer {
    Line(String),
    Password(String),
    Eof,
    Failed(io::Error),
}

/// The session's handle on the prompt thread.
pub struct TerminalInput {
    asks: std_mpsc::SyncSender<Ask>,
    answers: mpsc::Receiver<Answer>,
    /// True while the thread is reading a line: the terminal is then in raw mode.
    waiting: bool,
    saved: Option<SavedTerminal>,
}

impl TerminalInput {
    /// Starts the prompt thread. Also returns a sink that prints above the prompt, unless
    /// standard output is not a terminal (then plain standard output serves).
    pub fn start() -> io::Result<(TerminalInput, Option<Box<dyn LineSink>>)> {
        let saved = SavedTerminal::save();
        let mut editor: Editor<CommandHelper, DefaultHistory> =
            Editor::new().map_err(io::Error::other)?;
        editor.set_helper(Some(CommandHelper));
        let printer: Option<Box<dyn LineSink>> = match editor.create_external_printer() {
            Ok(printer) => Some(Box::new(PrinterSink(printer))),
            Err(err) => {
                tracing::debug!("no external printer: {err}");
                None
            }
        };
        let (asks_tx, asks_rx) = std_mpsc::sync_channel(1);
        let (answers_tx, answers_rx) = mpsc::channel(1);
        std::thread::Builder::new()
            .name("prompt".into())
            .spawn(move || serve(editor, asks_rx, answers_tx))?;
        let input = TerminalInput {
            asks: asks_tx,
            answers: answers_rx,
            waiting: false,
            saved,
        };
        Ok((input, printer))
    }

    /// The next line typed, or `None` after Ctrl-D. Cancel-safe: a cancelled call leaves the
    /// prompt up, and the next call collects its line.
    pub async fn next_line(&mut self) -> io::Result<Option<String>> {
        if !self.waiting {
            self.ask(Ask::Line)?;
            self.waiting = true;
        }
        let answer = self.answers.recv().await;
        self.waiting = false;
        match answer {
            Some(Answer::Line(line)) => Ok(Some(line)),
            Some(Answer::Eof) | None => Ok(None),
            Some(Answer::Failed(err)) => Err(err),
            Some(Answer::Password(_)) => Err(io::Error::other("the prompt answered out of turn")),
        }
    }

    /// Asks for `user`'s password without echoing it.
    pub async fn password(&mut self, user: &str) -> io::Result<String> {
        self.ask(Ask::Password(format!("password for {user}: ")))?;
        match self.answers.recv().await {
            Some(Answer::Password(password)) => Ok(password),
            Some(Answer::Failed(err)) => Err(err),
            Some(Answer::Eof) | None => Err(io::ErrorKind::UnexpectedEof.into()),
            Some(Answer::Line(_)) => Err(io::Error::other("the prompt answered out of turn")),
        }
    }

    fn ask(&self, ask: Ask) -> io::Result<()> {
        self.asks
            .try_send(ask)
            .map_err(|_| io::Error::other("the prompt thread has stopped"))
    }

    /// Leaves the terminal as it was found. When the prompt is still up (the connection was
    /// lost while the user typed), rustyline cannot be interrupted, so this waits briefly for
    /// it to print the last message, then restores the terminal's mode itself.
    pub async fn finish(self) {
        if !self.waiting {
            return;
        }
        tokio::time::sleep(LAST_PRINT_GRACE).await;
        if let Some(saved) = &self.saved {
            saved.restore();
        }
        // Switch off bracketed paste, which rustyline turns on, and leave the prompt's line.
        let mut stdout = io::stdout();
        let _ = stdout.write_all(b"\x1b[?2004l\n");
        let _ = stdout.flush();
    }
}

/// Reads lines and passwords for the session until the session goes away.
fn serve(
    mut editor: Editor<CommandHelper, DefaultHistory>,
    asks: std_mpsc::Receiver<Ask>,
    answers: mpsc::Sender<Answer>,
) {
    while let Ok(ask) = asks.recv() {
        let answer = match ask {
            Ask::Line => read_line(&mut editor),
            Ask::Password(prompt) => match rpassword::prompt_password(prompt) {
                Ok(password) => Answer::Password(password),
                Err(err) => Answer::Failed(err),
            },
        };
        if answers.blocking_send(answer).is_err() {
            break;
        }
    }
}

fn read_line(editor: &mut Editor<CommandHelper, DefaultHistory>) -> Answer {
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                if let Some(entry) = history_entry(&line) {
                    if let Err(err) = editor.add_history_entry(entry) {
                        tracing::debug!("cannot add to history: {err}");
                    }
                }
                return Answer::Line(line);
            }
            // Ctrl-C abandons the line being typed, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Answer::Eof,
            Err(err) => return Answer::Failed(io::Error::other(err)),
        }
    }
}

/// What to keep in history for a line: nothing for a blank line, and never a password.
fn history_entry(line: &str) -> Option<String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return None;
    }
    let mut words = trimmed.split_whitespace();
    match words.next() {
        Some("login") => {
            if let Some(user) = words.next() {
                return Some(format!("login {user}"));
            }
        }
        Some("passwd") => return Some("passwd".to_string()),
        _ => {}
    }
    Some(trimmed.to_string())
}

/// Completes the command word at the start of the line.
struct CommandHelper;

impl Completer for CommandHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = line.get(..pos).unwrap_or(line);
        let start = before.len() - before.trim_start().len();
        let word = &before[start..];
        if word.contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        let candidates = COMMAND_NAMES
            .iter()
            .filter(|name| name.starts_with(word))
            .map(|name| Pair {
                display: name.to_string(),
                replacement: format!("{name} "),
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for CommandHelper {
    type Hint = String;
}

impl Highlighter for CommandHelper {}

impl Validator for CommandHelper {}

impl Helper for CommandHelper {}

/// Prints through rustyline, above the line being typed.
struct PrinterSink<P>(P);

impl<P: ExternalPrinter + Send> LineSink for PrinterSink<P> {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        self.0.print(format!("{line}\n")).map_err(io::Error::other)
    }
}

/// The terminal's mode at start, to put back if the client exits while rustyline has it raw.
#[cfg(unix)]
struct SavedTerminal(nix::sys::termios::Termios);

#[cfg(unix)]
impl SavedTerminal {
    fn save() -> Option<SavedTerminal> {
        nix::sys::termios::tcgetattr(io::stdin())
            .ok()
            .map(SavedTerminal)
    }

    fn restore(&self) {
        let how = nix::sys::termios::SetArg::TCSANOW;
        if let Err(err) = nix::sys::termios::tcsetattr(io::stdin(), how, &self.0) {
            tracing::debug!("cannot restore the terminal: {err}");
        }
    }
}

#[cfg(not(unix))]
struct SavedTerminal;

#[cfg(not(unix))]
impl SavedTerminal {
    fn save() -> Option<SavedTerminal> {
        None
    }

    fn restore(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_history() {
        assert_eq!(history_entry("  "), None);
        assert_eq!(
            history_entry("login alice secret"),
            Some("login alice".into())
        );
        assert_eq!(history_entry("login alice"), Some("login alice".into()));
        assert_eq!(history_entry("passwd old new"), Some("passwd".into()));
        assert_eq!(history_entry(" send bob hi "), Some("send bob hi".into()));
    }

    #[track_caller]
    fn check_completion(line: &str, expected_start: usize, expected: &[&str]) {
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, pairs) = CommandHelper
            .complete(line, line.len(), &ctx)
            .expect("completion does not fail");
        let names: Vec<&str> = pairs.iter().map(|pair| pair.display.as_str()).collect();
        assert_eq!((start, names.as_slice()), (expected_start, expected));
    }

    #[test]
    fn completes_command_words() {
        check_completion("lo", 0, &["login", "logout"]);
        check_completion("  wh", 2, &["who", "whois", "whoami"]);
        check_completion("whoi", 0, &["whois"]);
        check_completion("send bo", 7, &[]);
        check_completion("", 0, COMMAND_NAMES);
    }
}
