//! What each command does on a connection: its requests, their replies, and its answer.
//!
//! The session loop runs every command as a [`Job`]. A job whose connection goes away, or
//! whose server answers that it is shutting down, ends in [`Step::Retry`], and the loop runs
//! it again after the failover. A `send` keeps the message id it was given when it was typed,
//! so the server stores the message once however many attempts it takes.

use crate::command::{Command, COMMAND_NAMES};
use crate::connection::{Connection, RequestError};
use crate::farm::{self, Moved};
use crate::login::{Credentials, HeldTicket, LoggedIn, Login, Outcome, Target};
use crate::output::{Answer, Event};
use crate::session::Session;
use crate::ticket_text::TicketText;
use chat_proto::codec::MAX_LOG_BATCH;
use chat_proto::{ErrorCode, GroupEntry, MessageId, Recipient, Request, Response, MAX_PAGE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A command ready to run, with what must stay the same when it runs again.
#[derive(Debug)]
pub(crate) struct Prepared {
    command: Command,
    /// The id a `send` uses on every attempt, chosen once, when the command was typed.
    message_id: MessageId,
    /// How many messages a `readlog` has shown so far, over every attempt.
    shown: AtomicU64,
}

/// Something for the session loop to run on the current connection, one at a time.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    Command(Arc<Prepared>),
    /// The automatic fetch of the offline log after a reconnect: `readlog` without its answer.
    FetchLog,
}

impl Job {
    pub(crate) fn command(command: Command) -> Job {
        let message_id = match &command {
            Command::Send { id: Some(id), .. } => *id,
            _ => MessageId::new(),
        };
        Job::Command(Arc::new(Prepared {
            command,
            message_id,
            shown: AtomicU64::new(0),
        }))
    }

    /// A `readlog`, which does all that the automatic fetch would.
    pub(crate) fn is_read_log(&self) -> bool {
        matches!(self, Job::Command(prepared) if prepared.command == Command::ReadLog)
    }
}

/// What a finished job means for the loop.
pub(crate) enum Step {
    Next,
    Quit,
    /// The job could not finish on this connection: fail over, then run it again.
    Retry,
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
    /// Not answered: the connection is gone, or its server is going down.
    Retry,
}

impl From<RequestError> for Failure {
    fn from(err: RequestError) -> Failure {
        match err {
            RequestError::Refused(reply) if reply.code == ErrorCode::ShuttingDown => Failure::Retry,
            RequestError::Refused(reply) => Failure::Failed(reply.message),
            RequestError::ConnectionLost => Failure::Retry,
        }
    }
}

/// The reply did not fit the request: answered as an error, the connection stays open.
fn unexpected(response: Response) -> Failure {
    tracing::warn!("unexpected reply from the server: {response:?}");
    Failure::Failed("the server sent an unexpected reply".to_string())
}

/// An item of a paged list, and the cursor it leaves for the next page.
trait Named {
    fn name(&self) -> &str;
}

impl Named for String {
    fn name(&self) -> &str {
        self
    }
}

impl Named for GroupEntry {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Asks for a list page after page and returns it whole: `ask(after)` is the request for the
/// page after the cursor, and `page` takes its items and whether more follow out of the reply
/// (or hands back a reply that does not fit). Each page starts after the last name of the one
/// before, so the server never answers with more than a page.
async fn all_pages<T: Named>(
    conn: &Connection,
    ask: impl Fn(Option<String>) -> Request,
    page: impl Fn(Response) -> Result<(Vec<T>, bool), Response>,
) -> Result<Vec<T>, Failure> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (batch, more) = page(conn.request(ask(after.clone())).await?).map_err(unexpected)?;
        let last = batch.last().map(|item| item.name().to_owned());
        items.extend(batch);
        // A page that would not move the cursor would make this loop spin: stop there.
        match last {
            Some(last) if more && after.as_ref() != Some(&last) => after = Some(last),
            _ => return Ok(items),
        }
    }
}

/// A page of user names (`who`, `members`), or the reply that is not one.
fn user_page(response: Response) -> Result<(Vec<String>, bool), Response> {
    match response {
        Response::Users { users, more } => Ok((users, more)),
        other => Err(other),
    }
}

