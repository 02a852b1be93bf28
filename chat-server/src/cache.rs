//! A cache of values read from the store, kept only while nothing can have changed them
//! unseen: the groups' members (`members`) and the users' revocation epochs (`revocation`).
//! The rules that keep a stale entry from living on are stated in `members`; in short, a load
//! that began before an invalidation or a clear is not kept, entries expire after a TTL, and
//! while the server is not linked with every live server the cache is bypassed and kept empty.
//!
//! At most a fixed number of entries are cached; a miss when it is full evicts one. No lock is
//! held while the store is read.

use crate::store::StoreError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Values by name, from the cache or else from a load, cached only while `coherent` holds.
pub struct Coherent<V> {
    cache: Mutex<Cache<V>>,
    /// True while every change reaches this server: while it has a link with every live server.
    coherent: Box<dyn Fn() -> bool + Send + Sync>,
}

impl<V: Clone> Coherent<V> {
    pub fn new(
        capacity: usize,
        ttl: Duration,
        coherent: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Coherent<V> {
        Coherent {
            cache: Mutex::new(Cache::new(capacity, ttl)),
            coherent: Box::new(coherent),
        }
    }

    /// The value of `key`, cached or else from `load`; `None` (not cached) when there is none.
    pub async fn get<F, Fut>(&self, key: &str, load: F) -> Result<Option<V>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, StoreError>>,
    {
        let ticket = if (self.coherent)() {
            match self.lock().lookup(key, Instant::now()) {
                Lookup::Hit(value) => return Ok(Some(value)),
                Lookup::Miss(ticket) => Some(ticket),
            }
        } else {
            // A change on a server this one is not linked with would not be told here.
            self.lock().clear();
            None
        };
        // Boxed: a load's state (a query) is needed only on a miss, not in every caller's.
        let Some(value) = Box::pin(load()).await? else {
            return Ok(None);
        };
        if let Some(ticket) = ticket {
            self.lock().insert(key, ticket, value.clone());
        }
        Ok(Some(value))
    }

    /// Forgets `key`'s value: it may have changed.
    pub fn invalidate(&self, key: &str) {
        self.lock().invalidate(key);
    }

    /// Forgets every value: changes may have been missed.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, Cache<V>> {
        self.cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The cache's bookkeeping, without the store or the clock.
struct Cache<V> {
    /// Bumped by every invalidation and clear: a load that began at an older epoch may have
    /// read what has changed since, and is not kept.
    epoch: u64,
    entries: HashMap<String, Entry<V>>,
    capacity: usize,
    ttl: Duration,
}

struct Entry<V> {
    value: V,
    /// When the load that read it began.
    loaded_at: Instant,
}

/// What a load that missed carries back to [`Cache::insert`]: when it began.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    epoch: u64,
    started_at: Instant,
}

enum Lookup<V> {
    Hit(V),
    /// Not cached: read the store, then insert with this ticket.
    Miss(Ticket),
}

impl<V: Clone> Cache<V> {
    fn new(capacity: usize, ttl: Duration) -> Cache<V> {
        Cache {
            epoch: 0,
            entries: HashMap::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    fn lookup(&self, key: &str, now: Instant) -> Lookup<V> {
        match self.entries.get(key) {
            Some(entry) if now.saturating_duration_since(entry.loaded_at) < self.ttl => {
                Lookup::Hit(entry.value.clone())
            }
            _ => Lookup::Miss(Ticket {
                epoch: self.epoch,
                started_at: now,
            }),
        }
    }

    /// Keeps what a load read, unless an invalidation or a clear came since it began. Returns
    /// whether it was kept.
    fn insert(&mut self, key: &str, ticket: Ticket, value: V) -> bool {
        if ticket.epoch != self.epoch {
            return false;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key) {
            // The first in the map's order: names are hashed with a random key, so this is as
            // good as a random choice, and costs nothing to keep.
            if let Some(evicted) = self.entries.keys().next().cloned() {
                self.entries.remove(&evicted);
            }
        }
        let entry = Entry {
            value,
            loaded_at: ticket.started_at,
        };
        self.entries.insert(key.to_owned(), entry);
        true
    }

    fn invalidate(&mut self, key: &str) {
        self.epoch += 1;
        self.entries.remove(key);
    }

    fn clear(&mut self) {
        self.epoch += 1;
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values as the members' cache holds them.
    type MemberList = std::sync::Arc<[String]>;

    const TTL: Duration = Duration::from_secs(60);

    fn list(names: &[&str]) -> MemberList {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    /// Looks `group` up, expecting a miss, and returns the load's ticket.
    #[track_caller]
    fn miss(cache: &Cache<MemberList>, group: &str, now: Instant) -> Ticket {
        match cache.lookup(group, now) {
            Lookup::Miss(ticket) => ticket,
            Lookup::Hit(members) => panic!("{group} is cached as {members:?}"),
        }
    }

    #[track_caller]
    fn check_hit(cache: &Cache<MemberList>, group: &str, now: Instant, expected: &[&str]) {
        match cache.lookup(group, now) {
            Lookup::Hit(members) => assert_eq!(*members, *list(expected)),
            Lookup::Miss(_) => panic!("{group} is not cached"),
        }
    }

    #[test]
    fn a_load_is_kept_and_then_hits() {
        let now = Instant::now();
        let mut cache = Cache::<MemberList>::new(10, TTL);
        let ticket = miss(&cache, "ops", now);
        assert!(cache.insert("ops", ticket, list(&["alice", "bob"])));
        check_hit(&cache, "ops", now, &["alice", "bob"]);
    }

    #[test]
    fn a_load_that_raced_an_invalidation_is_not_kept() {
        let now = Instant::now();
        let mut cache = Cache::<MemberList>::new(10, TTL);
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
        let mut cache = Cache::<MemberList>::new(10, TTL);
        let ticket = miss(&cache, "ops", now);
        cache.invalidate("dev");
        assert!(!cache.insert("ops", ticket, list(&["alice"])));
    }

    #[test]
    fn an_invalidation_forgets_only_its_group() {
        let now = Instant::now();
        let mut cache = Cache::<MemberList>::new(10, TTL);
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
        let mut cache = Cache::<MemberList>::new(10, TTL);
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
        let mut cache = Cache::<MemberList>::new(10, TTL);
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
        let mut cache = Cache::<MemberList>::new(2, TTL);
        for group in ["a", "b", "c"] {
            let ticket = miss(&cache, group, now);
            assert!(cache.insert(group, ticket, list(&["alice"])));
        }
        assert_eq!(cache.entries.len(), 2);
        check_hit(&cache, "c", now, &["alice"]);
        // Loading a cached group again replaces it without evicting another.
        let ticket = Ticket {
            epoch: cache.epoch,
            started_at: now,
        };
        assert!(cache.insert("c", ticket, list(&["alice", "bob"])));
        assert_eq!(cache.entries.len(), 2);
        check_hit(&cache, "c", now, &["alice", "bob"]);
    }
}
