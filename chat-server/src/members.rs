//! The members of each group, cached in memory, so that a group send reads nothing from the
//! database.
//!
//! An entry is filled on a miss from the store and forgotten when the group's members may have
//! changed: a join or a leave here invalidates it at once, after the store committed; one on
//! another server reaches this one as a `GroupChanged` frame over their link, sent after its
//! commit. **The cache is eventually consistent**: another server's change takes effect here
//! when its frame arrives, a link's latency later (milliseconds); a send here in between still
//! goes to the members as they were.
//!
//! What keeps a stale entry from living on:
//!
//! - **A load that began before an invalidation is not kept.** Every invalidation and clear
//!   bumps an epoch; a load keeps what it read only if the epoch is still the one it began at,
//!   so it cannot put back what an invalidation took out while it was reading. (The epoch is one
//!   for all groups: a change to any group voids the loads in flight, which then answer their
//!   send but are read again by the next one. Joins are rare next to sends.)
//! - **A link going down or coming up clears the whole cache**, and so does the first frame a
//!   peer sends on a new link: whatever changed while there was no link was told to no one.
//!   (A peer queues `GroupChanged` on every link that has had its first frame, so a change it
//!   made before that frame is covered by the clear the frame causes here.)
//! - **While this server is not linked with every live server, the cache is bypassed and kept
//!   empty**: during a partition between servers, each side reads the members from the store
//!   for every send, as if there were no cache, until the link is back.
//! - **No entry is trusted longer than [`ENTRY_TTL`]**, in case a change was missed in a way
//!   none of the above foresaw.
//!
//! At most [`MAX_CACHED_GROUPS`] groups are cached; a miss when it is full evicts one. No lock
//! is held while the store is read.

use crate::cache::Coherent;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// The most groups cached at once.
pub const MAX_CACHED_GROUPS: usize = 10_000;
/// How long an entry is used at most before it is read again.
pub const ENTRY_TTL: Duration = Duration::from_secs(60);

/// A group's members, sorted by name, shared by every send that reads them: a send to the
/// group shares each name too, never copying one per recipient.
pub type MemberList = Arc<[Arc<str>]>;

/// The members of each group, from the cache or else from the store.
pub struct Members {
    store: Store,
    cache: Coherent<MemberList>,
}

impl Members {
    /// A cache over `store`, used only while `coherent` says every change reaches this server.
    pub fn new(store: Store, coherent: impl Fn() -> bool + Send + Sync + 'static) -> Members {
        Members {
            store,
            cache: Coherent::new(MAX_CACHED_GROUPS, ENTRY_TTL, coherent),
        }
    }

    /// The members of `group`, or `None` if there is no such group. A group that does not exist
    /// is not cached: it is read again each time.
    pub async fn get(&self, group: &str) -> Result<Option<MemberList>, StoreError> {
        let load = || async {
            let members = self.store.members(group).await?;
            Ok(members.map(|names| names.into_iter().map(Arc::from).collect()))
        };
        self.cache.get(group, load).await
    }

    /// Forgets `group`'s members: they may have changed.
    pub fn invalidate(&self, group: &str) {
        self.cache.invalidate(group);
    }

    /// Forgets every group's members: changes may have been missed.
    pub fn clear(&self) {
        self.cache.clear();
    }
}
