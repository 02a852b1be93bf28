//! A bounded map of recent message ids: the oldest is forgotten first.

use super::ids::IdMap;
use chat_proto::MessageId;
use std::collections::VecDeque;
use std::sync::Arc;

/// How many servers' names [`Relayed`] keeps to share; a farm has far fewer.
const OWNERS_KEPT: usize = 64;

pub struct Recent<V> {
    values: IdMap<V>,
    order: VecDeque<MessageId>,
    capacity: usize,
}

impl<V> Recent<V> {
    pub fn new(capacity: usize) -> Recent<V> {
        Recent {
            values: IdMap::default(),
            order: VecDeque::new(),
            capacity,
        }
    }

    pub fn insert(&mut self, id: MessageId, value: V) {
        if self.values.insert(id, value).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.values.remove(&old);
            }
        }
    }

    pub fn contains(&self, id: MessageId) -> bool {
        self.values.contains_key(&id)
    }

    pub fn get(&self, id: MessageId) -> Option<&V> {
        self.values.get(&id)
    }
}

/// Messages relayed here by other servers, and which server owns each: a [`Recent`] whose
/// entries share one copy of each owner's name, rather than one per relayed message.
pub struct Relayed {
    ids: Recent<Arc<str>>,
    owners: Vec<Arc<str>>,
}

impl Relayed {
    pub fn new(capacity: usize) -> Relayed {
        Relayed {
            ids: Recent::new(capacity),
            owners: Vec::new(),
        }
    }

    pub fn insert(&mut self, id: MessageId, owner: &str) {
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
        self.ids.insert(id, owner);
    }

    pub fn get(&self, id: MessageId) -> Option<&Arc<str>> {
        self.ids.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_forgotten_first() {
        let mut recent = Recent::new(2);
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::new()).collect();
        for (n, id) in ids.iter().enumerate() {
            recent.insert(*id, n);
        }
        assert!(!recent.contains(ids[0]));
        assert_eq!(recent.get(ids[1]), Some(&1));
        assert_eq!(recent.get(ids[2]), Some(&2));
    }

    #[test]
    fn relayed_ids_share_their_owners_name() {
        let mut relayed = Relayed::new(10);
        let (first, second, third) = (MessageId::new(), MessageId::new(), MessageId::new());
        relayed.insert(first, "s2");
        relayed.insert(second, "s2");
        relayed.insert(third, "s3");
        let owner = |id| relayed.get(id).unwrap().clone();
        assert!(Arc::ptr_eq(&owner(first), &owner(second)));
        assert_eq!(&*owner(third), "s3");
    }
}
