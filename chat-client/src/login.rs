//! The one way the client logs in: a `login` typed by the user, a failover, a return home.
//!
//! [`Login::run`] asks a server to log the user in and follows its redirects, up to a limit,
//! and says how it went in one [`Outcome`]. Each caller decides what an outcome means for it:
//! a typed `login` prints it, a failover tries the next server, a look at home stays put.
//!
//! **Tickets are handled here and nowhere else.** Every login answer carries a fresh resume
//! ticket, which the session keeps in memory beside the password ([`Credentials`]). A login
//! with a ticket tries it first; a server that refuses it (expired, revoked by a logout or a
//! password change, not the farm's) is asked again at once with the password, and the outcome
//! carries the fresh ticket either way. A login that the password fails too is refused, and its
//! message says that the ticket was refused as well.
//!
//! A server that redirects the login to one that refuses this client at the hello (it has too
//! many connections) is asked again, naming the full server: the user's next server then takes
//! them, and the look at home moves them back once there is room.

use crate::connection::{ConnectError, ConnectOptions, Connection, RequestError};
use crate::farm::Moved;
use chat_proto::{Credential, ErrorCode, ErrorReply, IssuedTicket, Request, Response, Ticket};
use std::fmt;
use std::time::{Duration, Instant};

/// A logged-in user's name, password and newest ticket, kept in memory only, to log in again.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    /// `None` for a session that began with a ticket (a web page that moved servers): when
    /// the farm refuses the ticket, the login is refused.
    pub password: Option<String>,
    /// `None` before the first login, and after a server refused to renew it.
    pub ticket: Option<HeldTicket>,
    /// A server refused both the ticket and the password (changed on another device): the
    /// session stays where it is and stops trying to move home, each try a password hash on
    /// the server and a failed login against the throttle; a failover tells the user.
    pub stale: bool,
}

impl Credentials {
    /// What a typed `login` logs in with: the password alone.
    pub fn password(user: String, password: String) -> Credentials {
        Credentials {
            user,
            password: Some(password),
            ticket: None,
            stale: false,
        }
    }

