//! The loop that runs commands one at a time and shows messages as they arrive.
//!
//! A [`Session`] reads a line, runs its command to the end (request, reply, answer) and only
//! then reads the next line, so answers come in the order of the commands. Meanwhile it keeps
//! showing delivered messages, each at most once, acknowledging each after it is shown.
//!
//! Everything happens on one task. Deliveries are polled before the running command, so a
//! message that the server sent before a reply is shown before that reply's answer.
//!
//! A login may land on another server (see `farm`). The command then hands the new connection
//! back to the loop, which closes the old one quietly, swaps the new one in, and prints its
//! `connected` event before the login's answer. The shown message ids outlive the switch.

use crate::command::{parse_line, Command, COMMAND_NAMES};
use crate::connection::{Connection, Incoming, RequestError};
use crate::farm::{self, LoginError, Moved};
use crate::input::Input;
use crate::output::{Answer, Event, Output};
use crate::seen::SeenIds;
use chat_proto::codec::MAX_LOG_BATCH;
use chat_proto::{ChatMessage, MessageId, Request, Response};
use futures::FutureExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// The `command` of errors about the connection itself.
pub const CONNECTION: &str = "connection";

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
    /// A login landed on another server: swap its connection in, then print the answer.
    Switch {
        moved: Box<Moved>,
        answer: Answer,
    },
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

impl From<LoginError> for Failure {
    fn from(err: LoginError) -> Failure {
        match err {
            LoginError::Lost => Failure::Lost,
            LoginError::Failed(message) => Failure::Failed(message),
            LoginError::Unexpected(response) => unexpected(response),
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

/// Closes a connection once no command holds it any more.
async fn close(conn: Arc<Connection>) {
    match Arc::try_unwrap(conn) {
        Ok(conn) => conn.close().await,
        // Dropping the last handle closes its queues, which ends the writer.
        Err(_) => tracing::warn!("a connection was still in use as it closed"),
    }
}

/// What outlives one connection: where to print, and which messages were shown.
pub struct Session<'a> {
    output: &'a Output,
    seen: Mutex<SeenIds>,
    /// A user is logged in on the current connection. Another login then stays on it, and
    /// the server refuses it, instead of moving the session to that user's home.
    logged_in: AtomicBool,
}

impl<'a> Session<'a> {
    pub fn new(output: &'a Output) -> Session<'a> {
        Session {
            output,
            seen: Mutex::new(SeenIds::default()),
            logged_in: AtomicBool::new(false),
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
        let mut conn = Arc::new(connection);
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
                    Some(Incoming::Message(message)) => self.show_live(&conn, message).await,
                    ended => {
                        // A reply that came before the goodbye is shown before it.
                        settle(&mut running);
                        self.output.error(CONNECTION, why_ended(&conn, ended));
                        break Exit::Lost;
                    }
                },
                step = poll_running(&mut running) => {
                    running = None;
                    match step {
                        Step::Next => {}
                        Step::Quit => break Exit::Quit,
                        Step::Lost => lost = true,
                        Step::Switch { moved, answer } => {
                            let old = std::mem::replace(&mut conn, Arc::new(moved.connection));
                            // The old connection's end is never read, so never reported.
                            incoming = moved.incoming;
                            close(old).await;
                            self.output.emit(&Event::Connected {
                                server: conn.server_name().to_string(),
                            });
                            // The loop shows what the new server delivered before its login
                            // reply, then this prints the answer.
                            running = Some(Box::pin(self.emit_answer(answer)));
                        }
                    }
                }
                line = input.next_line(), if running.is_none() && !input_done && !lost => {
                    match line {
                        Ok(Some(line)) => {
                            if let Some(command) = self.prepare(&line, input).await {
                                running = Some(Box::pin(self.execute(conn.clone(), command)));
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
        close(conn).await;
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

    /// Runs one command and prints its answer, unless the loop must switch connections first.
    async fn execute(&self, conn: Arc<Connection>, command: Command) -> Step {
        let name = command.name();
        match self.answer(&conn, command).await {
            Ok((answer, Some(moved))) => Step::Switch {
                moved: Box::new(moved),
                answer,
            },
            Ok((answer, None)) => {
                let quit = answer == Answer::Quit;
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

    /// Prints an answer that had to wait for a switch of connections.
    async fn emit_answer(&self, answer: Answer) -> Step {
        self.output.emit(&Event::Ok(answer));
        Step::Next
    }

    /// Logs in on the user's home server (see `farm`), or on the current connection when a
    /// user is logged in there already. Returns the new connection when the login moved.
    async fn log_in(
        &self,
        conn: &Connection,
        user: String,
        password: String,
    ) -> Result<(Answer, Option<Moved>), Failure> {
        let logged_in = if self.logged_in.load(Ordering::Relaxed) {
            farm::log_in_here(conn, &user, &password).await?
        } else {
            farm::log_in(conn, &user, &password).await?
        };
        self.logged_in.store(true, Ordering::Relaxed);
        let answer = Answer::Login {
            user: logged_in.user,
            registered: logged_in.registered,
            waiting: logged_in.waiting,
        };
        Ok((answer, logged_in.moved))
    }

    /// Runs one command; a login returns the new connection when it moved.
    async fn answer(
        &self,
        conn: &Connection,
        command: Command,
    ) -> Result<(Answer, Option<Moved>), Failure> {
        let answer = match command {
            Command::Login { user, password } => {
                return self.log_in(conn, user, password.unwrap_or_default()).await
            }
            Command::Logout => {
                expect_done(conn.request(Request::Logout).await?)?;
                self.logged_in.store(false, Ordering::Relaxed);
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
            Command::WhoIs { user } => match conn.request(Request::WhoIs { user }).await? {
                Response::WhoIs {
                    user,
                    online,
                    server,
                    home,
                    backup,
                } => Answer::WhoIs {
                    user,
                    online,
                    server,
                    home,
                    backup,
                },
                other => return Err(unexpected(other)),
            },
            Command::WhoAmI => match conn.request(Request::WhoAmI).await? {
                Response::WhoAmI {
                    user,
                    server,
                    home,
                    backup,
                } => Answer::WhoAmI {
                    user,
                    server,
                    home,
                    backup,
                },
                other => return Err(unexpected(other)),
            },
            Command::Help => Answer::Help {
                commands: COMMAND_NAMES.iter().map(|name| name.to_string()).collect(),
            },
            Command::Quit => Answer::Quit,
        };
        Ok((answer, None))
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
