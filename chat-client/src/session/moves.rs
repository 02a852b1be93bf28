//! Changing connections, and who is logged in where.
//!
//! The session's connection changes in three ways: a login that lands on another server
//! (`switch`), a failover after the connection is lost (`lose`, then `reconnected`), and a
//! return home (`start_homing`, then `switch_home`). Each prints exactly one `connected`
//! event for the new server; the last two then fetch the offline log. A connection that is
//! let go is closed here, quietly.

use super::{Exit, Running, Session, State, CONNECTION};
use crate::connection::{Connection, Incoming};
use crate::execute::{Job, Step};
use crate::failover::{self, LostServer, Plan, Reconnected, Relogin, TicketNews};
use crate::farm::Moved;
use crate::login::{Credentials, HeldTicket};
use crate::output::{Answer, Event};
use crate::ticket_text::TicketText;
use chat_proto::RingInfo;
use futures::FutureExt;
use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

/// The least time between two looks at home that are due to renew the ticket.
const RENEWAL_RETRY: Duration = Duration::from_secs(1);

/// Who is logged in, and the newest ring: what a reconnect needs.
#[derive(Debug, Default)]
pub(super) struct Placement {
    /// `None` when nobody is logged in. The password and the ticket stay in memory only.
    pub(super) credentials: Option<Credentials>,
    /// The newest ring fetched from any server.
    pub(super) ring: Option<RingInfo>,
}

impl<'a> Session<'a> {
    pub(super) fn placement(&self) -> MutexGuard<'_, Placement> {
        self.placement
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A user is logged in. Another login then stays on the current connection, and the
    /// server refuses it, instead of moving the session to that user's home.
    pub(crate) fn is_logged_in(&self) -> bool {
        self.placement().credentials.is_some()
    }

    pub(crate) fn logged_in_as(&self, credentials: Credentials, ring: Option<RingInfo>) {
        let mut placement = self.placement();
        placement.credentials = Some(credentials);
        if ring.is_some() {
            placement.ring = ring;
        }
    }

    pub(crate) fn logged_out(&self) {
        self.placement().credentials = None;
    }

    /// `passwd` succeeded: later logins use the new password, or this fresh ticket.
    pub(crate) fn password_changed(&self, password: String, ticket: HeldTicket) {
        if let Some(credentials) = &mut self.placement().credentials {
            credentials.password = Some(password);
            self.tell_ticket(&ticket);
            credentials.ticket = Some(ticket);
        }
    }

    /// Prints the session's fresh ticket, for an output that shows tickets (the web page's).
    fn tell_ticket(&self, ticket: &HeldTicket) {
        if self.output.reveals_tickets() {
            self.output
                .emit(&Event::Ticket(TicketText::new(&ticket.ticket)));
        }
    }

    /// Keeps a renewed ticket, or forgets one the farm will not take; unless the credentials
    /// have changed since `used` was taken to ask.
    pub(super) fn ticket_news(&self, used: &Credentials, news: TicketNews) {
        let mut placement = self.placement();
        if let Some(credentials) = placement.credentials.as_mut().filter(|now| **now == *used) {
            if let TicketNews::Fresh(ticket) = &news {
                self.tell_ticket(ticket);
            }
            news.apply_to(credentials);
        }
    }

    /// Starts the next look at home, after `wait`, while a user is logged in. It refreshes the
    /// ring even at home, so that a failover starts from the farm as it is now (servers that
    /// came back, perhaps at new addresses), and moves the user home when they are away from
    /// it. A look under way is replaced.
    pub(super) fn start_homing(&'a self, state: &mut State<'a>, wait: Duration) {
        let Some(conn) = &state.conn else {
            return;
        };
        let placement = self.placement();
        let Some(credentials) = &placement.credentials else {
            return;
        };
        // The look also renews the ticket: it comes no later than the ticket is due, however
        // slow the look at home is (and a second apart while a renewal goes unanswered).
        let renewal = credentials.ticket.as_ref().map(HeldTicket::until_due);
        let wait = renewal.map_or(wait, |renewal| wait.min(renewal.max(RENEWAL_RETRY)));
        let check = failover::check_home(
            conn.clone(),
            credentials.clone(),
            self.config.failover_options(),
            wait,
        );
        state.homing = Some(Box::pin(check));
    }

