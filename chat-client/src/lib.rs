//! A command-line client for the chat server, for people at a terminal and for scripts.
//!
//! It reads one command per line, sends it, and prints the answer; it prints every message
//! delivered to the logged-in user, once, and then acknowledges it. With `--json` every line it
//! prints is one JSON object, a public interface that scripts and tests rely on.
//!
//! - `command`: parsing a typed line into a [`command::Command`], with local validation, and
//!   IRC's `/` forms.
//! - `connection`: a live connection: the reader and writer tasks, and matching replies to
//!   requests.
//! - `handshake`: opening a connection: the Noise handshake, the check of the server's key
//!   (pinned, or trusted on first use), the hello; and the rekey timer.
//! - `heartbeat`: pinging the server, and ending the connection when it stops answering.
//! - `farm`: choosing a server: the first that answers, then the user's home at login.
//! - `failover`: coming back after a lost server (the user's ring order, backoff, logging in
//!   again), and looking at home while logged in elsewhere.
//! - `login`: the one login function and its outcome, for every login of a session; where the
//!   resume ticket is used, and the password when the ticket is refused.
//! - `input`: where commands come from: a pipe, the terminal, or a program's channel.
//! - `json_command`: a command given as a JSON object (the web gateway's protocol).
//! - `ticket_text`: a resume ticket as hex, for a front end that must log in elsewhere.
//! - `config_dir`: the client's folder, for the known servers and the history.
//! - `known_servers`: trust on first use of a server's key, as SSH's `known_hosts`.
//! - `session`: the loop that runs commands in order, shows and acknowledges messages, and
//!   fails over when the connection is lost.
//! - `execute`: what each command does on a connection, and which commands run again.
//! - `seen`: the bounded memory of shown message ids that keeps a message from showing twice.
//! - `output`: each [`output::Event`] rendered as JSON or as a line for people.
//! - `clock`: a message's time, as ISO 8601 in UTC for JSON and as local time for people.
//! - `terminal`: the interactive prompt (rustyline) on its own thread.
//! - `completion`: what Tab completes at the prompt, from the names the client has seen.
//! - `history`: the prompt's history file, and the lines (with passwords) it never keeps.
//!
//! **The client never sends input it can tell is invalid**: bad names, empty or over-long text
//! and unknown commands are answered locally. **It never acknowledges a message before showing
//! it**, and never confirms a `readlog` batch before showing the whole batch. **It never
//! writes logs to standard output**, which belongs to the events. **Only the writer task
//! writes to the socket.** **Nothing but the handshake crosses the wire in the clear, and
//! nothing at all is sent to a server whose key was refused.** **A command that was not
//! answered runs again after a failover, and a `send` keeps its message id across attempts**,
//! so that nothing the user was told is sent is lost or shown twice. **The password and the
//! resume ticket are kept in memory only**, to log in again, **and no line that carries a
//! password enters the history**, in memory or on disk.

pub mod clock;
pub mod command;
pub mod completion;
pub mod config_dir;
pub mod connection;
mod execute;
pub mod failover;
pub mod farm;
pub mod handshake;
pub mod heartbeat;
pub mod history;
pub mod input;
pub mod json_command;
pub mod known_servers;
pub mod login;
pub mod output;
pub mod seen;
pub mod session;
pub mod terminal;
pub mod ticket_text;
