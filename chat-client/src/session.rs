//! The loop that runs commands one at a time and shows messages as they arrive.
//!
//! A [`Session`] reads a line, runs its command to the end (request, reply, answer) and only
//! then reads the next line, so answers come in the order of the commands. Meanwhile it keeps
//! showing delivered messages, each at most once, acknowledging each after it is shown.
//!
//! Everything happens on one task. Deliveries are polled before the running command, so a
//! message that the server sent before a reply is shown before that reply's answer.

use crate::command::{parse_line, Command, COMMAND_NAMES};
use crate::connection::{Connection, Incoming, RequestError};
use crate::output::{Answer, Event, Output};
use crate::seen::SeenIds;
use crate::terminal::TerminalInput;
use chat_proto::codec::MAX_LOG_BATCH;
use chat_proto::{ChatMessage, MessageId, Request, Response};
use futures::FutureExt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, Lines};
use tokio::sync::mpsc;

/// The `command` of errors about the connection itself.
pub const CONNECTION: &str = "connection";

/// Where command lines come from.
pub enum Input {
    /// Lines from a pipe or a file. Cannot ask for a password.
    Lines(Lines<Box<dyn AsyncBufRead + Unpin + Send>>),
    /// A person at a terminal, through rustyline.
    Terminal(TerminalInput),
}

impl Input {
    /// Reads commands from any buffered reader, one per line.
    pub fn lines(reader: impl AsyncBufRead + Unpin + Send + 'static) -> Input {
        let reader: Box<dyn AsyncBufRead + Unpin + Send> = Box::new(reader);
        Input::Lines(reader.lines())
    }

    /// The next line, or `None` at the end of the input. Cancel-safe.
    async fn next_line(&mut self) -> io::Result<Option<String>> {
        match self {
            Input::Lines(lines) => lines.next_line().await,
            Input::Terminal(terminal) => terminal.next_line().await,
        }
    }

