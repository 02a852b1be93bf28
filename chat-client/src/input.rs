//! Where commands come from: a pipe or file, a person at a terminal, or a program that
//! parsed them already (the web gateway, from a page's JSON).

use crate::command::{parse_line, Command, ParseError};
use crate::terminal::TerminalInput;
use std::io;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, Lines};
use tokio::sync::mpsc;

/// One command as read: parsed, or refused with the error to answer. A blank line is none.
pub type Parsed = Result<Option<Command>, ParseError>;

/// A source of commands, read one at a time.
pub enum Input {
    /// Lines from a pipe or a file. Cannot ask for a password.
    Lines(Lines<Box<dyn AsyncBufRead + Unpin + Send>>),
    /// A person at a terminal, through rustyline.
    Terminal(TerminalInput),
    /// Commands parsed elsewhere, until the sender is dropped. Cannot ask for a password.
    Commands(mpsc::Receiver<Parsed>),
}

impl Input {
    /// Reads commands from any buffered reader, one per line.
    pub fn lines(reader: impl AsyncBufRead + Unpin + Send + 'static) -> Input {
        let reader: Box<dyn AsyncBufRead + Unpin + Send> = Box::new(reader);
        Input::Lines(reader.lines())
    }

    /// A person typing at a terminal, who may type ahead while the client fails over.
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, Input::Terminal(_))
    }

    /// The next command, or `None` at the end of the input (Ctrl-D). Cancel-safe. A terminal
    /// shows `prompt` (see `terminal::prompt`), and answers Ctrl-C with an error of kind
    /// [`io::ErrorKind::Interrupted`].
    pub(crate) async fn next(&mut self, prompt: &str) -> io::Result<Option<Parsed>> {
        let line = match self {
            Input::Lines(lines) => lines.next_line().await?,
            Input::Terminal(terminal) => terminal.next_line(prompt).await?,
            Input::Commands(commands) => return Ok(commands.recv().await),
        };
        Ok(line.map(|line| parse_line(&line)))
    }

    /// Asks the person for `user`'s password; `None` when the input is not a terminal.
    pub(crate) async fn password(&mut self, user: &str) -> io::Result<Option<String>> {
        match self {
            Input::Lines(_) | Input::Commands(_) => Ok(None),
            Input::Terminal(terminal) => terminal.password(user).await.map(Some),
        }
    }

    /// Gives the terminal back in the state it was found; call once, before exiting.
    pub async fn finish(self) {
        if let Input::Terminal(terminal) = self {
            terminal.finish().await;
        }
    }
}
