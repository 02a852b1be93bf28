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
mod tickets;

pub use context::{CommandContext, KnownUsers, LoginCounts};
pub use info::online_page;
pub use tickets::TicketIssuer;

use crate::outbound::Outbound;
use crate::password::HashError;
use crate::store::StoreError;
use crate::telemetry::{self, DbWork, Limit};
use chat_proto::{
    fits_in_frame, ClientFrame, ErrorCode, ErrorReply, NameError, Request, Response, ServerFrame,
    MAX_ACK_IDS, MAX_FRAME_LEN,
};
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
    /// The device and revocation epoch of the logged-in user's tickets: the device is chosen
    /// at a password login and kept by the ticket logins and renewals that follow it.
    resume: Option<tickets::Resume>,
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
            resume: None,
            peer,
        }
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Handles one request of the client, one that [`pace`] did not answer at once.
    pub async fn handle(&mut self, id: u32, body: Request) {
        let outcome = match body {
            // Not boxed: a send is the commonest request by far, and its own state is small
            // (a query it may need is boxed where it is made). Boxing its future cost an
            // allocation and a copy of kilobytes of state for every message.
            Request::Send {
                id: message_id,
                to,
                text,
            } => self.send(id, message_id, to, text).await,
            // Boxed: the state of the largest command (a login, a query) then lives only
            // while a request runs, not in every idle session's task.
            body => Box::pin(self.execute(id, body)).await,
        };
        if let Outcome::Reply(result) = outcome {
            self.outbound.send(reply_frame(id, result)).await;
        }
    }

    async fn execute(&mut self, request_id: u32, request: Request) -> Outcome {
        match request {
            Request::Ring => ring(&self.ctx).into(),
            Request::Login {
                user,
                credential,
                refused_by,
            } => self.login(user, credential, refused_by).await.into(),
            Request::Logout => self.logout_command().await.into(),
            Request::Passwd { old, new } => self.passwd(old, new).await.into(),
            Request::RenewTicket => self.renew_ticket().await.into(),
            Request::Send { id, to, text } => self.send(request_id, id, to, text).await,
            Request::Join { group } => self.join(group).await.into(),
            Request::Leave { group } => self.leave(group).await.into(),
            Request::Groups { after, max } => self.groups(after, max).await.into(),
            Request::Members { group, after, max } => self.members(group, after, max).await.into(),
            Request::ReadLog { max } => self.read_log(max).await.into(),
            Request::ConfirmLog { ids } => self.confirm_log(ids).await.into(),
            Request::Who { after, max } => self.who(after, max).into(),
            Request::WhoIs { user } => self.whois(user).await.into(),
            Request::WhoAmI => self.whoami().into(),
            Request::Ping => Ok(Response::Pong).into(),
            Request::Forwarded(forwarded) => self.forwarded(forwarded).into(),
        }
    }

    /// The logged-in user, or the error for a command that needs one.
    fn require_user(&self) -> Result<String, ErrorReply> {
        self.user
            .clone()
            .ok_or_else(|| ErrorReply::new(ErrorCode::NotLoggedIn, "log in first"))
    }
}

/// The reply to request `id`; an answer too large for one frame becomes an error that says so,
/// rather than a frame the connection's writer could not send.
fn reply_frame(id: u32, result: Result<Response, ErrorReply>) -> ServerFrame {
    let frame = ServerFrame::Reply { id, result };
    if fits_in_frame(&frame, MAX_FRAME_LEN) {
        return frame;
    }
    tracing::warn!(
        id,
        "an answer is too large for one frame; answering with an error"
    );
    ServerFrame::Reply {
        id,
        result: Err(ErrorReply::new(
            ErrorCode::TooLarge,
            "the answer is too large for one frame; ask for less at a time",
        )),
    }
}

/// A list's cursor: a name, checked by `validate`, or `None` for the first page.
fn cursor(
    after: Option<String>,
    validate: fn(&str) -> Result<(), NameError>,
) -> Result<Option<String>, ErrorReply> {
    if let Some(after) = &after {
        validate(after).map_err(|err| {
            ErrorReply::new(ErrorCode::Invalid, format!("bad page cursor: {err}"))
        })?;
    }
    Ok(after)
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
    /// A protocol error: the connection is closed, for this reason.
    Close(String),
}

/// Sorts a frame of the session whose user is `user`, doing at once what may be done at once.
pub fn pace(ctx: &CommandContext, user: Option<&str>, frame: ClientFrame) -> Pace {
    let (id, body) = match frame {
        ClientFrame::Ack { ids } if ids.len() > MAX_ACK_IDS => {
            // The real client never sends one: this is a broken or hostile peer.
            tracing::warn!(n_ids = ids.len(), "closing connection: Ack too long");
            return Pace::Close(format!(
                "protocol error: an Ack carries at most {MAX_ACK_IDS} ids, not {}",
                ids.len()
            ));
        }
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
        Request::Login { .. } | Request::Passwd { .. } => return Pace::Slow(id, body),
        body => return Pace::InOrder(id, body),
    };
    Pace::AtOnce(Some(reply_frame(id, result)))
}

fn ring(ctx: &CommandContext) -> Result<Response, ErrorReply> {
    Ok(Response::Ring(ctx.farm.view().ring_info()))
}

/// Takes one registration of a new account for the session's address.
fn may_register(ctx: &CommandContext, user: &str, peer: SocketAddr) -> Result<(), ErrorReply> {
    ctx.registrations
        .allow(peer.ip(), Instant::now())
        .map_err(|wait| {
            telemetry::rate_limited(Limit::Registrations);
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
            telemetry::rate_limited(Limit::HashQueue);
            tracing::warn!("login refused: the password hashing queue is full");
            ErrorReply::new(
                ErrorCode::Unavailable,
                "the server is busy checking passwords; try again shortly",
            )
        }
        HashError::Failed(err) => {
            // Not the database: saying so would send an operator the wrong way.
            tracing::error!(%err, "password check failed");
            ErrorReply::new(
                ErrorCode::Unavailable,
                "the server could not check the password; try again shortly",
            )
        }
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
        telemetry::database_error(DbWork::Request);
        unavailable(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n_users: usize) -> Result<Response, ErrorReply> {
        Ok(Response::Users {
            users: (0..n_users).map(|idx| format!("{idx:0>32}")).collect(),
            more: false,
        })
    }

    #[test]
    fn an_answer_too_large_for_a_frame_becomes_an_error() {
        // 33 bytes a name: 30,000 fit in a frame, 40,000 do not.
        let fits = reply_frame(7, users(30_000));
        assert_eq!(
            fits,
            ServerFrame::Reply {
                id: 7,
                result: users(30_000)
            }
        );
        let ServerFrame::Reply { id, result } = reply_frame(7, users(40_000)) else {
            panic!("not a reply");
        };
        assert_eq!(id, 7);
        let err = result.unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);
        assert!(err.message.starts_with("the answer is too large"), "{err}");
    }
}
