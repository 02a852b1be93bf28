//! The loop that runs commands one at a time, shows messages as they arrive, and keeps the
//! session connected.
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
//!
//! When the connection is lost (closed, said goodbye, stopped answering pings, or answered
//! that it is shutting down), the loop fails over (see `failover`) without a word until it
//! prints the new `connected` event: the command that was running runs again, then the rest.
//! After a reconnect with a login it first fetches the offline log, as `readlog` does, to show
//! what was stored while the user was moving. While a user is logged in, the loop refreshes
//! the ring every so often, and when the user is away from home it moves there, the same way,
//! once home takes them. A failover that finds every server refused for its key (see
//! `handshake`) ends the session with one `connection` error: no command can run.

use crate::command::Command;
use crate::connection::{ConnectError, ConnectOptions, Connection, Incoming, CONNECT_TIMEOUT};
use crate::execute::{Job, Step};
use crate::failover::{self, HomeCheck, Reconnected, FAILOVER_CONNECT_TIMEOUT};
use crate::farm::Moved;
use crate::handshake::ServerTrust;
use crate::heartbeat::Heartbeat;
use crate::input::{Input, Parsed};
use crate::output::{Answer, Event, Output};
use crate::seen::SeenIds;
use crate::terminal::{self, Place};
use chat_proto::{ChatMessage, Forwarded};
use conversation::Conversation;
use moves::{close, requeue, Placement};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

mod conversation;
mod echo;
mod moves;

/// The `command` of errors about the connection itself.
pub const CONNECTION: &str = "connection";

/// How long to wait between two looks at home, by default, give or take a quarter. Slow: the
/// server pushes `GoHome` when home is back, and the poll is only for a push that was missed.
pub const DEFAULT_HOME_POLL: Duration = Duration::from_secs(30);

/// How many commands a person may type ahead while the client fails over.
const MAX_TYPED_AHEAD: usize = 100;

/// Why [`Session::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The input ended and every command was answered.
    EndOfInput,
    /// The user typed `quit`.
    Quit,
    /// The connection was lost, and every server the failover tried presented a key this
    /// client refuses.
    Untrusted,
}

impl Exit {
    /// The process exit code for this ending.
    pub fn code(self) -> i32 {
        match self {
            Exit::EndOfInput | Exit::Quit => 0,
            Exit::Untrusted => 1,
        }
    }
}

/// How a session connects, watches its server, and comes back to the farm.
#[derive(Debug, Clone)]
pub struct Config {
    /// The servers named at start; a reconnect tries them when the ring does not help.
    pub seeds: Vec<String>,
    /// How every connection pings its server; `None` for no pings.
    pub heartbeat: Option<Heartbeat>,
    /// How long to wait between two looks at the ring, and at home while logged in elsewhere,
    /// give or take a quarter. A `GoHome` push from the server looks at once.
    pub home_poll: Duration,
    /// Which server keys every connection accepts.
    pub trust: ServerTrust,
    /// For a front end of the farm (the web gateway): where its user really is, said on every
    /// connection before the login.
    pub forwarded: Option<Forwarded>,
}

impl Config {
    /// The defaults, with these seeds and this trust in server keys.
    pub fn new(seeds: Vec<String>, trust: ServerTrust) -> Config {
        Config {
            seeds,
            heartbeat: Some(Heartbeat::default()),
            home_poll: DEFAULT_HOME_POLL,
            trust,
            forwarded: None,
        }
    }

    /// For connections the user waits for: at start and at login.
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            timeout: CONNECT_TIMEOUT,
            heartbeat: self.heartbeat,
            trust: self.trust.clone(),
            forwarded: self.forwarded.clone(),
        }
    }

    /// For connections made on the user's behalf: failing over and looking at home.
    pub fn failover_options(&self) -> ConnectOptions {
        ConnectOptions {
            timeout: FAILOVER_CONNECT_TIMEOUT,
            heartbeat: self.heartbeat,
            trust: self.trust.clone(),
            forwarded: self.forwarded.clone(),
        }
    }
}

type Task<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The job running now, and the job to run again should its connection go.
struct Running<'a> {
    job: Option<Job>,
    task: Task<'a, Step>,
}

