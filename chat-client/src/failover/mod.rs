//! Staying connected: a reconnect after the server is lost, and the way back home.
//!
//! A **reconnect** ([`reconnect`]) walks the farm in the user's ring order (home, backup, then
//! clockwise; see [`candidates`]) with the last ring the session knows, the lost server last.
//! It refreshes the ring from the first server that answers, since the lost server drops out
//! of the farm's ring a few seconds after it dies, then logs the user in again with the
//! remembered credentials, following redirects as a login does. When no server takes the
//! user, it pauses (a jittered exponential [`Backoff`]) and walks again, until one does.
//!
//! A server whose key is refused (see `handshake`) counts as one that does not answer, so the
//! walk goes on to the next. But when *every* server of a walk refused for its key, waiting
//! will not help: the reconnect gives up with [`ConnectError::NoneTrusted`], for the session to
//! show, instead of trying again forever without a word.
//!
//! A **look at home** ([`check_home`]) runs every so often while a user is logged in. It
//! renews the session's resume ticket once it is past half its life, refreshes the ring from
//! the current server, even at home, so that a reconnect starts from
//! the farm as it is (a restarted server may have a new address). When the user's home by that
//! ring is another server, it tries to log in there, following no redirect, so that a home
//! which does not agree leaves the user where they are.
//!
//! Nothing here prints; the session reports what it is handed.

use crate::connection::{ConnectError, ConnectOptions, Connection, RequestError};
use crate::farm::{self, Moved, MAX_REDIRECTS};
use crate::login::{Credentials, HeldTicket, LoggedIn, Login, Outcome, Target};
use chat_proto::{ErrorCode, Request, Response, RingInfo};
use std::sync::Arc;
use std::time::Duration;

mod backoff;

pub use backoff::Backoff;

/// How long a connection made while failing over or looking at home may take to answer: short,
/// so that one hung server does not stall the walk.
pub const FAILOVER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause before the first attempt of a reconnect, before jitter.
pub const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two attempts.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// The server a connection was lost to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostServer {
    pub name: String,
    /// The address it was dialed at.
    pub addr: String,
}

/// What a reconnect starts from.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The servers named at start.
    pub seeds: Vec<String>,
    /// The newest ring the session knows.
    pub ring: Option<RingInfo>,
    /// Who to log in again; `None` when nobody was logged in.
    pub credentials: Option<Credentials>,
    /// The server just lost, tried last.
    pub lost: Option<LostServer>,
    pub options: ConnectOptions,
}

/// How the login went after a reconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relogin {
    /// Nobody was logged in.
    NotNeeded,
    /// Logged in again, with this fresh ticket.
    LoggedIn(HeldTicket),
    /// The server refused the remembered credentials; the message is for people.
    Refused(String),
}

/// A new connection after a loss.
pub struct Reconnected {
    pub moved: Moved,
    /// The newest ring seen on the way, if any.
    pub ring: Option<RingInfo>,
    pub relogin: Relogin,
}

/// Connects again, and logs in again when someone was logged in. Keeps trying until a server
/// takes the session; gives up only when every server of a walk refused for its key.
pub async fn reconnect(plan: Plan) -> Result<Reconnected, ConnectError> {
    let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
    let mut ring = plan.ring.clone();
    loop {
        // Even the first attempt waits a little, so that the many clients of a server that
        // just died do not all arrive at the next one in the same moment.
        tokio::time::sleep(backoff.pause()).await;
        match attempt(&plan, &mut ring).await {
            Walk::Reconnected(reconnected) => return Ok(reconnected),
            Walk::AllRefused(refusals) => return Err(ConnectError::NoneTrusted(refusals)),
            Walk::NoneTook => {}
        }
    }
}

/// How one walk over the candidates ended.
enum Walk {
    Reconnected(Reconnected),
    /// Every candidate was refused for its key (or sent the login to a server that was).
    AllRefused(Vec<ConnectError>),
    /// No server took the session, and some may later.
    NoneTook,
}

