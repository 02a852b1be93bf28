//! A bounded map of recent message ids: the oldest are forgotten first.
//!
//! It keeps two generations of ids rather than a queue of them: new ids go into the young
//! one, and once that holds the capacity, the old one is forgotten whole and the young
//! one becomes old. An insert then costs one lookup in the young map, where a queue costs a
//! push and the removal of the oldest id from the map, a second lookup at a place long out of
//! the cache; under load these maps hold tens of thousands of ids, and every message inserts
//! into one of them on each server it passes. An id inserted again while it is old is not
//! looked for there: it goes into the young map too, whose value `get` finds first, and the
//! old copy goes with its generation. What it gives up is exactness: it remembers the newest
//! ids, at least the capacity and at most twice as many entries.

use super::ids::IdMap;
use chat_proto::MessageId;
use std::mem;
use std::sync::Arc;

/// How many servers' names [`Relayed`] keeps to share; a farm has far fewer.
const OWNERS_KEPT: usize = 64;

pub struct Recent<V> {
    young: IdMap<V>,
    old: IdMap<V>,
    /// How many ids the young generation takes before it becomes the old one.
    capacity: usize,
}

impl<V> Recent<V> {
    /// Remembers at least the `capacity` newest ids, and at most twice as many.
    pub fn new(capacity: usize) -> Recent<V> {
        Recent {
            young: IdMap::default(),
            old: IdMap::default(),
            capacity: capacity.max(1),
        }
    }

    /// As [`Recent::new`], with the young generation's room for `capacity` ids made now: it
    /// never grows by rehashing, which under load stalls the thread for a millisecond or more
    /// at each doubling. The memory is taken up front, as much as a full generation takes.
    pub fn with_room(capacity: usize) -> Recent<V> {
        let mut recent = Recent::new(capacity);
        recent.young.reserve(recent.capacity);
        recent
    }

    pub fn insert(&mut self, id: MessageId, value: V) {
        if self.young.len() >= self.capacity && !self.young.contains_key(&id) {
            // The old generation is forgotten; its allocation is kept for the next one.
            self.old.clear();
            mem::swap(&mut self.young, &mut self.old);
            // The first time, there is no allocation to keep: the second generation gets its
            // room at once too.
            self.young.reserve(self.capacity);
        }
        self.young.insert(id, value);
    }

    pub fn contains(&self, id: MessageId) -> bool {
        self.young.contains_key(&id) || self.old.contains_key(&id)
    }

    pub fn get(&self, id: MessageId) -> Option<&V> {
        self.young.get(&id).or_else(|| self.old.get(&id))
    }

    pub fn remove(&mut self, id: MessageId) -> Option<V> {
        self.young.remove(&id).or_else(|| self.old.remove(&id))
    }
}

/// Messages relayed here by other servers, and which server owns each: a [`Recent`] whose
/// entries share one copy of each owner's name, rather than one per relayed message.
///
/// A message relayed for one user is forgotten at that user's acknowledgement, which is all
/// its owner waits for from here; so with live traffic the map holds little more than what is
/// in flight, and stays in the CPU's caches, where one of 100,000 recent ids would cost a miss
/// at every insert and every lookup. A group message's entry stays for its other members.
pub struct Relayed {
    ids: Recent<Relay>,
    owners: Vec<Arc<str>>,
}

struct Relay {
    owner: Arc<str>,
    /// Relayed for one user only: no other acknowledgement of it will come from here.
    one_recipient: bool,
}

impl Relayed {
    pub fn new(capacity: usize) -> Relayed {
        Relayed {
            ids: Recent::new(capacity),
            owners: Vec::new(),
        }
    }