/// The loop's state between two events.
struct State<'a> {
    /// The current connection; `None` while failing over.
    conn: Option<Arc<Connection>>,
    incoming: Option<mpsc::Receiver<Incoming>>,
    /// The reconnect under way while there is no connection.
    reconnecting: Option<Task<'a, Result<Reconnected, ConnectError>>>,
    running: Option<Running<'a>>,
    /// Jobs waiting their turn, in order.
    queue: VecDeque<Job>,
    /// The next look at the ring and at home, while a user is logged in.
    homing: Option<Task<'a, HomeCheck>>,
    /// A login at home, waiting for the running job to finish before the switch.
    home_switch: Option<Moved>,
    input_done: bool,
}

/// What outlives one connection: where to print, which messages were shown, who is logged in.
pub struct Session<'a> {
    pub(crate) output: &'a Output,
    pub(crate) config: Config,
    seen: Mutex<SeenIds>,
    /// The ids of the messages this device sent, whose echoes it does not show.
    sent: Mutex<SeenIds>,
    placement: Mutex<Placement>,
    /// Where `/me` goes.
    conversation: Mutex<Conversation>,
}

impl<'a> Session<'a> {
    pub fn new(output: &'a Output, config: Config) -> Session<'a> {
        Session {
            output,
            config,
            seen: Mutex::new(SeenIds::default()),
            sent: Mutex::new(SeenIds::default()),
            placement: Mutex::new(Placement::default()),
            conversation: Mutex::new(Conversation::default()),
        }
    }

    fn seen(&self) -> MutexGuard<'_, SeenIds> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sent(&self) -> MutexGuard<'_, SeenIds> {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs commands from `input` over `connection` until the input ends and every command
    /// is answered, or the user quits. Closes the connection before returning.
    pub async fn run(
        &self,
        connection: Connection,
        incoming: mpsc::Receiver<Incoming>,
        input: &mut Input,
    ) -> Exit {
        self.emit_connected(&connection);
        let mut state = State {
            conn: Some(Arc::new(connection)),
            incoming: Some(incoming),
            reconnecting: None,
            running: None,
            queue: VecDeque::new(),
            homing: None,
            home_switch: None,
            input_done: false,
        };
        let exit = loop {
            if let Some(exit) = self.advance(&mut state).await {
                break exit;
            }
            let can_read = !state.input_done
                && match state.conn {
                    Some(_) => state.running.is_none() && state.queue.is_empty(),
                    // The input is read while failing over, so that `quit` is seen at once;
                    // what else is typed waits for the new connection.
                    None => state.queue.len() < MAX_TYPED_AHEAD,
                };
            let prompt = self.prompt(&state);
            tokio::select! {
                biased;
                event = recv(&mut state.incoming) => match (event, &state.conn) {
                    (Some(Incoming::Message(message)), Some(conn)) => {
                        let conn = conn.clone();
                        self.show_live(&conn, message).await;
                    }
                    (Some(Incoming::Echo(message)), Some(_)) => self.show_echo(message),
                    (Some(Incoming::Notice(notice)), Some(_)) => {
                        self.output.emit(&Event::Notice(notice));
                    }
                    (Some(Incoming::GoHome { server }), Some(_)) => {
                        self.called_home(&mut state, &server);
                    }
                    (Some(Incoming::Ring(ring)), Some(_)) => self.placement().ring = Some(ring),
                    (ended, _) => {
                        tracing::debug!("connection ended: {ended:?}");
                        if let Some(exit) = self.lose(&mut state).await {
                            break exit;
                        }
                    }
                },
                step = poll_running(&mut state.running) => {
                    let job = state.running.take().and_then(|running| running.job);
                    match step {
                        Step::Next => {}
                        Step::Quit => break Exit::Quit,
                        Step::Retry => {
                            requeue(&mut state.queue, job);
                            if let Some(exit) = self.lose(&mut state).await {
                                break exit;
                            }
                        }
                        Step::Switch { moved, answer } => self.switch(&mut state, *moved, answer).await,
                    }
                }
                reconnected = poll(&mut state.reconnecting) => {
                    state.reconnecting = None;
                    match reconnected {
                        Ok(reconnected) => self.reconnected(&mut state, reconnected),
                        Err(err) => {
                            // Every server refused for its key: trying on would loop forever.
                            self.output.error(CONNECTION, err.to_string());
                            break Exit::Untrusted;
                        }
                    }
                }
                check = poll(&mut state.homing) => {
                    state.homing = None;
                    if check.ring.is_some() {
                        self.placement().ring = check.ring;
                    }
                    if let Some(news) = check.ticket {
                        self.ticket_news(&check.credentials, news);
                    }
                    state.home_switch = check.moved;
                }
                read = input.next(&prompt), if can_read => match read {
                    Ok(Some(parsed)) => {
                        let Some(command) = self.prepare(parsed, input).await else {
                            continue;
                        };
                        if command == Command::Quit && state.conn.is_none() {
                            // Nothing else can be answered until the farm is back.
                            self.output.emit(&Event::Ok(Answer::Quit));
                            break Exit::Quit;
                        }
                        state.queue.push_back(Job::command(command));
                    }
                    // Ctrl-D at a terminal while failing over: nothing typed can be answered.
                    Ok(None) if state.conn.is_none() && input.is_terminal() => {
                        break Exit::EndOfInput;
                    }
                    Ok(None) => state.input_done = true,
                    // Ctrl-C drops the line typed; while failing over it quits.
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {
                        if state.conn.is_none() {
                            self.output.emit(&Event::Ok(Answer::Quit));
                            break Exit::Quit;
                        }
                    }
                    Err(err) => {
                        tracing::debug!("cannot read input: {err}");
                        self.output.error("input", format!("cannot read input: {err}"));
                        state.input_done = true;
                    }
                }
            }
        };
        state.running = None;
        state.homing = None;
        state.reconnecting = None;
        if let Some(moved) = state.home_switch.take() {
            moved.connection.close().await;
        }
        if let Some(conn) = state.conn.take() {
            close(conn).await;
        }
        exit
    }

    /// Does what needs no event: switches home or starts the next job when nothing runs,
    /// starts the next look at home. Returns the exit once nothing is left to do.
    async fn advance(&'a self, state: &mut State<'a>) -> Option<Exit> {
        if state.running.is_none() && state.conn.is_some() {
            if state.homing.is_none() && state.home_switch.is_none() {
                self.start_homing(state, failover::around(self.config.home_poll));
            }
            if let Some(moved) = state.home_switch.take() {
                self.switch_home(state, moved).await;
            }
            if let (Some(conn), Some(job)) = (&state.conn, state.queue.pop_front()) {
                let task = Box::pin(self.execute(conn.clone(), job.clone()));
                state.running = Some(Running {
                    job: Some(job),
                    task,
                });
            }
        }
        // Input over, nothing pending: a lost connection need not be replaced.
        if state.input_done && state.running.is_none() && state.queue.is_empty() {
            return Some(Exit::EndOfInput);
        }
        None
    }

    /// The prompt for where the client is now.
    fn prompt(&self, state: &State<'_>) -> String {
        let placement = self.placement();
        let place = match (&state.conn, &placement.credentials) {
            (None, _) => Place::Reconnecting,
            (Some(conn), Some(credentials)) => Place::LoggedIn {
                user: &credentials.user,
                server: conn.server_name(),
            },
            (Some(_), None) => Place::Connected,
        };
        terminal::prompt(place)
    }

    fn emit_connected(&self, connection: &Connection) {
        self.output.emit(&Event::Connected {
            server: connection.server_name().to_string(),
        });
    }

    /// Answers a command that did not parse, and asks for a missing password. `None` when
    /// there is nothing to run: a blank line, or an error that has been answered.
    async fn prepare(&self, parsed: Parsed, input: &mut Input) -> Option<Command> {
        let command = match parsed {
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

    /// Shows a delivered message unless it was shown before, then acknowledges it either way,
    /// once it is written out (see `Output::written`). One that never will be is left to the
    /// server, which stores it for the next `readlog`.
    async fn show_live(&self, conn: &Connection, message: ChatMessage) {
        let id = message.id;
        self.show(message, false);
        if self.output.written().await {
            conn.ack(id).await;
        }
    }

    /// Shows a message the first time its id is seen; true when it was shown.
    pub(crate) fn show(&self, message: ChatMessage, offline: bool) -> bool {
        if !self.seen().insert(message.id) {
            return false;
        }
        self.output.emit(&Event::Message { message, offline });
        true
    }
}

/// The next event of the connection, or never when there is none.
async fn recv(incoming: &mut Option<mpsc::Receiver<Incoming>>) -> Option<Incoming> {
    match incoming {
        Some(incoming) => incoming.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits for the running job, or forever when there is none.
async fn poll_running(running: &mut Option<Running<'_>>) -> Step {
    match running {
        Some(running) => running.task.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Waits for a task, or forever when there is none.
async fn poll<T>(task: &mut Option<Task<'_, T>>) -> T {
    match task {
        Some(task) => task.as_mut().await,
        None => std::future::pending().await,
    }
}