/// One walk over the candidates.
async fn attempt(plan: &Plan, ring: &mut Option<RingInfo>) -> Walk {
    let user = plan
        .credentials
        .as_ref()
        .map(|credentials| credentials.user.as_str());
    let mut refusals = Vec::new();
    let mut n_unreachable = 0;
    for addr in candidates(ring.as_ref(), &plan.seeds, user, plan.lost.as_ref()) {
        let (connection, incoming) = match Connection::connect(&addr, &plan.options).await {
            Ok(connected) => connected,
            Err(err) if err.is_key_refusal() => {
                tracing::debug!("failover: {err}");
                refusals.push(err);
                continue;
            }
            Err(err) => {
                tracing::debug!("failover: {err}");
                n_unreachable += 1;
                continue;
            }
        };
        match farm::fetch_ring(&connection).await {
            Ok(Some(fresh)) => *ring = Some(fresh),
            Ok(None) => {}
            Err(farm::Lost) => {
                connection.close().await;
                n_unreachable += 1;
                continue;
            }
        }
        let moved = Moved {
            connection,
            incoming,
        };
        let Some(credentials) = &plan.credentials else {
            return Walk::Reconnected(Reconnected {
                moved,
                ring: ring.clone(),
                relogin: Relogin::NotNeeded,
            });
        };
        let login = Login {
            credentials,
            max_redirects: MAX_REDIRECTS,
            options: &plan.options,
        };
        let (moved, relogin) = match login.run(Target::New(moved), None).await {
            Outcome::LoggedIn(LoggedIn {
                moved: Some(moved),
                ticket,
                ..
            }) => (moved, Relogin::LoggedIn(ticket)),
            Outcome::Refused {
                message,
                moved: Some(moved),
            } => (moved, Relogin::Refused(message)),
            Outcome::Untrusted(err) => {
                refusals.push(err);
                continue;
            }
            Outcome::Unreachable { reason, .. } => {
                tracing::debug!("failover: {reason}");
                n_unreachable += 1;
                continue;
            }
            // The limit of redirects; a login on a new target always has a connection.
            _ => {
                n_unreachable += 1;
                continue;
            }
        };
        return Walk::Reconnected(Reconnected {
            moved,
            ring: ring.clone(),
            relogin,
        });
    }
    if n_unreachable == 0 && !refusals.is_empty() {
        Walk::AllRefused(refusals)
    } else {
        Walk::NoneTook
    }
}

/// The addresses a reconnect tries, in order, each once.
///
/// For a logged-in user: their successors on the ring (home, backup, then clockwise), then
/// the seeds. Otherwise: the seeds, then every server of the ring. The lost server comes last
/// either way: it may come back, but the others are likelier to answer.
pub fn candidates(
    ring: Option<&RingInfo>,
    seeds: &[String],
    user: Option<&str>,
    lost: Option<&LostServer>,
) -> Vec<String> {
    let ring_addrs: Vec<String> = match (ring, user) {
        (Some(info), Some(user)) => info
            .ring()
            .successors(user)
            .filter_map(|server| info.addr_of(server))
            .map(String::from)
            .collect(),
        (Some(info), None) => info
            .servers
            .iter()
            .map(|server| server.addr.clone())
            .collect(),
        (None, _) => Vec::new(),
    };
    let (first, then) = match user {
        Some(_) => (ring_addrs, seeds.to_vec()),
        None => (seeds.to_vec(), ring_addrs),
    };
    let mut order: Vec<String> = Vec::new();
    for addr in first.into_iter().chain(then) {
        if !order.contains(&addr) {
            order.push(addr);
        }
    }
    let Some(lost) = lost else {
        return order;
    };
    let lost_addrs = [
        Some(lost.addr.as_str()),
        ring.and_then(|info| info.addr_of(&lost.name)),
    ];
    let (mut order, mut last): (Vec<String>, Vec<String>) = order
        .into_iter()
        .partition(|addr| !lost_addrs.contains(&Some(addr.as_str())));
    if last.is_empty() {
        last.push(lost.addr.clone());
    }
    order.extend(last);
    order
}

/// What one look at home found.
pub struct HomeCheck {
    /// The ring from the current server; `None` when it gave none.
    pub ring: Option<RingInfo>,
    /// A connection logged in at home, to switch to.
    pub moved: Option<Moved>,
    /// News of the session's ticket: renewed, or refused.
    pub ticket: Option<TicketNews>,
    /// The credentials this look used: its news is stale if the session's changed meanwhile
    /// (a `passwd`, another login).
    pub credentials: Credentials,
}

/// What became of the session's ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketNews {
    Fresh(HeldTicket),
    /// The server would not renew it (the user's tickets were revoked): the next login is by
    /// password.
    Refused,
    /// Home refused the ticket and the password: the credentials are stale.
    LoginRefused,
}

impl TicketNews {
    /// Keeps a renewed ticket in `credentials`, or forgets one the farm will not take.
    pub fn apply_to(self, credentials: &mut Credentials) {
        match self {
            TicketNews::Fresh(ticket) => credentials.ticket = Some(ticket),
            TicketNews::Refused => credentials.ticket = None,
            TicketNews::LoginRefused => {
                credentials.ticket = None;
                credentials.stale = true;
            }
        }
    }
}

/// Waits `wait`, renews the ticket when it is past half its life, refreshes the ring from
/// `current`, and when the user's home by that ring is another server, tries to log in there.
pub async fn check_home(
    current: Arc<Connection>,
    credentials: Credentials,
    options: ConnectOptions,
    wait: Duration,
) -> HomeCheck {
    tokio::time::sleep(wait).await;
    let mut ticket = renew_ticket(&current, &credentials).await;
    let ring = farm::fetch_ring(&current).await.unwrap_or(None);
    let here = current.server_name().to_string();
    // Let the connection go before dialing, so that a switch is never held up by this look.
    drop(current);
    let mut moved = None;
    if let Some(info) = ring.as_ref().filter(|_| !credentials.stale) {
        match go_home(info, &here, &credentials, &options).await {
            Home::Moved(home) => {
                ticket = Some(TicketNews::Fresh(home.ticket));
                moved = home.moved;
            }
            Home::Refused => ticket = Some(TicketNews::LoginRefused),
            Home::Stay => {}
        }
    }
    HomeCheck {
        ring,
        moved,
        ticket,
        credentials,
    }
}

