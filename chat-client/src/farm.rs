//! Finding the right server: the first one that answers at start, and a user's home at login.
//!
//! The farm places every user on a home server and a backup with the ring of
//! `chat_proto::Ring`. Any server hands out the ring (`Request::Ring`), so the client computes
//! the placement itself and walks the user's successors (home, backup, then clockwise) until
//! one answers. The server it logs in on has the last word: it may answer the login with a
//! `Redirect`, which the client follows a bounded number of times.
//!
//! Nothing here prints. Connections made on the way and not kept are closed here; the one the
//! login lands on is handed to the session, which swaps it in.

use crate::connection::{ConnectError, Connection, Incoming, RequestError};
use chat_proto::{Request, Response, RingInfo};
use tokio::sync::mpsc;

/// How many `Redirect` answers in a row a login follows before it gives up.
pub const MAX_REDIRECTS: usize = 2;

/// Connects to the first of `servers` that completes the hello, trying them in order.
pub async fn connect_any(
    servers: &[String],
) -> Result<(Connection, mpsc::Receiver<Incoming>), ConnectError> {
    let mut failures = Vec::new();
    for addr in servers {
        match Connection::connect(addr).await {
            Ok(connected) => return Ok(connected),
            Err(err) => {
                tracing::debug!("{err}");
                failures.push(err);
            }
        }
    }
    Err(ConnectError::NoneAnswered(failures))
}

/// A connection made for a login, which replaces the session's connection.
pub struct Moved {
    pub connection: Connection,
    pub incoming: mpsc::Receiver<Incoming>,
}

/// A successful login, and the new connection when it happened elsewhere.
pub struct LoggedIn {
    pub user: String,
    /// True when this login created the account.
    pub registered: bool,
    /// How many messages wait for `readlog`.
    pub waiting: u64,
    /// `None` when the login happened on the current connection.
    pub moved: Option<Moved>,
}

/// Why a login failed. The current connection stays as it was in every case but `Lost`.
#[derive(Debug)]
pub enum LoginError {
    /// The current connection ended; its reader reports why.
    Lost,
    /// The login was refused, or no server could take it; the message is for people.
    Failed(String),
    /// A server answered with something that is not a login's answer.
    Unexpected(Response),
}

/// Logs `user` in on their home server, or the first successor that answers, following
/// redirects. Falls back to `current` when the farm gives no usable ring.
pub async fn log_in(
    current: &Connection,
    user: &str,
    password: &str,
) -> Result<LoggedIn, LoginError> {
    let mut target = place(current, user).await?;
    let mut n_redirects = 0;
    loop {
        let request = Request::Login {
            user: user.to_string(),
            password: password.to_string(),
        };
        let result = target.connection().request(request).await;
        let (server, addr) = match result {
            Ok(Response::Redirect { server, addr }) => (server, addr),
            Ok(Response::LoggedIn {
                user,
                registered,
                waiting,
            }) => {
                return Ok(LoggedIn {
                    user,
                    registered,
                    waiting,
                    moved: target.into_moved(),
                })
            }
            Ok(other) => {
                target.close().await;
                return Err(LoginError::Unexpected(other));
            }
            Err(err) => return Err(target.fail(err).await),
        };
        target.close().await;
        if n_redirects == MAX_REDIRECTS {
            return Err(LoginError::Failed(format!(
                "the farm could not agree where {user} lives; try again"
            )));
        }
        n_redirects += 1;
        tracing::debug!("{user} is redirected to {server} at {addr}");
        target = match Connection::connect(&addr).await {
            Ok((connection, incoming)) => Target::Moved(Moved {
                connection,
                incoming,
            }),
            Err(err) => {
                return Err(LoginError::Failed(format!(
                    "{user} belongs on {server}, but {err}"
                )))
            }
        };
    }
}

/// Logs `user` in on the current connection only, following no redirect.
pub async fn log_in_here(
    current: &Connection,
    user: &str,
    password: &str,
) -> Result<LoggedIn, LoginError> {
    let request = Request::Login {
        user: user.to_string(),
        password: password.to_string(),
    };
    match current.request(request).await {
        Ok(Response::LoggedIn {
            user,
            registered,
            waiting,
        }) => Ok(LoggedIn {
            user,
            registered,
            waiting,
            moved: None,
        }),
        Ok(other) => Err(LoginError::Unexpected(other)),
        Err(err) => Err(Target::Current(current).fail(err).await),
    }
}

/// Where a login is attempted.
enum Target<'a> {
    Current(&'a Connection),
    Moved(Moved),
}

impl Target<'_> {
    fn connection(&self) -> &Connection {
        match self {
            Target::Current(connection) => connection,
            Target::Moved(moved) => &moved.connection,
        }
    }

    fn into_moved(self) -> Option<Moved> {
        match self {
            Target::Current(_) => None,
            Target::Moved(moved) => Some(moved),
        }
    }

    /// Closes a connection made for the login; the current one stays open.
    async fn close(self) {
        if let Target::Moved(moved) = self {
            moved.connection.close().await;
        }
    }

    /// The login failed on this target: closes it, and says why.
    async fn fail(self, err: RequestError) -> LoginError {
        match (err, self) {
            (RequestError::Refused(reply), target) => {
                target.close().await;
                LoginError::Failed(reply.message)
            }
            (RequestError::ConnectionLost, Target::Current(_)) => LoginError::Lost,
            (RequestError::ConnectionLost, Target::Moved(moved)) => {
                let message = format!(
                    "connection to {} lost during the login",
                    moved.connection.addr()
                );
                moved.connection.close().await;
                LoginError::Failed(message)
            }
        }
    }
}

/// Picks where `user` logs in: the first of their successors on the ring that is the current
/// server or answers a connection. The current server when the ring is unknown or empty, or
/// when no successor answers (the server may then redirect the login).
async fn place<'a>(current: &'a Connection, user: &str) -> Result<Target<'a>, LoginError> {
    let Some(ring_info) = fetch_ring(current).await? else {
        return Ok(Target::Current(current));
    };
    let ring = ring_info.ring();
    for server in ring.successors(user) {
        if server == current.server_name() {
            return Ok(Target::Current(current));
        }
        let Some(addr) = ring_info.addr_of(server) else {
            continue;
        };
        match Connection::connect(addr).await {
            Ok((connection, incoming)) => {
                return Ok(Target::Moved(Moved {
                    connection,
                    incoming,
                }))
            }
            Err(err) => tracing::debug!("{user} cannot log in on {server}: {err}"),
        }
    }
    Ok(Target::Current(current))
}

/// The farm's ring as the current server sees it; `None` when it has none to give.
async fn fetch_ring(current: &Connection) -> Result<Option<RingInfo>, LoginError> {
    match current.request(Request::Ring).await {
        Ok(Response::Ring(info)) if !info.servers.is_empty() => Ok(Some(info)),
        Ok(Response::Ring(_)) => Ok(None),
        Ok(other) => {
            tracing::warn!("unexpected answer to a ring request: {other:?}");
            Ok(None)
        }
        Err(RequestError::Refused(reply)) => {
            tracing::debug!("no ring from {}: {reply}", current.server_name());
            Ok(None)
        }
        Err(RequestError::ConnectionLost) => Err(LoginError::Lost),
    }
}
