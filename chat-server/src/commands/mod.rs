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
pub use tickets::TicketIssuer;

use crate::outbound::Outbound;
use crate::store::StoreError;
use chat_proto::{ClientFrame, ErrorCode, ErrorReply, NameError, Request, Response, ServerFrame};
use std::net::SocketAddr;
use std::sync::Arc;

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

    /// Handles one frame from the client.
    pub async fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Ack { ids } => {
                if let Some(user) = &self.user {
                    self.ctx.delivery.ack(user, &ids);
                }
            }
            ClientFrame::Request { id, body } => {
                // Boxed: the state of the largest command (a login, a query) then lives only
                // while a request runs, not in every idle session's task.
                if let Outcome::Reply(result) = Box::pin(self.execute(id, body)).await {
                    self.outbound.send(ServerFrame::Reply { id, result }).await;
                }
            }
        }
    }

    async fn execute(&mut self, request_id: u32, request: Request) -> Outcome {
        match request {
            Request::Ring => self.ring().into(),
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

impl From<StoreError> for ErrorReply {
    fn from(err: StoreError) -> ErrorReply {
        unavailable(err)
    }
}
