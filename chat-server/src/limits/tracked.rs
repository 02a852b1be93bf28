//! [`Tracked`]: a map of bounded size that forgets the entry touched longest ago first.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// At most `capacity` entries; inserting one more forgets the one touched longest ago, so that
/// filling the map with new keys forgets only the oldest, never everyone at once.
pub(super) struct Tracked<K, V> {
    capacity: usize,
    /// Each value with its place in `order`.
    entries: HashMap<K, (V, u64)>,
    /// The keys by the time they were last touched, oldest first.
    order: BTreeMap<u64, K>,
    next_touch: u64,
}

impl<K: Hash + Eq + Clone, V> Tracked<K, V> {
    pub(super) fn new(capacity: usize) -> Tracked<K, V> {
        Tracked {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_touch: 0,
        }
    }

    pub(super) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|(value, _)| value)
    }

    /// The entry of `key`, made with `make` if missing, now the newest.
    pub(super) fn touch(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V {
        let touch = self.next_touch;
        self.next_touch += 1;
        if let Some((_, last)) = self.entries.get(key) {
            self.order.remove(last);
        } else {
            while self.entries.len() >= self.capacity {
                let Some((_, oldest)) = self.order.pop_first() else {
                    break;
                };
                self.entries.remove(&oldest);
            }
        }
        self.order.insert(touch, key.clone());
        let entry = self
            .entries
            .entry(key.clone())
            .or_insert_with(|| (make(), 0));
        entry.1 = touch;
        &mut entry.0
    }

    /// Makes `key`'s entry, if it has one, the newest.
    pub(super) fn refresh<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let touch = self.next_touch;
        if let Some((_, last)) = self.entries.get_mut(key) {
            if let Some(owner) = self.order.remove(last) {
                self.next_touch += 1;
                *last = touch;
                self.order.insert(touch, owner);
            }
        }
    }

    pub(super) fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some((_, last)) = self.entries.remove(key) {
            self.order.remove(&last);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_touched_longest_ago_goes_first() {
        let mut tracked = Tracked::new(3);
        for key in [1, 2, 3] {
            *tracked.touch(&key, || 0) += key;
        }
        // 1 is touched again, so 2 is now the oldest.
        *tracked.touch(&1, || 0) += 10;
        tracked.touch(&4, || 4);
        assert_eq!(tracked.len(), 3);
        assert_eq!(
            [1, 2, 3, 4].map(|key| tracked.get(&key).copied()),
            [Some(11), None, Some(3), Some(4)]
        );
        tracked.remove(&3);
        tracked.touch(&5, || 5);
        assert_eq!(tracked.get(&1), Some(&11));
        assert_eq!(tracked.len(), 3);
    }
}