    /// What a login by ticket alone logs in with. The ticket is due for renewal at once: its
    /// life is not known here, and the login hands out a fresh one anyway.
    pub fn ticket(user: String, ticket: Ticket) -> Credentials {
        Credentials {
            user,
            password: None,
            ticket: Some(HeldTicket {
                ticket,
                renew_at: Instant::now(),
            }),
            stale: false,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// The longest a held ticket waits before it is renewed, whatever its server said.
const MAX_RENEWAL_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A ticket as the client keeps it: the opaque bytes, and when to ask for a fresh one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldTicket {
    pub ticket: Ticket,
    /// Half its life after it was received: from then on the session renews it.
    pub renew_at: Instant,
}

impl HeldTicket {
    pub fn new(issued: IssuedTicket) -> HeldTicket {
        // Capped, so that no answer of a server can overflow the clock.
        let half_life = Duration::from_millis(issued.expires_in_ms / 2).min(MAX_RENEWAL_WAIT);
        HeldTicket {
            ticket: issued.ticket,
            renew_at: Instant::now() + half_life,
        }
    }

    /// Whether it is time to ask for a fresh one.
    /// How long until it is due; zero once it is.
    pub fn until_due(&self) -> Duration {
        self.renew_at.saturating_duration_since(Instant::now())
    }

    pub fn due(&self) -> bool {
        Instant::now() >= self.renew_at
    }
}

/// Where a login is attempted.
pub enum Target<'a> {
    /// The session's connection, which stays open whatever happens.
    Current(&'a Connection),
    /// A connection made for the login, which the outcome hands over or closes.
    New(Moved),
}

impl Target<'_> {
    fn connection(&self) -> &Connection {
        match self {
            Target::Current(connection) => connection,
            Target::New(moved) => &moved.connection,
        }
    }

    fn is_current(&self) -> bool {
        matches!(self, Target::Current(_))
    }

    fn into_moved(self) -> Option<Moved> {
        match self {
            Target::Current(_) => None,
            Target::New(moved) => Some(moved),
        }
    }

    /// Closes a connection made for the login; the current one stays open.
    async fn close(self) {
        if let Target::New(moved) = self {
            moved.connection.close().await;
        }
    }
}

/// A successful login.
pub struct LoggedIn {
    pub user: String,
    /// True when this login created the account.
    pub registered: bool,
    /// How many messages wait for `readlog`; `None` after a login by ticket.
    pub waiting: Option<u64>,
    /// The fresh ticket for the next login.
    pub ticket: HeldTicket,
    /// The new connection, when the login did not happen on the current one.
    pub moved: Option<Moved>,
}

/// How a login went.
pub enum Outcome {
    LoggedIn(LoggedIn),
    /// The last server asked sent the login to `server` at `addr`, and no more redirects are
    /// followed.
    Redirected {
        server: String,
        addr: String,
    },
    /// Refused for good (a wrong password, say); the message is for people. `moved` is the
    /// connection it was refused on, unless that was the current one.
    Refused {
        message: String,
        moved: Option<Moved>,
    },
    /// A redirect led to a server whose key is refused.
    Untrusted(ConnectError),
    /// No server took the login now. `current_lost` when that is because the current
    /// connection ended or its server is going down: the login should run again after a
    /// failover.
    Unreachable {
        reason: String,
        current_lost: bool,
    },
}

/// How to log in: with what, and how far to follow redirects.
pub struct Login<'a> {
    pub credentials: &'a Credentials,
    /// How many redirects in a row to follow before answering [`Outcome::Redirected`].
    pub max_redirects: usize,
    /// For the connections that redirects lead to.
    pub options: &'a ConnectOptions,
}

impl Login<'_> {
    /// Logs in on `target`, following redirects. `refused_by` names a server that refused this
    /// client at the hello before it came to `target`.
    pub async fn run(&self, mut target: Target<'_>, mut refused_by: Option<String>) -> Outcome {
        let user = &self.credentials.user;
        let mut ticket_refused = false;
        let mut n_redirects = 0;
        loop {
            let result = self
                .request(target.connection(), &refused_by, &mut ticket_refused)
                .await;
            let (server, addr) = match result {
                Ok(Response::Redirect { server, addr }) => (server, addr),
                Ok(Response::LoggedIn {
                    user,
                    registered,
                    waiting,
                    ticket,
                }) => {
                    return Outcome::LoggedIn(LoggedIn {
                        user,
                        registered,
                        waiting,
                        ticket: HeldTicket::new(ticket),
                        moved: target.into_moved(),
                    })
                }
                Ok(other) => {
                    tracing::warn!("unexpected answer to a login: {other:?}");
                    let message = "the server sent an unexpected reply".to_string();
                    return refused(target, message).await;
                }
                Err(err) => return self.failed(target, err, ticket_refused).await,
            };
            if n_redirects == self.max_redirects {
                target.close().await;
                return Outcome::Redirected { server, addr };
            }
            n_redirects += 1;
            tracing::debug!("{user} is redirected to {server} at {addr}");
            match Connection::connect(&addr, self.options).await {
                Ok((connection, incoming)) => {
                    target.close().await;
                    target = Target::New(Moved {
                        connection,
                        incoming,
                    });
                    refused_by = None;
                }
                Err(ConnectError::Refused { reason, .. })
                    if refused_by.as_deref() != Some(server.as_str()) =>
                {
                    // Asked again where it is, the login is taken there instead.
                    tracing::debug!("{server} refused {user}: {reason}");
                    refused_by = Some(server);
                }
                Err(err) if err.is_key_refusal() => {
                    target.close().await;
                    return Outcome::Untrusted(err);
                }
                Err(err) => {
                    target.close().await;
                    return Outcome::Unreachable {
                        reason: format!("{user} belongs on {server}, but {err}"),
                        current_lost: false,
                    };
                }
            }
        }
    }

