//! What the server does for each client request: one file per family of commands.
//!
//! A command either answers at once, or (a send) leaves its answer to the delivery writer.
//! A client's mistake gets an [`ErrorReply`] and the session carries on; an underlying failure
//! (the database, say) is logged here once and the client is told it is unavailable.
//!
//! A [`Session`] is one client's state; every session's commands share one
//! [`CommandContext`] (`context`), of what they use. The connection itself, its hello, read
//! loop and writer, is the `session` module's.

mod account;
mod context;
mod groups;
mod info;
mod readlog;
mod send;

pub use context::{CommandContext, KnownUsers};

use crate::outbound::Outbound;
use crate::password::HashError;
use crate::store::StoreError;
use chat_proto::{ClientFrame, ErrorCode, ErrorReply, NameError, Request, Response, ServerFrame};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One client's state, which its commands read and change.
pub struct Session {
    ctx: Arc<CommandContext>,
    /// The client's queue: replies, and whom to tell once a message is sent.
    outbound: Outbound,
    /// The logged-in user, if any.
    user: Option<String>,
    peer: SocketAddr,
}

/// What a command produced.
pub enum Outcome {
    Reply(Result<Response, ErrorReply>),
    /// The answer will come later, from whoever finishes the work.
    Later,
}

impl From<Result<Response, ErrorReply>> for Outcome {
    fn from(result: Result<Response, ErrorReply>) -> Outcome {
        Outcome::Reply(result)
    }
}

impl Session {
    /// A session of the client at `peer`, not logged in yet, answering on `outbound`.
    pub fn new(ctx: Arc<CommandContext>, outbound: Outbound, peer: SocketAddr) -> Session {
        Session {
            ctx,
            outbound,
            user: None,
            peer,
        }
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Handles one request of the client, one that [`pace`] did not answer at once.
    pub async fn handle(&mut self, id: u32, body: Request) {
        // Boxed: the state of the largest command (a login, a query) then lives only while a
        // request runs, not in every idle session's task.
        if let Outcome::Reply(result) = Box::pin(self.execute(id, body)).await {
            self.outbound.send(ServerFrame::Reply { id, result }).await;
        }
    }

    async fn execute(&mut self, request_id: u32, request: Request) -> Outcome {
        match request {
            Request::Ring => ring(&self.ctx).into(),
            Request::Login { user, password } => self.login(user, password).await.into(),
            Request::Logout => self.logout_command().into(),
            Request::Send { id, to, text } => self.send(request_id, id, to, text).await,
            Request::Join { group } => self.join(group).await.into(),
            Request::Leave { group } => self.leave(group).await.into(),
            Request::Groups => self.groups().await.into(),
            Request::ReadLog { max } => self.read_log(max).await.into(),
            Request::ConfirmLog { ids } => self.confirm_log(ids).await.into(),
            Request::Who => self.who().into(),
            Request::WhoIs { user } => self.whois(user).await.into(),
            Request::WhoAmI => self.whoami().into(),
            Request::Ping => Ok(Response::Pong).into(),
        }
    }

    /// The logged-in user, or the error for a command that needs one.
    fn require_user(&self) -> Result<String, ErrorReply> {
        self.user
            .clone()
            .ok_or_else(|| ErrorReply::new(ErrorCode::NotLoggedIn, "log in first"))
    }
}

/// Whether a frame needs its session, and how long it may take.
pub enum Pace {
    /// Done already, from the server's shared state alone: an ack, a ping, the ring. Such a
    /// frame may be answered while the session waits on a slow request, since it neither
    /// reads nor changes what that request does. The reply to send, if any.
    AtOnce(Option<ServerFrame>),
    /// Waits on a password hash: it may run beside the session's read loop, one at a time.
    Slow(u32, Request),
    /// Needs the session's state: handled in order, after any slow request.
    InOrder(u32, Request),
}

/// Sorts a frame of the session whose user is `user`, doing at once what may be done at once.
pub fn pace(ctx: &CommandContext, user: Option<&str>, frame: ClientFrame) -> Pace {
    let (id, body) = match frame {
        ClientFrame::Ack { ids } => {
            if let Some(user) = user {
                ctx.delivery.ack(user, &ids);
            }
            return Pace::AtOnce(None);
        }
        ClientFrame::Request { id, body } => (id, body),
    };
    let result = match body {
        Request::Ping => Ok(Response::Pong),
        Request::Ring => ring(ctx),
        Request::Login { .. } => return Pace::Slow(id, body),
        body => return Pace::InOrder(id, body),
    };
    Pace::AtOnce(Some(ServerFrame::Reply { id, result }))
}

fn ring(ctx: &CommandContext) -> Result<Response, ErrorReply> {
    Ok(Response::Ring(ctx.farm.view().ring_info()))
}

/// Takes one registration of a new account for the session's address.
fn may_register(ctx: &CommandContext, user: &str, peer: SocketAddr) -> Result<(), ErrorReply> {
    ctx.registrations
        .allow(peer.ip(), Instant::now())
        .map_err(|wait| {
            tracing::info!(%user, %peer, "registration refused: too many from this address");
            ErrorReply::new(
                ErrorCode::TooFast,
                format!(
                    "too many new accounts from {}; try again in {}",
                    peer.ip(),
                    seconds(wait)
                ),
            )
        })
}

/// A wait as the client is told it, in whole seconds rounded up, at least one.
fn seconds(wait: Duration) -> String {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    format!("{} s", whole.max(1))
}

/// The client's answer when its password could not be hashed or checked.
fn hash_failed(err: HashError) -> ErrorReply {
    match err {
        HashError::Busy => {
            tracing::warn!("login refused: the password hashing queue is full");
            ErrorReply::new(
                ErrorCode::Unavailable,
                "the server is busy checking passwords; try again shortly",
            )
        }
        HashError::Failed(err) => unavailable(err),
    }
}

fn invalid(err: NameError) -> ErrorReply {
    ErrorReply::new(ErrorCode::Invalid, err.to_string())
}

/// Logs an underlying failure and gives the client an answer it can act on.
fn unavailable(err: impl std::fmt::Display) -> ErrorReply {
    tracing::error!(%err, "request failed");
    ErrorReply::new(
        ErrorCode::Unavailable,
        "the server cannot reach its database; try again shortly",
    )
}

/// However a session ends, its user is taken off the hub.
impl Drop for Session {
    fn drop(&mut self) {
        self.logout();
    }
}

impl From<StoreError> for ErrorReply {
    fn from(err: StoreError) -> ErrorReply {
        unavailable(err)
    }
}