    /// The connection is gone or going: shows what it delivered, settles the running job,
    /// and starts a reconnect (or switches to a login at home that was waiting).
    pub(super) async fn lose(&'a self, state: &mut State<'a>) -> Option<Exit> {
        state.homing = None;
        if let Some(mut incoming) = state.incoming.take() {
            // Shown, not acknowledged: the server keeps them for the log, where they are
            // confirmed without being shown again.
            while let Ok(event) = incoming.try_recv() {
                match event {
                    Incoming::Message(message) => {
                        self.show(message, false);
                    }
                    Incoming::Echo(message) => self.show_echo(message),
                    Incoming::Notice(notice) => self.output.emit(&Event::Notice(notice)),
                    _ => {}
                }
            }
        }
        let old = state.conn.take();
        if let Some(running) = state.running.take() {
            // A reply that came before the end still counts.
            match running.task.now_or_never() {
                Some(Step::Next) => {}
                Some(Step::Quit) => {
                    spawn_close(old);
                    return Some(Exit::Quit);
                }
                Some(Step::Switch { moved, answer }) => {
                    // The login moved to a live server: nothing to fail over.
                    spawn_close(old);
                    self.adopt(state, *moved);
                    state.running = Some(Running {
                        job: None,
                        task: Box::pin(self.emit_answer(answer)),
                    });
                    return None;
                }
                Some(Step::Retry) | None => requeue(&mut state.queue, running.job),
            }
        }
        let lost = old.as_ref().map(|conn| LostServer {
            name: conn.server_name().to_string(),
            addr: conn.addr().to_string(),
        });
        spawn_close(old);
        if let Some(moved) = state.home_switch.take() {
            self.switch_home(state, moved).await;
            if state.conn.is_some() {
                return None;
            }
        }
        tracing::debug!("failing over from {lost:?}");
        let plan = {
            let placement = self.placement();
            Plan {
                seeds: self.config.seeds.clone(),
                ring: placement.ring.clone(),
                credentials: placement.credentials.clone(),
                lost,
                options: self.config.failover_options(),
            }
        };
        let farm_down = |retry_in| self.output.emit(&Event::FarmDown { retry_in });
        let reconnect = failover::reconnect_reporting(plan, farm_down);
        state.reconnecting = Some(Box::pin(reconnect));
        None
    }

    /// The server says home takes the user back: looks at home now instead of at the next
    /// poll, unless a move home is already waiting. Home is then taken from the ring, as on
    /// every look, so a push that does not match the farm moves nobody.
    pub(super) fn called_home(&'a self, state: &mut State<'a>, server: &str) {
        tracing::debug!("called home to {server}");
        if state.home_switch.is_none() {
            self.start_homing(state, Duration::ZERO);
        }
    }

    /// A reconnect succeeded: swaps the connection in, and after a login queues the log fetch.
    pub(super) fn reconnected(&self, state: &mut State<'a>, reconnected: Reconnected) {
        let Reconnected {
            moved,
            ring,
            relogin,
        } = reconnected;
        self.adopt(state, moved);
        let mut placement = self.placement();
        if ring.is_some() {
            placement.ring = ring;
        }
        match relogin {
            Relogin::NotNeeded => {}
            Relogin::LoggedIn(ticket) => {
                if let Some(credentials) = &mut placement.credentials {
                    self.tell_ticket(&ticket);
                    credentials.ticket = Some(ticket);
                }
                queue_log_fetch(&mut state.queue);
            }
            Relogin::Refused(message) => {
                if let Some(credentials) = placement.credentials.take() {
                    let user = credentials.user;
                    let message = format!("logged out: cannot log in as {user} again: {message}");
                    self.output.error(CONNECTION, message);
                }
            }
        }
    }

    /// Makes `moved` the current connection and prints its `connected` event.
    fn adopt(&self, state: &mut State<'a>, moved: Moved) {
        self.emit_connected(&moved.connection);
        state.conn = Some(Arc::new(moved.connection));
        state.incoming = Some(moved.incoming);
    }

    /// A login landed elsewhere: closes the old connection, swaps the new one in, and lets
    /// the loop show what the new server delivered before printing the login's answer.
    pub(super) async fn switch(&'a self, state: &mut State<'a>, moved: Moved, answer: Answer) {
        state.homing = None;
        if let Some(old) = state.conn.take() {
            // The old connection's end is never read, so never reported.
            close(old).await;
        }
        self.adopt(state, moved);
        state.running = Some(Running {
            job: None,
            task: Box::pin(self.emit_answer(answer)),
        });
    }

    /// The user is logged in at home on `moved`: switches to it and fetches the log, unless
    /// the user logged out meanwhile.
    pub(super) async fn switch_home(&'a self, state: &mut State<'a>, moved: Moved) {
        if !self.is_logged_in() {
            moved.connection.close().await;
            return;
        }
        state.homing = None;
        if let Some(old) = state.conn.take() {
            close(old).await;
        }
        self.adopt(state, moved);
        queue_log_fetch(&mut state.queue);
    }
}

/// Puts a job that could not finish back at the front of the queue. A log fetch is not put
/// back: the reconnect queues a new one.
pub(super) fn requeue(queue: &mut VecDeque<Job>, job: Option<Job>) {
    match job {
        Some(Job::FetchLog) | None => {}
        Some(job) => queue.push_front(job),
    }
}

/// Queues the log fetch first, unless a `readlog` is first and will do it.
fn queue_log_fetch(queue: &mut VecDeque<Job>) {
    if !queue.front().is_some_and(Job::is_read_log) {
        queue.push_front(Job::FetchLog);
    }
}

/// Closes a connection once no job holds it any more.
pub(super) async fn close(conn: Arc<Connection>) {
    match Arc::try_unwrap(conn) {
        Ok(conn) => conn.close().await,
        // Dropping the last handle ends its tasks.
        Err(_) => tracing::warn!("a connection was still in use as it closed"),
    }
}

/// Closes a lost connection without waiting for it.
fn spawn_close(conn: Option<Arc<Connection>>) {
    if let Some(conn) = conn {
        tokio::spawn(close(conn));
    }
}