fn expect_done(response: Response) -> Result<(), Failure> {
    match response {
        Response::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

impl Session<'_> {
    /// Runs one job and prints its answer, unless the loop must switch connections first.
    pub(crate) async fn execute(&self, conn: Arc<Connection>, job: Job) -> Step {
        let prepared = match job {
            Job::FetchLog => return self.fetch_log(&conn).await,
            Job::Command(prepared) => prepared,
        };
        let name = prepared.command.name();
        match self.answer(&conn, &prepared).await {
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
            Err(Failure::Retry) => Step::Retry,
        }
    }

    /// Prints an answer that had to wait for a switch of connections.
    pub(crate) async fn emit_answer(&self, answer: Answer) -> Step {
        self.output.emit(&Event::Ok(answer));
        Step::Next
    }

    /// Shows what waited for the user, as `readlog` does, but prints no answer: a failure
    /// leaves the messages on the server for the next fetch or `readlog`.
    async fn fetch_log(&self, conn: &Connection) -> Step {
        match self.read_log(conn, &AtomicU64::new(0)).await {
            Ok(_) => Step::Next,
            Err(Failure::Retry) => Step::Retry,
            Err(Failure::Failed(message)) => {
                tracing::debug!("the automatic log fetch failed: {message}");
                Step::Next
            }
        }
    }

    /// Logs in on the user's home server (see `farm`), or on the current connection when a
    /// user is logged in there already. Returns the new connection when the login moved.
    async fn log_in(
        &self,
        conn: &Connection,
        credentials: Credentials,
    ) -> Result<(Answer, Option<Moved>), Failure> {
        let options = self.config.connect_options();
        let (outcome, ring) = if self.is_logged_in() {
            // The server refuses it; the session stays where it is.
            let login = Login {
                credentials: &credentials,
                max_redirects: 0,
                options: &options,
            };
            (login.run(Target::Current(conn), None).await, None)
        } else {
            farm::log_in(conn, &credentials, &options).await
        };
        let user = &credentials.user;
        let logged_in = match outcome {
            Outcome::LoggedIn(logged_in) => logged_in,
            Outcome::Redirected { .. } => {
                let message = format!("the farm could not agree where {user} lives; try again");
                return Err(Failure::Failed(message));
            }
            Outcome::Refused { message, moved } => {
                if let Some(moved) = moved {
                    moved.connection.close().await;
                }
                return Err(Failure::Failed(message));
            }
            Outcome::Untrusted(err) => {
                return Err(Failure::Failed(format!("{user} cannot log in: {err}")))
            }
            Outcome::Unreachable {
                current_lost: true, ..
            } => return Err(Failure::Retry),
            Outcome::Unreachable { reason, .. } => return Err(Failure::Failed(reason)),
        };
        let LoggedIn {
            user,
            registered,
            waiting,
            ticket,
            moved,
        } = logged_in;
        let revealed = self
            .output
            .reveals_tickets()
            .then(|| TicketText::new(&ticket.ticket));
        let credentials = Credentials {
            user: user.clone(),
            ticket: Some(ticket),
            ..credentials
        };
        self.logged_in_as(credentials, ring);
        let answer = Answer::Login {
            user,
            registered,
            waiting: waiting.unwrap_or_default(),
            ticket: revealed,
        };
        Ok((answer, moved))
    }

    /// Changes the password; the session then logs in with the new one and its fresh ticket.
    async fn passwd(&self, conn: &Connection, old: String, new: String) -> Result<Answer, Failure> {
        let request = Request::Passwd {
            old,
            new: new.clone(),
        };
        match conn.request(request).await? {
            Response::Ticket(issued) => {
                self.password_changed(new, HeldTicket::new(issued));
                Ok(Answer::Passwd)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Sends a message with the id it keeps over every attempt; the recipient is then the
    /// conversation that `/me` goes to.
    async fn send(
        &self,
        conn: &Connection,
        id: MessageId,
        to: Recipient,
        text: String,
    ) -> Result<Answer, Failure> {
        // Before the request: an echo of it that another session passes on is not shown here.
        self.sending(id);
        let request = Request::Send {
            id,
            to: to.clone(),
            text,
        };
        match conn.request(request).await? {
            Response::Sent { id } => {
                self.sent_to(&to);
                Ok(Answer::Send { id, to })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Runs one command; a login returns the new connection when it moved.
    async fn answer(
        &self,
        conn: &Connection,
        prepared: &Prepared,
    ) -> Result<(Answer, Option<Moved>), Failure> {
        let answer = match prepared.command.clone() {
            Command::Login { user, password } => {
                let credentials = Credentials::password(user, password.unwrap_or_default());
                return self.log_in(conn, credentials).await;
            }
            Command::Resume { user, ticket } => {
                return self.log_in(conn, Credentials::ticket(user, ticket)).await
            }
            Command::Logout => {
                expect_done(conn.request(Request::Logout).await?)?;
                self.logged_out();
                Answer::Logout
            }
            Command::Passwd { old, new } => self.passwd(conn, old, new).await?,
            Command::Send { to, text, .. } => {
                self.send(conn, prepared.message_id, to, text).await?
            }
            Command::Me { text } => {
                let (to, text) = self.action(&text).map_err(Failure::Failed)?;
                self.send(conn, prepared.message_id, to, text).await?
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
            Command::Groups => {
                let ask = |after| Request::Groups {
                    after,
                    max: MAX_PAGE,
                };
                let groups = all_pages(conn, ask, |response| match response {
                    Response::Groups { groups, more } => Ok((groups, more)),
                    other => Err(other),
                })
                .await?;
                let joined = groups.iter().filter(|group| group.joined);
                Answer::Groups {
                    joined: joined.map(|group| group.name.clone()).collect(),
                    groups: groups.into_iter().map(|group| group.name).collect(),
                }
            }
            Command::Members { group } => {
                let ask = |after| Request::Members {
                    group: group.clone(),
                    after,
                    max: MAX_PAGE,
                };
                let users = all_pages(conn, ask, user_page).await?;
                Answer::Members { group, users }
            }
            Command::ReadLog => self.read_log(conn, &prepared.shown).await?,
            Command::Who => {
                let ask = |after| Request::Who {
                    after,
                    max: MAX_PAGE,
                };
                let users = all_pages(conn, ask, user_page).await?;
                Answer::Who { users }
            }
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
    /// A batch is confirmed only after it has been shown (written out, see
    /// `Output::written`), so a client that dies midway leaves the rest on the server. `shown` counts the messages shown, over every attempt;
    /// duplicates are confirmed but neither shown again nor counted.
    async fn read_log(&self, conn: &Connection, shown: &AtomicU64) -> Result<Answer, Failure> {
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
                    shown.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !self.output.written().await {
                return Err(Failure::Failed("the output is closed".to_string()));
            }
            expect_done(conn.request(Request::ConfirmLog { ids }).await?)?;
            if !more {
                break;
            }
        }
        Ok(Answer::ReadLog {
            count: shown.load(Ordering::Relaxed),
        })
    }
}