    /// Message `id`, owned by server `owner`, was relayed here for `n_recipients` users.
    pub fn insert(&mut self, id: MessageId, owner: &str, n_recipients: usize) {
        let owner = match self.owners.iter().find(|known| ***known == *owner) {
            Some(known) => known.clone(),
            None => {
                let owner: Arc<str> = owner.into();
                if self.owners.len() < OWNERS_KEPT {
                    self.owners.push(owner.clone());
                }
                owner
            }
        };
        // Relayed again (a group too large for one frame, or pushed again after its rows were
        // stored): it is kept until it ages out, for whoever else acknowledges it.
        let one_recipient = n_recipients == 1 && self.ids.get(id).is_none();
        self.ids.insert(
            id,
            Relay {
                owner,
                one_recipient,
            },
        );
    }

    /// The owner of relayed message `id`, which a recipient here acknowledged; a message
    /// relayed for that one recipient is forgotten.
    pub fn acked(&mut self, id: MessageId) -> Option<Arc<str>> {
        let relay = self.ids.get(id)?;
        if relay.one_recipient {
            self.ids.remove(id).map(|relay| relay.owner)
        } else {
            Some(relay.owner.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_are_forgotten_first() {
        let mut recent = Recent::new(2);
        let ids: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
        for (n, id) in ids.iter().enumerate() {
            recent.insert(*id, n);
        }
        // Generations of two: [0, 1] went when 4 came; [2, 3] is old, [4] young.
        assert!(!recent.contains(ids[0]) && !recent.contains(ids[1]));
        for (n, id) in ids.iter().enumerate().skip(2) {
            assert_eq!(recent.get(*id), Some(&n));
        }
    }

    #[test]
    fn it_remembers_between_its_capacity_and_twice_that() {
        let mut recent = Recent::new(50);
        let ids: Vec<MessageId> = (0..1000).map(|_| MessageId::new()).collect();
        for (n, id) in ids.iter().enumerate() {
            recent.insert(*id, n);
            let kept = ids[..=n].iter().filter(|id| recent.contains(**id)).count();
            assert!(
                kept >= (n + 1).min(50) && kept <= 100,
                "{kept} kept after {n}"
            );
            // What it keeps is always the newest.
            assert!(ids[n + 1 - kept..=n].iter().all(|id| recent.contains(*id)));
        }
    }

    #[test]
    fn an_id_inserted_again_has_its_new_value() {
        let mut recent = Recent::new(2);
        let (first, second) = (MessageId::new(), MessageId::new());
        recent.insert(first, 1);
        recent.insert(second, 2);
        recent.insert(first, 3);
        recent.insert(first, 4);
        assert_eq!(recent.get(first), Some(&4));
        assert_eq!(recent.get(second), Some(&2));
    }

    #[test]
    fn relayed_ids_share_their_owners_name() {
        let mut relayed = Relayed::new(10);
        let (first, second, third) = (MessageId::new(), MessageId::new(), MessageId::new());
        relayed.insert(first, "s2", 1);
        relayed.insert(second, "s2", 1);
        relayed.insert(third, "s3", 1);
        let first_owner = relayed.acked(first).unwrap();
        assert!(Arc::ptr_eq(&first_owner, &relayed.acked(second).unwrap()));
        assert_eq!(&*relayed.acked(third).unwrap(), "s3");
    }

    #[test]
    fn a_message_for_one_user_is_forgotten_at_the_ack_and_a_groups_is_kept() {
        let mut relayed = Relayed::new(10);
        let (direct, group) = (MessageId::new(), MessageId::new());
        relayed.insert(direct, "s2", 1);
        relayed.insert(group, "s2", 30);
        assert_eq!(relayed.acked(direct).as_deref(), Some("s2"));
        assert_eq!(relayed.acked(direct), None);
        for _ in 0..30 {
            assert_eq!(relayed.acked(group).as_deref(), Some("s2"));
        }
        // A group in two frames, the second for one member: kept for the first frame's.
        let split = MessageId::new();
        relayed.insert(split, "s3", 4096);
        relayed.insert(split, "s3", 1);
        relayed.acked(split);
        assert_eq!(relayed.acked(split).as_deref(), Some("s3"));
    }
}
