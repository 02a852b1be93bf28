//! A command-line client for the chat server, for people at a terminal and for scripts.
//!
//! It reads one command per line, sends it, and prints the answer; it prints every message
//! delivered to the logged-in user, once, and then acknowledges it. With `--json` every line it
//! prints is one JSON object, a public interface that scripts and tests rely on.
//!
//! - `command`: parsing a typed line into a [`command::Command`], with local validation.
//! - `connection`: the hello, the reader and writer tasks, and matching replies to requests.
//! - `farm`: choosing a server: the first that answers, then the user's home at login.
//! - `input`: where command lines come from, a pipe or the terminal.
//! - `session`: the loop that runs commands in order and shows and acknowledges messages.
//! - `seen`: the bounded memory of shown message ids that keeps a message from showing twice.
//! - `output`: each [`output::Event`] rendered as JSON or as a line for people.
//! - `terminal`: the interactive prompt (rustyline) on its own thread.
//!
//! **The client never sends input it can tell is invalid**: bad names, empty or over-long text
//! and unknown commands are answered locally. **It never acknowledges a message before showing
//! it**, and never confirms a `readlog` batch before showing the whole batch. **It never
//! writes logs to standard output**, which belongs to the events. **Only the writer task
//! writes to the socket.**

pub mod command;
pub mod connection;
pub mod farm;
pub mod input;
pub mod output;
pub mod seen;
pub mod session;
pub mod terminal;
