//! Interactive mode: a rustyline prompt with a history kept across runs (`history`) and tab
//! completion of commands, users and groups (`completion`).
//!
//! rustyline blocks, so it runs on its own thread, which owns the terminal's input. The
//! session asks that thread for one line (or one password) at a time and waits for the
//! answer, so the prompt shows only when the previous command has been answered. Messages
//! that arrive meanwhile go through rustyline's external printer, which prints them above the
//! line being typed instead of through it.
//!
//! The prompt says where the client is ([`prompt`]): `alice@s2> ` when logged in on s2,
//! `(reconnecting)> ` while it looks for a server, `> ` otherwise. rustyline cannot change a
//! prompt that is up, so it is the place at the moment the prompt was shown.

use crate::completion::Vocabulary;
use crate::history;
use crate::output::{clean, LineSink};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Config, Context, Editor, ExternalPrinter, Helper};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where the client is, as the prompt shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// Connected, nobody logged in.
    Connected,
    /// `user` is logged in on `server`.
    LoggedIn { user: &'a str, server: &'a str },
    /// The connection was lost, and the client looks for a server.
    Reconnecting,
}

/// The prompt for `place`. Names from the network are escaped, as in every other output.
pub fn prompt(place: Place<'_>) -> String {
    match place {
        Place::Connected => "> ".to_string(),
        Place::LoggedIn { user, server } => format!("{}@{}> ", clean(user), clean(server)),
        Place::Reconnecting => "(reconnecting)> ".to_string(),
    }
}

/// How long to let the prompt thread print the last message before the terminal is restored.
const LAST_PRINT_GRACE: Duration = Duration::from_millis(100);

/// What the session asks the prompt thread for.
enum Ask {
    /// A line, with this prompt.
    Line(String),
    Password(String),
}

/// What the prompt thread answers.
enum Answer {
    Line(String),
    Password(String),
    /// Ctrl-C.
    Interrupted,
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
    /// Starts the prompt thread, completing from `vocabulary` and keeping the history in the
    /// file `history` (none when `None`). Also returns a sink that prints above the prompt,
    /// unless standard output is not a terminal (then plain standard output serves).
    pub fn start(
        vocabulary: Vocabulary,
        history: Option<PathBuf>,
    ) -> io::Result<(TerminalInput, Option<Box<dyn LineSink>>)> {
        let saved = SavedTerminal::save();
        let config = Config::builder()
            .max_history_size(history::MAX_LINES)
            .map_err(io::Error::other)?
            .build();
        let mut editor: Editor<Completion, DefaultHistory> =
            Editor::with_config(config).map_err(io::Error::other)?;
        editor.set_helper(Some(Completion(vocabulary)));
        let history = history.and_then(|path| load_history(&mut editor, path));
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
            .spawn(move || serve(editor, history, asks_rx, answers_tx))?;
        let input = TerminalInput {
            asks: asks_tx,
            answers: answers_rx,
            waiting: false,
            saved,
        };
        Ok((input, printer))
    }

    /// The next line typed after `prompt`, or `None` after Ctrl-D; Ctrl-C is an error of kind
    /// [`io::ErrorKind::Interrupted`], and the line typed so far is dropped. Cancel-safe: a
    /// cancelled call leaves the prompt up, and the next call collects its line.
    pub async fn next_line(&mut self, prompt: &str) -> io::Result<Option<String>> {
        if !self.waiting {
            self.ask(Ask::Line(prompt.to_string()))?;
            self.waiting = true;
        }
        let answer = self.answers.recv().await;
        self.waiting = false;
        match answer {
            Some(Answer::Line(line)) => Ok(Some(line)),
            Some(Answer::Eof) | None => Ok(None),
            Some(Answer::Interrupted) => Err(io::ErrorKind::Interrupted.into()),
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
            Some(Answer::Line(_) | Answer::Interrupted) => {
                Err(io::Error::other("the prompt answered out of turn"))
            }
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

/// Reads the history file into `editor`. Returns the file to append to, or `None` (with a
/// note on standard error) when it cannot be used: the session then keeps no history on disk.
fn load_history(editor: &mut Editor<Completion, DefaultHistory>, path: PathBuf) -> Option<PathBuf> {
    let made = match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(ReadlineError::from),
        None => Ok(()),
    };
    let loaded = made.and_then(|()| match editor.load_history(&path) {
        Err(ReadlineError::Io(err)) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        loaded => loaded,
    });
    match loaded {
        Ok(()) => Some(path),
        Err(err) => {
            eprintln!(
                "cannot use the history file {}: {err}; this session's lines are not kept",
                path.display()
            );
            None
        }
    }
}

/// Reads lines and passwords for the session until the session goes away.
fn serve(
    mut editor: Editor<Completion, DefaultHistory>,
    history: Option<PathBuf>,
    asks: std_mpsc::Receiver<Ask>,
    answers: mpsc::Sender<Answer>,
) {
    while let Ok(ask) = asks.recv() {
        let answer = match ask {
            Ask::Line(prompt) => read_line(&mut editor, history.as_deref(), &prompt),
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

fn read_line(
    editor: &mut Editor<Completion, DefaultHistory>,
    history: Option<&Path>,
    prompt: &str,
) -> Answer {
    match editor.readline(prompt) {
        Ok(line) => {
            if let Some(entry) = history::keep(&line) {
                if let Err(err) = editor.add_history_entry(entry) {
                    tracing::debug!("cannot add to history: {err}");
                }
                // At once, so that a client that is killed loses no line typed before.
                if let Some(path) = history {
                    if let Err(err) = editor.append_history(path) {
                        tracing::debug!("cannot write the history to {}: {err}", path.display());
                    }
                }
            }
            Answer::Line(line)
        }
        // Ctrl-C abandons the line being typed, as in a shell; the session decides what else.
        Err(ReadlineError::Interrupted) => Answer::Interrupted,
        Err(ReadlineError::Eof) => Answer::Eof,
        Err(err) => Answer::Failed(io::Error::other(err)),
    }
}

/// Completes commands, users and groups from what the session has seen.
struct Completion(Vocabulary);

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, replacements) = self.0.complete(line, pos);
        let candidates = replacements
            .into_iter()
            .map(|replacement| Pair {
                display: replacement.trim_end().to_string(),
                replacement,
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for Completion {
    type Hint = String;
}

impl Highlighter for Completion {}

impl Validator for Completion {}

impl Helper for Completion {}

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
    fn the_prompt_says_where_the_client_is() {
        assert_eq!(prompt(Place::Connected), "> ");
        let on_s2 = Place::LoggedIn {
            user: "alice",
            server: "s2",
        };
        assert_eq!(prompt(on_s2), "alice@s2> ");
        assert_eq!(prompt(Place::Reconnecting), "(reconnecting)> ");
        // A server's name that would move the cursor is shown escaped.
        let odd = Place::LoggedIn {
            user: "bob",
            server: "s\u{1b}[2J",
        };
        assert_eq!(prompt(odd), "bob@s\\u{1b}[2J> ");
    }
}
