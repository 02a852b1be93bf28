//! A bounded map of recent message ids: the oldest is forgotten first.

use chat_proto::MessageId;
use std::collections::{HashMap, VecDeque};

pub struct Recent<V> {
    values: HashMap<MessageId, V>,
    order: VecDeque<MessageId>,
    capacity: usize,
}

impl<V> Recent<V> {
    pub fn new(capacity: usize) -> Recent<V> {
        Recent {
            values: HashMap::new(),
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
}
