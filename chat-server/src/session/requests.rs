//! [`Requests`]: a session's requests as its read loop runs them, so that a slow one (a login,
//! waiting for a password hash) does not stop the others from being answered.
//!
//! - Acks, pings and the ring are done at once, whatever else runs ([`Pace::AtOnce`]).
//! - A slow request takes the session with it into a future of its own, which the read loop
//!   polls beside its socket; at most one runs per session.
//! - Requests that need the session wait behind it, in order, at most [`MAX_WAITING`] of them;
//!   then the read loop stops reading until the slow one is done.
//!
//! Replies carry their request's id, so a pong may overtake the answer to a login: the client
//! matches them by id.

use crate::commands::{pace, CommandContext, Pace, Session};
use crate::outbound::Outbound;
use chat_proto::ClientFrame;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

/// Requests that may wait behind a slow one, per session.
pub const MAX_WAITING: usize = 16;

/// A slow request, with the session it holds until it is done.
type Slow = Pin<Box<dyn Future<Output = Session> + Send>>;

pub struct Requests {
    /// The session while no slow request holds it.
    idle: Option<Session>,
    /// The slow request that holds the session, and who the session had logged in when it
    /// started. Exactly one of `idle` and `busy` is set.
    busy: Option<(Slow, Option<String>)>,
    /// Requests that need the session, waiting for the slow one to end: `Slow` or `InOrder`.
    waiting: VecDeque<Pace>,
}

impl Requests {
    pub fn new(session: Session) -> Requests {
        Requests {
            idle: Some(session),
            busy: None,
            waiting: VecDeque::new(),
        }
    }

    /// False while the requests waiting fill their queue.
    pub fn may_read(&self) -> bool {
        self.waiting.len() < MAX_WAITING
    }

    pub fn is_busy(&self) -> bool {
        self.busy.is_some()
    }

    /// Whether the session is logged in; `None` while a slow request holds it.
    pub fn logged_in(&self) -> Option<bool> {
        self.idle.as_ref().map(|session| session.user().is_some())
    }

    /// Does, starts or queues what `frame` asks.
    pub async fn take(&mut self, ctx: &CommandContext, outbound: &Outbound, frame: ClientFrame) {
        let user = match (&self.idle, &self.busy) {
            (Some(session), _) => session.user(),
            (None, Some((_, user))) => user.as_deref(),
            (None, None) => None,
        };
        match pace(ctx, user, frame) {
            Pace::AtOnce(Some(reply)) => {
                outbound.send(reply).await;
            }
            Pace::AtOnce(None) => {}
            Pace::Close(reason) => outbound.close(reason),
            waits if self.is_busy() => self.waiting.push_back(waits),
            next => self.run(next).await,
        }
    }

    /// The slow request's end, with its session back; pending forever while none runs (the
    /// read loop polls it only when busy).
    pub async fn slow(&mut self) -> Session {
        match &mut self.busy {
            Some((slow, _)) => slow.await,
            None => std::future::pending().await,
        }
    }

    /// Takes the session back from a slow request that ended, and runs what waited for it,
    /// in order, up to the next slow one.
    pub async fn slow_done(&mut self, session: Session) {
        self.busy = None;
        self.idle = Some(session);
        while !self.is_busy() {
            let Some(next) = self.waiting.pop_front() else {
                return;
            };
            self.run(next).await;
        }
    }

    /// Runs a request on the idle session: to its end, or beside the read loop if slow.
    async fn run(&mut self, request: Pace) {
        let Some(mut session) = self.idle.take() else {
            return;
        };
        match request {
            Pace::Slow(id, body) => {
                let user = session.user().map(str::to_owned);
                let slow: Slow = Box::pin(async move {
                    session.handle(id, body).await;
                    session
                });
                self.busy = Some((slow, user));
                return;
            }
            Pace::InOrder(id, body) => session.handle(id, body).await,
            Pace::AtOnce(_) | Pace::Close(_) => {}
        }
        self.idle = Some(session);
    }
}
