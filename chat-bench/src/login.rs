//! **The one login of chat-bench.** Every login a workload makes goes through [`request`]
//! and [`outcome`]: the raw connections of the message workloads ([`crate::farm::Conn`]) and
//! the simulated users' real-client connections ([`log_in`]) alike. A first login is by
//! password, as a person's is; [`outcome`] hands back the resume ticket that comes with it.
//!
//! What the simulated users do *after* their first login (failing over, going home) is the
//! real client's own code (`chat_client::failover`), so it logs in as the client does: by
//! that ticket, and by password only when the ticket is refused.

use crate::farm::Farm;
use anyhow::{anyhow, bail};
use chat_client::connection::Incoming;
use chat_client::connection::{ConnectOptions, Connection, RequestError};
use chat_client::failover::LostServer;
use chat_client::farm::{Moved, MAX_REDIRECTS};
use chat_client::heartbeat;
use chat_client::login::HeldTicket;
use chat_proto::{ErrorCode, ErrorReply, Request, Response};
use std::time::Duration;

/// How many times a first login told to wait ("too many failed logins; try again in 1 s",
/// which the server says while other logins of the same name are being checked) is tried
/// again, as a person would, and how long it waits first.
const TOO_FAST_TRIES: u32 = 5;
const TOO_FAST_WAIT: Duration = Duration::from_secs(1);

/// What the server said to a login.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Logged in, with a ticket for the next login.
    LoggedIn(HeldTicket),
    /// Log in at the server at this address instead.
    Redirect(String),
}

/// The password login request for `user`.
pub fn request(user: &str, password: &str) -> Request {
    Request::password_login(user, password)
}

/// What the reply to [`request`] means; a refusal or an unexpected answer is an error.
pub fn outcome(user: &str, reply: Result<Response, ErrorReply>) -> anyhow::Result<Outcome> {
    match reply {
        Ok(Response::LoggedIn { ticket, .. }) => Ok(Outcome::LoggedIn(HeldTicket::new(ticket))),
        Ok(Response::Redirect { server, addr }) => {
            tracing::debug!("{user} is redirected to {server}");
            Ok(Outcome::Redirect(addr))
        }
        Ok(other) => bail!("unexpected answer to the login of {user}: {other:?}"),
        Err(refusal) => bail!("login of {user} refused: {refusal}"),
    }
}

/// Why a simulated user's first login failed.
pub struct Failure {
    /// Its own heartbeat ended the connection: the server answered no ping for too long.
    pub dropped: bool,
    /// The server whose connection ended before it answered the login, if that is why.
    pub lost: Option<LostServer>,
    pub error: anyhow::Error,
}

impl Failure {
    fn other(error: anyhow::Error) -> Failure {
        Failure {
            dropped: false,
            lost: None,
            error,
        }
    }
}

/// Logs `user` in at home by password on a connection of the real client (`options` give its
/// heartbeat), following redirects as the client does, and trying again a few times when told
/// to wait a moment; returns the connection and the ticket.
pub async fn log_in(
    farm: &Farm,
    user: &str,
    password: &str,
    options: &ConnectOptions,
) -> Result<(Moved, HeldTicket), Failure> {
    let mut addr = farm.home_addr(user).map_err(Failure::other)?;
    let mut waits = 0;
    let mut redirects = 0;
    while redirects <= MAX_REDIRECTS {
        let (connection, mut incoming) = Connection::connect(&addr, options)
            .await
            .map_err(|err| Failure::other(err.into()))?;
        let reply = match connection.request(request(user, password)).await {
            Ok(response) => Ok(response),
            Err(RequestError::Refused(refusal))
                if refusal.code == ErrorCode::TooFast && waits < TOO_FAST_TRIES =>
            {
                waits += 1;
                connection.close().await;
                tokio::time::sleep(TOO_FAST_WAIT).await;
                continue;
            }
            Err(RequestError::Refused(refusal)) => Err(refusal),
            Err(RequestError::ConnectionLost) => {
                // The reader queues why the connection ended before it fails the request.
                let why = match incoming.recv().await {
                    Some(Incoming::Lost(why) | Incoming::Closing(why)) => why,
                    _ => "the connection ended".to_string(),
                };
                return Err(Failure {
                    dropped: heartbeat::ended_by_silence(&why),
                    lost: Some(LostServer {
                        name: connection.server_name().to_string(),
                        addr: addr.clone(),
                    }),
                    error: anyhow!("the login of {user} on {addr} was lost: {why}"),
                });
            }
        };
        match outcome(user, reply) {
            Ok(Outcome::LoggedIn(ticket)) => {
                let moved = Moved {
                    connection,
                    incoming,
                };
                return Ok((moved, ticket));
            }
            Ok(Outcome::Redirect(next)) => {
                connection.close().await;
                addr = next;
                redirects += 1;
            }
            Err(error) => {
                connection.close().await;
                return Err(Failure::other(error));
            }
        }
    }
    Err(Failure::other(anyhow!(
        "the farm could not agree where {user} lives"
    )))
}