    /// Asks the person for `user`'s password; `None` when the input is not a terminal.
    async fn password(&mut self, user: &str) -> io::Result<Option<String>> {
        match self {
            Input::Lines(_) => Ok(None),
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

/// Why [`Session::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The input ended and every command was answered.
    EndOfInput,
    /// The user typed `quit`.
    Quit,
    /// The connection ended; the error has been printed.
    Lost,
}

impl Exit {
    /// The process exit code for this ending.
    pub fn code(self) -> i32 {
        match self {
            Exit::EndOfInput | Exit::Quit => 0,
            Exit::Lost => 1,
        }
    }
}

/// What a finished command means for the loop.
enum Step {
    Next,
    Quit,
    /// The connection went away while the command waited; the reader reports why.
    Lost,
}

/// Why a command produced no answer.
enum Failure {
    /// Answered with an error line.
    Failed(String),
    /// Not answered: the connection is gone.
    Lost,
}

impl From<RequestError> for Failure {
    fn from(err: RequestError) -> Failure {
        match err {
            RequestError::Refused(reply) => Failure::Failed(reply.message),
            RequestError::ConnectionLost => Failure::Lost,
        }
    }
}

/// The reply did not fit the request: answered as an error, the connection stays open.
fn unexpected(response: Response) -> Failure {
    tracing::warn!("unexpected reply from the server: {response:?}");
    Failure::Failed("the server sent an unexpected reply".to_string())
}

/// Lets the running command finish if all it waits for has already arrived; a command still
/// waiting for the server is dropped.
fn settle(running: &mut Option<Pin<Box<dyn Future<Output = Step> + '_>>>) {
    if let Some(command) = running.take() {
        let _ = command.now_or_never();
    }
}

/// The error line for a connection that ended.
fn why_ended(conn: &Connection, ended: Option<Incoming>) -> String {
    match ended {
        Some(Incoming::Closing(reason)) => {
            format!("{} closed the connection: {reason}", conn.addr())
        }
        Some(Incoming::Lost(why)) => format!("connection to {} lost: {why}", conn.addr()),
        _ => format!("connection to {} lost", conn.addr()),
    }
}

/// What outlives one connection: where to print, and which messages were shown.
pub struct Session<'a> {
    output: &'a Output,
    seen: Mutex<SeenIds>,
}

impl<'a> Session<'a> {
    pub fn new(output: &'a Output) -> Session<'a> {
        Session {
            output,
            seen: Mutex::new(SeenIds::default()),
        }
    }

    fn seen(&self) -> MutexGuard<'_, SeenIds> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs commands from `input` over `connection` until the input ends, the user quits or
    /// the connection is lost. Closes the connection before returning.
    pub async fn run(
        &self,
        connection: Connection,
        mut incoming: mpsc::Receiver<Incoming>,
        input: &mut Input,
    ) -> Exit {
        self.output.emit(&Event::Connected {
            server: connection.server_name().to_string(),
        });
        let conn = &connection;
        let mut running: Option<Pin<Box<dyn Future<Output = Step> + '_>>> = None;
        let mut input_done = false;
        // Set when a command saw the connection go; the reader's report is on its way.
        let mut lost = false;
        let exit = loop {
            if input_done && running.is_none() && !lost {
                break Exit::EndOfInput;
            }
            tokio::select! {
                biased;
                event = incoming.recv() => match event {
                    Some(Incoming::Message(message)) => self.show_live(conn, message).await,
                    ended => {
                        // A reply that came before the goodbye is shown before it.
                        settle(&mut running);
                        self.output.error(CONNECTION, why_ended(conn, ended));
                        break Exit::Lost;
                    }
                },
                step = poll_running(&mut running) => {
                    running = None;
                    match step {
                        Step::Next => {}
                        Step::Quit => break Exit::Quit,
                        Step::Lost => lost = true,
                    }
                }
                line = input.next_line(), if running.is_none() && !input_done && !lost => {
                    match line {
                        Ok(Some(line)) => {
                            if let Some(command) = self.prepare(&line, input).await {
                                running = Some(Box::pin(self.execute(conn, command)));
                            }
                        }
                        Ok(None) => input_done = true,
                        Err(err) => {
                            tracing::debug!("cannot read input: {err}");
                            self.output.error("input", format!("cannot read input: {err}"));
                            input_done = true;
                        }
                    }
                }
            }
        };
        drop(running);
        connection.close().await;
        exit
    }

    /// Parses a line and asks for a missing password. `None` when there is nothing to run:
    /// a blank line, or an error that has been answered.
    async fn prepare(&self, line: &str, input: &mut Input) -> Option<Command> {
        let command = match parse_line(line) {
            Ok(command) => command?,
            Err(err) => {
                self.output.error(&err.command, err.message);
                return None;
            }
        };
        let Command::Login {
            user,
            password: None,
        } = command
        else {
            return Some(command);
        };
        match input.password(&user).await {
            Ok(Some(password)) => Some(Command::Login {
                user,
                password: Some(password),
            }),
            Ok(None) => {
                self.output
                    .error("login", "password required when input is not a terminal");
                None
            }
            Err(err) => {
                self.output
                    .error("login", format!("cannot read the password: {err}"));
                None
            }
        }
    }

    /// Runs one command and prints its answer.
    async fn execute(&self, conn: &Connection, command: Command) -> Step {
        let name = command.name();
        let quit = command == Command::Quit;
        match self.answer(conn, command).await {
            Ok(answer) => {
                self.output.emit(&Event::Ok(answer));
                if quit {
                    Step::Quit
                } else {
                    Step::Next
                }
            }
            Err(Failure::Failed(message)) => {
                self.output.error(name, message);
                Step::Next
            }
            Err(Failure::Lost) => Step::Lost,
        }
    }

    async fn answer(&self, conn: &Connection, command: Command) -> Result<Answer, Failure> {
        let answer = match command {
            Command::Login { user, password } => {
                let password = password.unwrap_or_default();
                match conn.request(Request::Login { user, password }).await? {
                    Response::LoggedIn {
                        user,
                        registered,
                        waiting,
                    } => Answer::Login {
                        user,
                        registered,
                        waiting,
                    },
                    other => return Err(unexpected(other)),
                }
            }
            Command::Logout => {
                expect_done(conn.request(Request::Logout).await?)?;
                Answer::Logout
            }
            Command::Send { to, text } => {
                let id = MessageId::new();
                match conn.request(Request::Send { id, to, text }).await? {
                    Response::Sent { id } => Answer::Send { id },
                    other => return Err(unexpected(other)),
                }
            }
            Command::Join { group } => {
                let request = Request::Join {
                    group: group.clone(),
                };
                expect_done(conn.request(request).await?)?;
                Answer::Join { group }
            }
            Command::Leave { group } => {
                let request = Request::Leave {
                    group: group.clone(),
                };
                expect_done(conn.request(request).await?)?;
                Answer::Leave { group }
            }
            Command::Groups => match conn.request(Request::Groups).await? {
                Response::Groups { all, joined } => Answer::Groups {
                    groups: all,
                    joined,
                },
                other => return Err(unexpected(other)),
            },
            Command::ReadLog => self.read_log(conn).await?,
            Command::Who => match conn.request(Request::Who).await? {
                Response::Users(users) => Answer::Who { users },
                other => return Err(unexpected(other)),
            },
            Command::WhoAmI => match conn.request(Request::WhoAmI).await? {
                Response::WhoAmI { user, server } => Answer::WhoAmI { user, server },
                other => return Err(unexpected(other)),
            },
            Command::Help => Answer::Help {
                commands: COMMAND_NAMES.iter().map(|name| name.to_string()).collect(),
            },
            Command::Quit => Answer::Quit,
        };
        Ok(answer)
    }

    /// Fetches the log batch by batch: shows each batch, confirms it, then asks for the next.
    ///
    /// A batch is confirmed only after it has been shown, so a client that dies midway leaves
    /// the rest on the server. The count is of the messages shown; duplicates are confirmed
    /// but not shown again.
    async fn read_log(&self, conn: &Connection) -> Result<Answer, Failure> {
        let mut count = 0;
        loop {
            let request = Request::ReadLog { max: MAX_LOG_BATCH };
            let (messages, more) = match conn.request(request).await? {
                Response::Log { messages, more } => (messages, more),
                other => return Err(unexpected(other)),
            };
            if messages.is_empty() {
                // An empty batch that claims more would make this loop spin: stop here.
                break;
            }
            let ids: Vec<MessageId> = messages.iter().map(|message| message.id).collect();
            for message in messages {
                if self.show(message, true) {
                    count += 1;
                }
            }
            expect_done(conn.request(Request::ConfirmLog { ids }).await?)?;
            if !more {
                break;
            }
        }
        Ok(Answer::ReadLog { count })
    }

    /// Shows a delivered message unless it was shown before, then acknowledges it either way.
    async fn show_live(&self, conn: &Connection, message: ChatMessage) {
        let id = message.id;
        self.show(message, false);
        conn.ack(id).await;
    }

    /// Shows a message the first time its id is seen; true when it was shown.
    fn show(&self, message: ChatMessage, offline: bool) -> bool {
        if !self.seen().insert(message.id) {
            return false;
        }
        self.output.emit(&Event::Message { message, offline });
        true
    }
}

fn expect_done(response: Response) -> Result<(), Failure> {
    match response {
        Response::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// Waits for the running command, or forever when there is none.
async fn poll_running<F: Future + ?Sized>(running: &mut Option<Pin<Box<F>>>) -> F::Output {
    match running {
        Some(future) => future.as_mut().await,
        None => std::future::pending().await,
    }
}
