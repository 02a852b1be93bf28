//! Stored messages whose recipients were logged in nowhere this server knew of, kept a little
//! while so that they can still be pushed when word of a login comes late.
//!
//! Presence reaches this server over the links, a moment after the login on another server.
//! A message sent in that moment finds its recipient logged in nowhere, and is stored at once.
//! That server counted its inbox for the login before the row was committed, so without this
//! the recipient, logged in, would see the message only at the next `readlog`. The same holds
//! for a link that was down: its peer's users were out of reach, and come back all at once.
//! When the login is heard of, [`Unreached::take`] gives back what was stored for the user in
//! the last [`KEEP`], and it is pushed; the client acknowledges it, which deletes the row, and
//! shows an id once.
//!
//! It is bounded by time and by count, oldest first. A message forgotten here is not lost: it
//! is in the inbox, for `readlog`.

use chat_proto::{MessageId, SharedMessage};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a stored message is kept for a login heard of late: far longer than word of a
/// login takes over a link, and than a link takes to come back after a short outage.
pub const KEEP: Duration = Duration::from_secs(30);
/// The most rows kept.
pub const MAX_ROWS: usize = 20_000;

pub struct Unreached {
    keep: Duration,
    max_rows: usize,
    by_user: HashMap<Arc<str>, VecDeque<(Instant, Arc<SharedMessage>)>>,
    /// Every row kept, oldest first, by its recipient. A row taken or removed since leaves its
    /// entry here, which finds nothing when it expires.
    order: VecDeque<(Instant, Arc<str>)>,
}

impl Unreached {
    pub fn new(keep: Duration, max_rows: usize) -> Unreached {
        Unreached {
            keep,
            max_rows: max_rows.max(1),
            by_user: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Keeps `message`, stored at `now` for `user`.
    pub fn insert(&mut self, now: Instant, user: Arc<str>, message: Arc<SharedMessage>) {
        self.expire(now);
        if self.order.len() >= self.max_rows {
            self.pop_oldest();
        }
        self.by_user
            .entry(user.clone())
            .or_default()
            .push_back((now, message));
        self.order.push_back((now, user));
    }

    /// Forgets message `id` for `user`: it reached them after all.
    pub fn remove(&mut self, user: &str, id: MessageId) {
        if let Some(rows) = self.by_user.get_mut(user) {
            rows.retain(|(_, message)| message.id != id);
            if rows.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    /// What was stored for `user` in the last [`KEEP`] as seen at `now`, oldest first; it is
    /// forgotten here.
    pub fn take(&mut self, now: Instant, user: &str) -> Vec<Arc<SharedMessage>> {
        self.expire(now);
        self.by_user
            .remove(user)
            .map(|rows| rows.into_iter().map(|(_, message)| message).collect())
            .unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) > self.keep)
        {
            self.pop_oldest();
        }
    }

    /// Forgets the oldest row kept, if it is still here.
    fn pop_oldest(&mut self) {
        let Some((at, user)) = self.order.pop_front() else {
            return;
        };
        if let Some(rows) = self.by_user.get_mut(&user) {
            if rows.front().is_some_and(|&(kept_at, _)| kept_at <= at) {
                rows.pop_front();
            }
            if rows.is_empty() {
                self.by_user.remove(&user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::{ChatMessage, Recipient};

    fn message(text: &str) -> Arc<SharedMessage> {
        SharedMessage::new(ChatMessage {
            id: MessageId::new(),
            from: "alice".into(),
            to: Recipient::User("bob".into()),
            text: text.into(),
            sent_at_ms: 0,
        })
    }

    fn texts(messages: &[Arc<SharedMessage>]) -> Vec<&str> {
        messages.iter().map(|message| &*message.text).collect()
    }

    #[test]
    fn a_user_heard_of_gets_what_was_stored_for_them_once_oldest_first() {
        let mut unreached = Unreached::new(KEEP, MAX_ROWS);
        let t0 = Instant::now();
        unreached.insert(t0, "bob".into(), message("one"));
        unreached.insert(t0, "carol".into(), message("for carol"));
        unreached.insert(t0, "bob".into(), message("two"));
        assert_eq!(texts(&unreached.take(t0, "bob")), ["one", "two"]);
        assert!(unreached.take(t0, "bob").is_empty());
        assert_eq!(texts(&unreached.take(t0, "carol")), ["for carol"]);
        assert!(unreached.is_empty());
    }

    #[test]
    fn rows_older_than_the_keep_are_forgotten() {
        let mut unreached = Unreached::new(Duration::from_secs(10), MAX_ROWS);
        let t0 = Instant::now();
        unreached.insert(t0, "bob".into(), message("old"));
        unreached.insert(t0 + Duration::from_secs(6), "bob".into(), message("new"));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(texts(&unreached.take(later, "bob")), ["new"]);
    }

    #[test]
    fn the_oldest_rows_go_first_past_the_count() {
        let mut unreached = Unreached::new(KEEP, 2);
        let t0 = Instant::now();
        for text in ["a", "b", "c"] {
            unreached.insert(t0, "bob".into(), message(text));
        }
        assert_eq!(texts(&unreached.take(t0, "bob")), ["b", "c"]);
    }

    #[test]
    fn a_removed_row_is_not_given_back_and_its_entry_expires_harmlessly() {
        let mut unreached = Unreached::new(Duration::from_secs(10), MAX_ROWS);
        let t0 = Instant::now();
        let reached = message("reached");
        unreached.insert(t0, "bob".into(), reached.clone());
        unreached.insert(t0 + Duration::from_secs(5), "bob".into(), message("missed"));
        unreached.remove("bob", reached.id);
        // The first entry expires: it must not take the second row with it.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(texts(&unreached.take(later, "bob")), ["missed"]);
    }
}
