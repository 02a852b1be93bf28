//! [`CommandContext`]: what the commands of every session use, and nothing more.

use super::TicketIssuer;
use crate::delivery::Delivery;
use crate::farm::Farm;
use crate::forwarding::ForwardingKey;
use crate::hub::Hub;
use crate::limits::{LoginThrottle, Registrations};
use crate::links::Links;
use crate::members::Members;
use crate::password::Hasher;
use crate::presence::Presence;
use crate::store::{Store, StoreError};
use chat_proto::PeerFrame;
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// This server's parts that client requests read and change; one for all its sessions.
pub struct CommandContext {
    /// This server's name in the farm.
    pub name: String,
    pub store: Store,
    /// The ring, for redirects and placements.
    pub farm: Arc<Farm>,
    /// Who is logged in here; also the way to tell every link of a change to a group.
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    /// The groups' members, cached, for sends.
    pub members: Arc<Members>,
    /// Which links are up: a user whose home is not linked is served here or by the backup.
    pub links: Arc<Links>,
    pub delivery: Arc<Delivery>,
    pub known_users: KnownUsers,
    pub login_throttle: LoginThrottle,
    /// Makes and checks resume tickets.
    pub tickets: TicketIssuer,
    /// Checks, and for the web gateway makes, the tags of forwarded addresses.
    pub forwarding: Arc<ForwardingKey>,
    /// How logins went, for the console's `logins`.
    pub logins: Arc<LoginCounts>,
    /// New accounts per source address.
    pub registrations: Registrations,
    /// The bounded pool that hashes and checks passwords.
    pub hasher: Hasher,
}

impl CommandContext {
    /// The server that should serve `user` now.
    pub fn serving(&self, user: &str) -> String {
        self.links.serving(&self.farm.view(), user)
    }

    /// The user's home and backup on the current ring of live servers.
    pub fn placement(&self, user: &str) -> (String, Option<String>) {
        self.farm.view().placement(user)
    }

    /// Forgets `group`'s members here and tells every other server to: call it once a join or
    /// a leave has been committed, or may have been.
    pub fn group_changed(&self, group: &str) {
        self.members.invalidate(group);
        self.hub.tell_links(&PeerFrame::GroupChanged {
            group: group.to_owned(),
        });
    }

    /// The shared copy of `user`'s name if `user` is registered, else `None`.
    pub async fn registered(&self, user: &str) -> Result<Option<Arc<str>>, StoreError> {
        if let Some(name) = self.known_users.get(user) {
            return Ok(Some(name));
        }
        // Boxed: a query's state is needed only for a name not known yet, not in every send.
        let exists = Box::pin(self.store.user_exists(user)).await?;
        Ok(exists.then(|| self.known_users.insert(user)))
    }
}

/// Names known to be registered. Users are never deleted, so this needs no invalidation.
///
/// Each name is kept once and handed out shared: a message to a user carries this copy, with
/// no allocation of its own, and the copy that its acknowledgement is checked against is one
/// that the user's traffic keeps in the CPU's caches.
#[derive(Default)]
pub struct KnownUsers {
    names: Mutex<HashSet<Arc<str>>>,
}

impl KnownUsers {
    /// Notes that `user` is registered; returns the shared copy of the name.
    pub fn insert(&self, user: &str) -> Arc<str> {
        let mut names = self.lock();
        if let Some(name) = names.get(user) {
            return name.clone();
        }
        let name: Arc<str> = user.into();
        names.insert(name.clone());
        name
    }

    fn get(&self, user: &str) -> Option<Arc<str>> {
        self.lock().get(user).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<Arc<str>>> {
        self.names
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// How this server's logins went since it started: the console's `logins`.
#[derive(Default)]
pub struct LoginCounts {
    /// Passwords hashed or verified with argon2 (registrations, logins, `passwd`).
    argon2: AtomicU64,
    /// Logins by ticket, which cost no argon2.
    by_ticket: AtomicU64,
    /// Tickets refused: malformed, forged, expired or revoked.
    tickets_refused: AtomicU64,
    /// Fresh tickets asked for by sessions in use (`RenewTicket`).
    tickets_renewed: AtomicU64,
}

impl LoginCounts {
    pub fn count_argon2(&self) {
        self.argon2.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_ticket_login(&self) {
        self.by_ticket.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_ticket_refused(&self) {
        self.tickets_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_ticket_renewed(&self) {
        self.tickets_renewed.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Display for LoginCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        write!(
            f,
            "argon2={} ticket_logins={} tickets_refused={} tickets_renewed={}",
            load(&self.argon2),
            load(&self.by_ticket),
            load(&self.tickets_refused),
            load(&self.tickets_renewed)
        )
    }
}