/// Asks `current` for a fresh ticket when the session's is due; `None` when it is not, or the
/// server did not answer.
async fn renew_ticket(current: &Connection, credentials: &Credentials) -> Option<TicketNews> {
    if !credentials.ticket.as_ref().is_some_and(HeldTicket::due) {
        return None;
    }
    match current.request(Request::RenewTicket).await {
        Ok(Response::Ticket(issued)) => Some(TicketNews::Fresh(HeldTicket::new(issued))),
        Err(RequestError::Refused(reply)) if reply.code == ErrorCode::BadTicket => {
            Some(TicketNews::Refused)
        }
        other => {
            tracing::debug!("no fresh ticket: {other:?}");
            None
        }
    }
}

/// What a try at going home came to.
enum Home {
    Moved(LoggedIn),
    /// Home is here, or does not take the user now.
    Stay,
    /// Home refused the credentials.
    Refused,
}

/// Logs in at the user's home by `info` when that is not `here`, following no redirect.
async fn go_home(
    info: &RingInfo,
    here: &str,
    credentials: &Credentials,
    options: &ConnectOptions,
) -> Home {
    let ring = info.ring();
    let Some(home) = ring.home(&credentials.user).filter(|home| *home != here) else {
        return Home::Stay;
    };
    let Some(addr) = info.addr_of(home) else {
        return Home::Stay;
    };
    let (connection, incoming) = match Connection::connect(addr, options).await {
        Ok(connected) => connected,
        Err(err) => {
            tracing::debug!("home {home} is not back: {err}");
            return Home::Stay;
        }
    };
    let login = Login {
        credentials,
        max_redirects: 0,
        options,
    };
    let target = Target::New(Moved {
        connection,
        incoming,
    });
    match login.run(target, None).await {
        Outcome::LoggedIn(logged_in) => Home::Moved(logged_in),
        Outcome::Refused { message, moved } => {
            tracing::debug!("home {home} refused {}: {message}", credentials.user);
            if let Some(moved) = moved {
                moved.connection.close().await;
            }
            Home::Refused
        }
        _ => {
            tracing::debug!("home {home} did not take {} back", credentials.user);
            Home::Stay
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::ring::DEFAULT_VNODES;
    use chat_proto::{Ring, ServerAddr};

    fn ring_info(names: &[&str]) -> RingInfo {
        RingInfo {
            vnodes: DEFAULT_VNODES,
            servers: names
                .iter()
                .map(|name| ServerAddr {
                    name: name.to_string(),
                    addr: format!("{name}:1"),
                })
                .collect(),
        }
    }

    /// A user whose successors on the ring of s1, s2, s3 are s1, s2, s3 in that order.
    fn user_in_order() -> String {
        let ring = Ring::new(["s1", "s2", "s3"], DEFAULT_VNODES);
        (0..10_000)
            .map(|idx| format!("user{idx}"))
            .find(|user| ring.successors(user).eq(["s1", "s2", "s3"]))
            .expect("some user has that placement")
    }

    fn lost(name: &str, addr: &str) -> LostServer {
        LostServer {
            name: name.into(),
            addr: addr.into(),
        }
    }

    #[track_caller]
    fn check(
        ring: Option<&RingInfo>,
        seeds: &[&str],
        user: Option<&str>,
        lost: Option<&LostServer>,
        expected: &[&str],
    ) {
        let seeds: Vec<String> = seeds.iter().map(|seed| seed.to_string()).collect();
        assert_eq!(candidates(ring, &seeds, user, lost), expected);
    }

    #[test]
    fn a_user_walks_the_ring_with_the_lost_server_last() {
        let ring = ring_info(&["s1", "s2", "s3"]);
        let user = user_in_order();
        let user = Some(user.as_str());
        check(
            Some(&ring),
            &["seed:9"],
            user,
            None,
            &["s1:1", "s2:1", "s3:1", "seed:9"],
        );
        let lost_home = lost("s1", "s1:1");
        check(
            Some(&ring),
            &["s2:1"],
            user,
            Some(&lost_home),
            &["s2:1", "s3:1", "s1:1"],
        );
        // Dialed under another address than the ring's, the lost server still goes last.
        let lost_backup = lost("s2", "localhost:2");
        check(
            Some(&ring),
            &["localhost:2"],
            user,
            Some(&lost_backup),
            &["s1:1", "s3:1", "s2:1", "localhost:2"],
        );
    }

    #[test]
    fn without_a_user_the_seeds_come_first() {
        let ring = ring_info(&["s1", "s2"]);
        check(
            Some(&ring),
            &["s2:1", "x:1"],
            None,
            None,
            &["s2:1", "x:1", "s1:1"],
        );
        let gone = lost("s1", "s1:1");
        check(None, &["s1:1", "x:1"], None, Some(&gone), &["x:1", "s1:1"]);
        // A server reached by a redirect, known neither from the seeds nor a ring.
        let elsewhere = lost("s9", "s9:1");
        check(None, &["x:1"], None, Some(&elsewhere), &["x:1", "s9:1"]);
    }
}
