//! A bounded memory of the message ids already shown, so that no message is shown twice.
//!
//! The server may hand over a message again (a live delivery that was not acknowledged in
//! time, then the same message from `readlog`). The client remembers the most recent ids and
//! forgets the oldest once it holds [`SeenIds::capacity`] of them.

use chat_proto::MessageId;
use std::collections::{HashSet, VecDeque};

/// How many ids the client remembers by default.
pub const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug)]
pub struct SeenIds {
    ids: HashSet<MessageId>,
    /// The same ids in the order they were first seen, oldest first, for forgetting.
    order: VecDeque<MessageId>,
    capacity: usize,
}

impl SeenIds {
    pub fn new(capacity: usize) -> SeenIds {
        SeenIds {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// True if `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.ids.contains(id)
    }

    /// Records `id`; true when it is new and the message should be shown.
    pub fn insert(&mut self, id: MessageId) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        true
    }
}

impl Default for SeenIds {
    fn default() -> SeenIds {
        SeenIds::new(DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once() {
        let mut seen = SeenIds::default();
        let id = MessageId::new();
        assert!(!seen.contains(&id));
        assert!(seen.insert(id));
        assert!(seen.contains(&id));
        assert!(!seen.insert(id));
        assert!(seen.insert(MessageId::new()));
    }

    #[test]
    fn the_oldest_ids_are_forgotten() {
        let mut seen = SeenIds::new(2);
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::new()).collect();
        for id in &ids {
            assert!(seen.insert(*id));
        }
        assert!(!seen.insert(ids[2]));
        assert!(!seen.insert(ids[1]));
        assert!(
            seen.insert(ids[0]),
            "the oldest id should have been forgotten"
        );
    }
}
