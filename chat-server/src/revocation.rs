//! The users' revocation epochs, cached, so that checking a resume ticket reads nothing from
//! the database.
//!
//! A ticket is valid only while its user's epoch is the one it names (see `tickets`). A
//! `logout` or a `passwd` here bumps the epoch in the store and then invalidates the user
//! here; one on another server reaches this one as a `Revoked` frame over their link, sent
//! after its commit. The cache follows the same rules as the groups' members (see `members`
//! and `cache`): a load that raced an invalidation is not kept, a link going down or coming up
//! clears it, it is bypassed while this server is not linked with every live server, and no
//! entry lives longer than [`ENTRY_TTL`]. So a ticket revoked elsewhere is refused here a
//! link's latency later, and a miss costs one small query, never a password hash.

use crate::cache::Coherent;
use crate::store::{Store, StoreError};
use std::time::Duration;

/// The most users whose epoch is cached at once.
pub const MAX_CACHED_USERS: usize = 100_000;
/// How long an entry is used at most before it is read again.
pub const ENTRY_TTL: Duration = Duration::from_secs(60);

/// Each user's revocation epoch, from the cache or else from the store.
pub struct Revocations {
    store: Store,
    cache: Coherent<i64>,
}

impl Revocations {
    /// A cache over `store`, used only while `coherent` says every change reaches this server.
    pub fn new(store: Store, coherent: impl Fn() -> bool + Send + Sync + 'static) -> Revocations {
        Revocations {
            store,
            cache: Coherent::new(MAX_CACHED_USERS, ENTRY_TTL, coherent),
        }
    }

    /// `user`'s epoch, or `None` if there is no such user.
    pub async fn epoch(&self, user: &str) -> Result<Option<i64>, StoreError> {
        self.cache.get(user, || self.store.ticket_epoch(user)).await
    }

    /// Forgets `user`'s epoch: their tickets were revoked.
    pub fn invalidate(&self, user: &str) {
        self.cache.invalidate(user);
    }

    /// Forgets every epoch: revocations may have been missed.
    pub fn clear(&self) {
        self.cache.clear();
    }
}
