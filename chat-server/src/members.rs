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

use crate::store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The most groups cached at once.
pub const MAX_CACHED_GROUPS: usize = 10_000;
/// How long an entry is used at most before it is read again.
pub const ENTRY_TTL: Duration = Duration::from_secs(60);

/// A group's members, sorted by name, shared by every send that reads them.
pub type MemberList = Arc<[String]>;

/// The members of each group, from the cache or else from the store.
pub struct Members {
    store: Store,
    cache: Mutex<Cache>,
    /// True while every change to the groups reaches this server: while it has a link with every
    /// live server.
    coherent: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Members {
    /// A cache over `store`, used only while `coherent` says every change reaches this server.
    pub fn new(store: Store, coherent: impl Fn() -> bool + Send + Sync + 'static) -> Members {
        Members {
            store,
            cache: Mutex::new(Cache::new(MAX_CACHED_GROUPS, ENTRY_TTL)),
            coherent: Box::new(coherent),
        }
    }

    /// The members of `group`, or `None` if there is no such group. A group that does not exist
    /// is not cached: it is read again each time.
    pub async fn get(&self, group: &str) -> Result<Option<MemberList>, StoreError> {
        let ticket = if (self.coherent)() {
            match self.lock().lookup(group, Instant::now()) {
                Lookup::Hit(members) => return Ok(Some(members)),
                Lookup::Miss(ticket) => Some(ticket),
            }
        } else {
            // A change on a server this one is not linked with would not be told here.
            self.lock().clear();
            None
        };
        let Some(members) = self.store.members(group).await? else {
            return Ok(None);
        };
        let members = MemberList::from(members);
        if let Some(ticket) = ticket {
            self.lock().insert(group, ticket, members.clone());
        }
        Ok(Some(members))
    }

    /// Forgets `group`'s members: they may have changed.
    pub fn invalidate(&self, group: &str) {
        self.lock().invalidate(group);
    }

    /// Forgets every group's members: changes may have been missed.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The cache's bookkeeping, without the store or the clock.
struct Cache {
    /// Bumped by every invalidation and clear: a load that began at an older epoch may have
    /// read what has changed since, and is not kept.
    epoch: u64,
    groups: HashMap<String, Entry>,
    capacity: usize,
    ttl: Duration,
}

struct Entry {
    members: MemberList,
    /// When the load that read it began.
    loaded_at: Instant,
}

/// What a load that missed carries back to [`Cache::insert`]: when it began.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    epoch: u64,
    started_at: Instant,
}

enum Lookup {
    Hit(MemberList),
    /// Not cached: read the store, then insert with this ticket.
    Miss(Ticket),
}

impl Cache {
    fn new(capacity: usize, ttl: Duration) -> Cache {
        Cache {
            epoch: 0,
            groups: HashMap::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn lookup(&self, group: &str, now: Instant) -> Lookup {
        match self.groups.get(group) {
            Some(entry) if now.saturating_duration_since(entry.loaded_at) < self.ttl => {
                Lookup::Hit(entry.members.clone())
            }
            _ => Lookup::Miss(Ticket {
                epoch: self.epoch,
                started_at: now,
            }),
        }
    }

    /// Keeps what a load read, unless an invalidation or a clear came since it began. Returns
    /// whether it was kept.
    fn insert(&mut self, group: &str, ticket: Ticket, members: MemberList) -> bool {
        if ticket.epoch != self.epoch {
            return false;
        }
        if self.groups.len() >= self.capacity && !self.groups.contains_key(group) {
            // The first in the map's order: names are hashed with a random key, so this is as
            // good as a random choice, and costs nothing to keep.
            if let Some(evicted) = self.groups.keys().next().cloned() {
                self.groups.remove(&evicted);
            }
        }
        let entry = Entry {
            members,
            loaded_at: ticket.started_at,
        };
        self.groups.insert(group.to_owned(), entry);
        true
    }

    fn invalidate(&mut self, group: &str) {
        self.epoch += 1;
        self.groups.remove(group);
    }

    fn clear(&mut self) {
        self.epoch += 1;
        self.groups.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn list(names: &[&str]) -> MemberList {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    /// Looks `group` up, expecting a miss, and returns the load's ticket.
    #[track_caller]
    fn miss(cache: &Cache, group: &str, now: Instant) -> Ticket {
        match cache.lookup(group, now) {
            Lookup::Miss(ticket) => ticket,
            Lookup::Hit(members) => panic!("{group} is cached as {members:?}"),
        }
    }

    #[track_caller]
    fn check_hit(cache: &Cache, group: &str, now: Instant, expected: &[&str]) {
        match cache.lookup(group, now) {
            Lookup::Hit(members) => assert_eq!(*members, *list(expected)),
            Lookup::Miss(_) => panic!("{group} is not cached"),
        }
    }

    #[test]
    fn a_load_is_kept_and_then_hits() {
        let now = Instant::now();
        let mut cache = Cache::new(10, TTL);
        let ticket = miss(&cache, "ops", now);
        assert!(cache.insert("ops", ticket, list(&["alice", "bob"])));
        check_hit(&cache, "ops", now, &["alice", "bob"]);
    }

    #[test]
    fn a_load_that_raced_an_invalidation_is_not_kept() {
        let now = Instant::now();
        let mut cache = Cache::new(10, TTL);
        // The load reads the members before carol's join commits; the join's invalidation
        // arrives before the load comes back.
        let before_join = miss(&cache, "ops", now);
        cache.invalidate("ops");
        assert!(!cache.insert("ops", before_join, list(&["alice"])));
        // The next send reads again, and sees carol.
        let after_join = miss(&cache, "ops", now);
        assert!(cache.insert("ops", after_join, list(&["alice", "carol"])));
        check_hit(&cache, "ops", now, &["alice", "carol"]);
    }

    #[test]
    fn an_invalidation_of_another_group_also_voids_loads_in_flight() {
        let now = Instant::now();
        let mut cache = Cache::new(10, TTL);
        let ticket = miss(&cache, "ops", now);
        cache.invalidate("dev");
        assert!(!cache.insert("ops", ticket, list(&["alice"])));
    }

    #[test]
    fn an_invalidation_forgets_only_its_group() {
        let now = Instant::now();
        let mut cache = Cache::new(10, TTL);
        for group in ["ops", "dev"] {
            let ticket = miss(&cache, group, now);
            cache.insert(group, ticket, list(&["alice"]));
        }
        cache.invalidate("ops");
        miss(&cache, "ops", now);
        check_hit(&cache, "dev", now, &["alice"]);
    }

    #[test]
    fn a_link_change_clears_everything_and_voids_loads_in_flight() {
        let now = Instant::now();
        let mut cache = Cache::new(10, TTL);
        let ticket = miss(&cache, "ops", now);
        cache.insert("ops", ticket, list(&["alice"]));
        let in_flight = miss(&cache, "dev", now);
        // A link went down or came up: changes may have been missed.
        cache.clear();
        miss(&cache, "ops", now);
        assert!(!cache.insert("dev", in_flight, list(&["bob"])));
        miss(&cache, "dev", now);
    }

    #[test]
    fn entries_expire_after_the_ttl_counted_from_the_loads_start() {
        let start = Instant::now();
        let mut cache = Cache::new(10, TTL);
        let ticket = miss(&cache, "ops", start);
        cache.insert("ops", ticket, list(&["alice"]));
        check_hit(
            &cache,
            "ops",
            start + TTL - Duration::from_millis(1),
            &["alice"],
        );
        miss(&cache, "ops", start + TTL);
    }

    #[test]
    fn a_full_cache_evicts_one_group_to_take_another() {
        let now = Instant::now();
        let mut cache = Cache::new(2, TTL);
        for group in ["a", "b", "c"] {
            let ticket = miss(&cache, group, now);
            assert!(cache.insert(group, ticket, list(&["alice"])));
        }
        assert_eq!(cache.groups.len(), 2);
        check_hit(&cache, "c", now, &["alice"]);
        // Loading a cached group again replaces it without evicting another.
        let ticket = Ticket {
            epoch: cache.epoch,
            started_at: now,
        };
        assert!(cache.insert("c", ticket, list(&["alice", "bob"])));
        assert_eq!(cache.groups.len(), 2);
        check_hit(&cache, "c", now, &["alice", "bob"]);
    }
}
