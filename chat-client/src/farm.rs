//! Finding the right server: the first one that answers at start, and a user's home at login.
//!
//! The farm places every user on a home server and a backup with the ring of
//! `chat_proto::Ring`. Any server hands out the ring (`Request::Ring`), so the client computes
//! the placement itself and walks the user's successors (home, backup, then clockwise) until
//! one answers. The server it logs in on has the last word: it may answer the login with a
//! `Redirect`, which the client follows a bounded number of times (see `login`). A successor
//! that refuses the client at the hello for lack of room is named to the next, which then
//! serves the user.
//!
//! Nothing here prints. Connections made on the way and not kept are closed here; the one the
//! login lands on is handed to the session, which swaps it in. Staying connected once logged
//! in (failover, return home) is `failover`'s business.

use crate::connection::{ConnectError, ConnectOptions, Connection, Incoming, RequestError};
use crate::login::{Credentials, Login, Outcome, Target};
use chat_proto::{Request, Response, RingInfo};
use tokio::sync::mpsc;

/// How many `Redirect` answers in a row a login follows before it gives up.
pub const MAX_REDIRECTS: usize = 2;

/// Connects to the first of `servers` that completes the hello, trying them in order. A
/// server whose key is refused counts as one that does not answer; when every server is
/// refused so, the error is [`ConnectError::NoneTrusted`].
pub async fn connect_any(
    servers: &[String],
    options: &ConnectOptions,
) -> Result<(Connection, mpsc::Receiver<Incoming>), ConnectError> {
    let mut failures = Vec::new();
    for addr in servers {
        match Connection::connect(addr, options).await {
            Ok(connected) => return Ok(connected),
            Err(err) => {
                tracing::debug!("{err}");
                failures.push(err);
            }
        }
    }
    Err(ConnectError::none_of(failures))
}

/// A connection made for a login, which replaces the session's connection.
pub struct Moved {
    pub connection: Connection,
    pub incoming: mpsc::Receiver<Incoming>,
}

/// Logs the user of `credentials` in on their home server, or the first successor that
/// answers, following redirects (see `login`). Falls back to `current` when the farm gives no
/// usable ring. Returns the ring the login was placed with, when the farm gave one.
pub async fn log_in(
    current: &Connection,
    credentials: &Credentials,
    options: &ConnectOptions,
) -> (Outcome, Option<RingInfo>) {
    let Ok(ring) = fetch_ring(current).await else {
        let reason = "the connection was lost".to_string();
        let current_lost = true;
        return (
            Outcome::Unreachable {
                reason,
                current_lost,
            },
            None,
        );
    };
    let (target, refused_by) = place(current, ring.as_ref(), &credentials.user, options).await;
    let login = Login {
        credentials,
        max_redirects: MAX_REDIRECTS,
        options,
    };
    (login.run(target, refused_by).await, ring)
}

/// Picks where `user` logs in: the first of their successors on the ring that is the current
/// server or answers a connection. The current server when the ring is unknown or empty, or
/// when no successor answers (the server may then redirect the login). Also returns the
/// server before it that refused this client at the hello (it was full), if one did.
async fn place<'a>(
    current: &'a Connection,
    ring_info: Option<&RingInfo>,
    user: &str,
    options: &ConnectOptions,
) -> (Target<'a>, Option<String>) {
    let Some(ring_info) = ring_info else {
        return (Target::Current(current), None);
    };
    let ring = ring_info.ring();
    let mut refused_by = None;
    for server in ring.successors(user) {
        if server == current.server_name() {
            return (Target::Current(current), refused_by);
        }
        let Some(addr) = ring_info.addr_of(server) else {
            continue;
        };
        match Connection::connect(addr, options).await {
            Ok((connection, incoming)) => {
                let moved = Moved {
                    connection,
                    incoming,
                };
                return (Target::New(moved), refused_by);
            }
            Err(err) => {
                tracing::debug!("{user} cannot log in on {server}: {err}");
                if matches!(err, ConnectError::Refused { .. }) {
                    refused_by = Some(server.to_string());
                }
            }
        }
    }
    (Target::Current(current), None)
}

/// The connection ended before a reply came.
#[derive(Debug)]
pub struct Lost;

/// The farm's ring as `server` sees it; `None` when it has none to give.
pub async fn fetch_ring(server: &Connection) -> Result<Option<RingInfo>, Lost> {
    match server.request(Request::Ring).await {
        Ok(Response::Ring(info)) if !info.servers.is_empty() => Ok(Some(info)),
        Ok(Response::Ring(_)) => Ok(None),
        Ok(other) => {
            tracing::warn!("unexpected answer to a ring request: {other:?}");
            Ok(None)
        }
        Err(RequestError::Refused(reply)) => {
            tracing::debug!("no ring from {}: {reply}", server.server_name());
            Ok(None)
        }
        Err(RequestError::ConnectionLost) => Err(Lost),
    }
}
