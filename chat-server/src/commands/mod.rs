//! What the server does for each client request: one file per family of commands.
//!
//! A command either answers at once, or (a send) leaves its answer to the delivery writer.
//! A client's mistake gets an [`ErrorReply`] and the session carries on; an underlying failure
//! (the database, say) is logged here once and the client is told it is unavailable.

mod account;
mod groups;
mod info;
mod readlog;
mod send;

use crate::session::Session;
use crate::store::StoreError;
use chat_proto::{ClientFrame, ErrorCode, ErrorReply, NameError, Request, Response, ServerFrame};

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
    /// Handles one frame from the client.
    pub async fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Ack { ids } => {
                if let Some(user) = &self.user {
                    self.shared.delivery.ack(user, &ids).await;
                }
            }
            ClientFrame::Request { id, body } => {
                if let Outcome::Reply(result) = self.execute(id, body).await {
                    self.outbound.send(ServerFrame::Reply { id, result }).await;
                }
            }
        }
    }

    /// Answers a frame that came too fast without doing what it asks.
    pub async fn refuse_too_fast(&mut self, frame: ClientFrame) {
        if let ClientFrame::Request { id, .. } = frame {
            let refusal = ErrorReply::new(
                ErrorCode::TooFast,
                format!(
                    "too many requests: at most {} a second; slow down",
                    self.shared.max_frames_per_sec
                ),
            );
            let reply = ServerFrame::Reply {
                id,
                result: Err(refusal),
            };
            self.outbound.send(reply).await;
        }
    }

    async fn execute(&mut self, request_id: u32, request: Request) -> Outcome {
        match request {
            Request::Ring => self.ring().into(),
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
