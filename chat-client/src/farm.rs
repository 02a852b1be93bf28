//! Finding the right server: the first one that answers at start, and a user's home at login.
//!
//! The farm places every user on a home server and a backup with the ring of
//! `chat_proto::Ring`. Any server hands out the ring (`Request::Ring`), so the client computes
//! the placement itself and walks the user's successors (home, backup, then clockwise) until
//! one answers. The server it logs in on has the last word: it may answer the login with a
//! `Redirect`, which the client follows a bounded number of times.
//!
//! Nothing here prints. Connections made on the way and not kept are closed here; the one the
//! login lands on is handed to the session, which swaps it in. Staying connected once logged
//! in (failover, return home) is `failover`'s business.

use crate::connection::{ConnectError, ConnectOptions, Connection, Incoming, RequestError};
use chat_proto::{ErrorCode, Request, Response, RingInfo};
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

/// A successful login, and the new connection when it happened elsewhere.
pub struct LoggedIn {
    pub user: String,
    /// True when this login created the account.
    pub registered: bool,
    /// How many messages wait for `readlog`.
    pub waiting: u64,
    /// `None` when the login happened on the current connection.
    pub moved: Option<Moved>,
    /// The ring the login was placed with, when the farm gave one.
    pub ring: Option<RingInfo>,
}

/// Why a login failed. The current connection stays as it was in every case but `Lost`.
#[derive(Debug)]
pub enum LoginError {
    /// The current connection ended, or its server is shutting down: the login should run
    /// again after a failover.
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
    options: &ConnectOptions,
) -> Result<LoggedIn, LoginError> {
    let ring = fetch_ring(current).await.map_err(|_| LoginError::Lost)?;
    let mut target = place(current, ring.as_ref(), user, options).await;
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
                    ring,
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
        target = match Connection::connect(&addr, options).await {
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
            ring: None,
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
            // The current server is going down; the session runs the login again elsewhere.
            (RequestError::Refused(reply), Target::Current(_))
                if reply.code == ErrorCode::ShuttingDown =>
            {
                LoginError::Lost
            }
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
async fn place<'a>(
    current: &'a Connection,
    ring_info: Option<&RingInfo>,
    user: &str,
    options: &ConnectOptions,
) -> Target<'a> {
    let Some(ring_info) = ring_info else {
        return Target::Current(current);
    };
    let ring = ring_info.ring();
    for server in ring.successors(user) {
        if server == current.server_name() {
            return Target::Current(current);
        }
        let Some(addr) = ring_info.addr_of(server) else {
            continue;
        };
        match Connection::connect(addr, options).await {
            Ok((connection, incoming)) => {
                return Target::Moved(Moved {
                    connection,
                    incoming,
                })
            }
            Err(err) => tracing::debug!("{user} cannot log in on {server}: {err}"),
        }
    }
    Target::Current(current)
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