    /// One login request: with the ticket while there is one that was not refused, and else
    /// (or when the server refuses it) with the password.
    async fn request(
        &self,
        connection: &Connection,
        refused_by: &Option<String>,
        ticket_refused: &mut bool,
    ) -> Result<Response, RequestError> {
        let login = |credential| Request::Login {
            user: self.credentials.user.clone(),
            credential,
            refused_by: refused_by.clone(),
        };
        if let Some(held) = self
            .credentials
            .ticket
            .as_ref()
            .filter(|_| !*ticket_refused)
        {
            match connection
                .request(login(Credential::Ticket(held.ticket.clone())))
                .await
            {
                Err(RequestError::Refused(reply)) if reply.code == ErrorCode::BadTicket => {
                    tracing::debug!("{}: {reply}", self.credentials.user);
                    if self.credentials.password.is_none() {
                        // Nothing else to log in with: the server's reason is the answer.
                        return Err(RequestError::Refused(reply));
                    }
                    *ticket_refused = true;
                }
                other => return other,
            }
        }
        let Some(password) = self.credentials.password.clone() else {
            let reply = ErrorReply::new(
                ErrorCode::BadTicket,
                "the session's ticket is gone and it has no password; log in again",
            );
            return Err(RequestError::Refused(reply));
        };
        connection
            .request(login(Credential::Password(password)))
            .await
    }

    /// The login request failed on `target`: closes it unless it is the current connection.
    async fn failed(&self, target: Target<'_>, err: RequestError, ticket_refused: bool) -> Outcome {
        let current_lost = target.is_current();
        match err {
            RequestError::Refused(reply) if reply.code == ErrorCode::ShuttingDown => {
                target.close().await;
                Outcome::Unreachable {
                    reason: reply.message,
                    current_lost,
                }
            }
            // Told to wait (the database is away, or logins of this name are being checked or
            // failed too often): nobody refused the credentials, and a later try may succeed.
            // Going home or failing over tries again, where a refusal would give up for good.
            RequestError::Refused(reply)
                if matches!(reply.code, ErrorCode::Unavailable | ErrorCode::TooFast) =>
            {
                target.close().await;
                Outcome::Unreachable {
                    reason: reply.message,
                    current_lost: false,
                }
            }
            RequestError::Refused(reply) if ticket_refused => {
                let message = format!(
                    "{}; the session's ticket was refused too (expired, or revoked by a logout \
                     or a password change)",
                    reply.message
                );
                refused(target, message).await
            }
            RequestError::Refused(reply) => refused(target, reply.message).await,
            RequestError::ConnectionLost => {
                let reason = format!(
                    "connection to {} lost during the login",
                    target.connection().addr()
                );
                target.close().await;
                Outcome::Unreachable {
                    reason,
                    current_lost,
                }
            }
        }
    }
}

async fn refused(target: Target<'_>, message: String) -> Outcome {
    Outcome::Refused {
        message,
        moved: target.into_moved(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let credentials = Credentials {
            user: "alice".into(),
            password: Some("secret".into()),
            ticket: Some(HeldTicket::new(IssuedTicket {
                ticket: Ticket(b"ticket-bytes".to_vec()),
                expires_in_ms: 1000,
            })),
            stale: false,
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains("116, 105"), "{shown}");
    }

    #[test]
    fn a_ticket_is_due_for_renewal_at_half_its_life() {
        let issued = |expires_in_ms| IssuedTicket {
            ticket: Ticket(vec![1]),
            expires_in_ms,
        };
        assert!(HeldTicket::new(issued(0)).due());
        assert!(!HeldTicket::new(issued(3_600_000)).due());
        assert!(!HeldTicket::new(issued(u64::MAX)).due());
    }
}
