//! The delivery ledger: what this server owes for every message it owns, as a state machine
//! with no sockets, clock or database inside.
//!
//! Its inputs are the events of a message's life: [`Ledger::submit`], an acknowledgement
//! ([`Ledger::ack`], [`Ledger::ack_owned`]), a recipient found unreachable
//! ([`Ledger::unreachable`]), the passing of time (the `now` that [`Ledger::next_due`] and
//! [`Ledger::take_batch`] are given), a batch committed or failed, and [`Ledger::shutdown`].
//! Its outputs are what the caller must do: route a new message, answer a waiting sender,
//! forward acknowledgements to the server that owns a relayed message, and write a [`Batch`]
//! of inbox rows and deletes.
//!
//! Each recipient of a pending message is *waiting* (pushed, not acknowledged), *writing*
//! (its row is in the batch being committed), *stored*, or *acked*. A waiting recipient is
//! written once the message's ack deadline passes, or in the very next batch when it is known
//! to be offline or could not be reached. The sender is answered "sent" once every recipient
//! is stored or acked, so that:
//!
//! - **nothing acknowledged is written**: a row is taken only for a waiting recipient;
//! - **a delete never precedes its insert**: an acknowledgement that comes while its row is
//!   being written becomes a delete after the commit, and deletes leave in the next batch;
//! - **every waiter is answered exactly once**: "sent", "not stored yet" (the database failed;
//!   the message stays pending and is stored later), or "shutting down";
//! - **everything unacknowledged at shutdown is stored**: after [`Ledger::shutdown`] every
//!   waiting recipient is due at once.

use super::ids::IdMap;
use super::recent::{Recent, Relayed};
use crate::store::{InboxDelete, InboxRow};
use chat_proto::{MessageId, SharedMessage};
use smallvec::{smallvec, SmallVec};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::mem;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// How long a pushed message waits for its recipients' acknowledgements before it is
    /// written for those who have not acknowledged it.
    pub ack_deadline: Duration,
    /// The most inbox rows in one batch; a message's rows are never split.
    pub max_batch_rows: usize,
    /// How many finished and relayed message ids are remembered at least (at most twice as
    /// many), to answer retried sends and to route relayed messages' acknowledgements.
    pub recent_ids: usize,
}

/// A recipient of a submitted message, and whether it is known to be logged in nowhere.
pub struct Addressee {
    pub name: Arc<str>,
    pub offline: bool,
}

/// What a sender is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The message is durable, or every recipient has it.
    Sent(MessageId),
    /// The database failed: the message is kept and stored later; a resend is safe.
    NotStoredYet,
    ShuttingDown,
}

/// What [`Ledger::submit`] asks of the caller.
pub enum Submitted<W> {
    /// A new message: push it to its recipients and relay it.
    Route,
    /// The same message is already pending; its waiter will be answered with it.
    Joined,
    /// Answer this waiter now; there is nothing to deliver.
    Answer(W, Answer),
}

/// Something the caller must carry out.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<W> {
    Answer(W, Answer),
    /// These recipients' rows are committed. Push the message to them again wherever they are
    /// logged in now: one who moved to another server since it was first pushed, and who
    /// read the inbox there before this commit, would otherwise not see it until the next
    /// `readlog`. Clients show an id once.
    Redeliver {
        message: Arc<SharedMessage>,
        recipients: Vec<Arc<str>>,
    },
    /// `user` acknowledged these messages, which server `owner` relayed here.
    ForwardAcks {
        owner: Arc<str>,
        user: String,
        ids: Vec<MessageId>,
    },
}

/// When the writer has work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Now,
    At(Instant),
    Idle,
}

/// Inbox rows to insert and acknowledged rows to delete, in one transaction.
pub struct Batch {
    pub id: u64,
    pub rows: Vec<InboxRow>,
    pub deletes: Vec<InboxDelete>,
}

pub struct Ledger<W> {
    config: LedgerConfig,
    pending: IdMap<Pending<W>>,
    /// Messages with recipients to write in the next batch: offline or unreachable.
    urgent: VecDeque<MessageId>,
    /// Every pending message by its ack deadline, oldest first; finished ones are skipped.
    by_deadline: VecDeque<(Instant, MessageId)>,
    /// Rows acknowledged after they were stored.
    deletes: Vec<InboxDelete>,
    in_flight: Option<InFlight>,
    /// Finished messages, and whether any of their rows was stored.
    recent: Recent<bool>,
    /// Messages relayed here by other servers, and which server owns each.
    relayed: Relayed,
    /// Shutting down: new messages are refused and everything waiting is due.
    closed: bool,
    next_batch_id: u64,
    /// The writer's next due time may have moved earlier since it last looked.
    wake: bool,
}

struct Pending<W> {
    message: Arc<SharedMessage>,
    /// Sorted by name, each name once.
    recipients: Vec<Recipient>,
    /// Almost always one: a second comes only with a retried send of the same id.
    waiters: SmallVec<[W; 1]>,
    stored_any: bool,
}

impl<W> Pending<W> {
    /// The recipient called `user`, if there is one.
    fn recipient(&mut self, user: &str) -> Option<&mut Recipient> {
        let found = self
            .recipients
            .binary_search_by(|recipient| (*recipient.name).cmp(user));
        found.ok().map(|idx| &mut self.recipients[idx])
    }

    /// Whether every recipient has acknowledged it or has it stored.
    fn is_done(&self) -> bool {
        self.recipients
            .iter()
            .all(|recipient| recipient.state.is_done())
    }
}

struct Recipient {
    name: Arc<str>,
    state: State,
    /// Written in the next batch rather than at the deadline.
    urgent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Writing,
    /// Acknowledged while its row was being written: the row is deleted after the commit.
    AckedWhileWriting,
    Stored,
    Acked,
}

impl State {
    fn is_done(self) -> bool {
        matches!(self, State::Stored | State::Acked)
    }
}

/// The batch being written: the messages it holds rows of.
struct InFlight {
    id: u64,
    messages: Vec<MessageId>,
    /// Its senders were told "not stored yet" after a failed attempt.
    refused: bool,
}

impl<W> Ledger<W> {
    pub fn new(config: LedgerConfig) -> Ledger<W> {
        Ledger {
            recent: Recent::with_room(config.recent_ids),
            relayed: Relayed::new(config.recent_ids),
            config,
            pending: IdMap::default(),
            urgent: VecDeque::new(),
            by_deadline: VecDeque::new(),
            deletes: Vec::new(),
            in_flight: None,
            closed: false,
            next_batch_id: 1,
            wake: false,
        }
    }

    /// Takes on `message` for `recipients`; `waiter` is answered once it is sent. A message
    /// whose id is pending or recently finished is not delivered again.
    pub fn submit(
        &mut self,
        message: Arc<SharedMessage>,
        recipients: Vec<Addressee>,
        waiter: W,
        now: Instant,
    ) -> Submitted<W> {
        let id = message.id;
        if self.closed {
            return Submitted::Answer(waiter, Answer::ShuttingDown);
        }
        if let Some(pending) = self.pending.get_mut(&id) {
            pending.waiters.push(waiter);
            return Submitted::Joined;
        }
        if recipients.is_empty() || self.recent.contains(id) {
            return Submitted::Answer(waiter, Answer::Sent(id));
        }
        let mut recipients: Vec<Recipient> = recipients
            .into_iter()
            .map(|addressee| Recipient {
                name: addressee.name,
                state: State::Waiting,
                urgent: addressee.offline,
            })
            .collect();
        // Sorted, each name once, for `recipient`'s binary search: an ack of a group message
        // would otherwise compare names with every member. (A group's members come sorted.)
        recipients.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        recipients.dedup_by(|later, kept| {
            let same = later.name == kept.name;
            kept.urgent |= same && later.urgent;
            same
        });
        if recipients.iter().any(|recipient| recipient.urgent) {
            self.urgent.push_back(id);
            self.wake = true;
        }
        // Messages acknowledged since are forgotten here, to keep the queue short.
        self.first_deadline();
        // Deadlines only grow, even if callers' clocks were read in another order.
        let mut deadline = now + self.config.ack_deadline;
        match self.by_deadline.back() {
            Some(&(last, _)) => deadline = deadline.max(last),
            None => self.wake = true,
        }
        self.by_deadline.push_back((deadline, id));
        let pending = Pending {
            message,
            recipients,
            waiters: smallvec![waiter],
            stored_any: false,
        };
        self.pending.insert(id, pending);
        Submitted::Route
    }

    /// These recipients of message `id` could not be reached: they are written in the next
    /// batch instead of at the deadline.
    pub fn unreachable(&mut self, id: MessageId, users: &[Arc<str>]) {
        let Some(pending) = self.pending.get_mut(&id) else {
            return;
        };
        let mut any = false;
        for user in users {
            if let Some(recipient) = pending.recipient(user) {
                if recipient.state == State::Waiting {
                    recipient.urgent = true;
                    any = true;
                }
            }
        }
        if any {
            self.urgent.push_back(id);
            self.wake = true;
        }
    }

    /// Message `id` was relayed here by server `owner` for `n_recipients` users:
    /// acknowledgements go back there.
    pub fn relayed(&mut self, owner: &str, id: MessageId, n_recipients: usize) {
        self.relayed.insert(id, owner, n_recipients);
    }

    /// `user`'s client, logged in here, has shown these messages. Those that another server
    /// relayed here are forwarded to it.
    pub fn ack(&mut self, user: &str, ids: &[MessageId]) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        let mut by_owner: BTreeMap<Arc<str>, Vec<MessageId>> = BTreeMap::new();
        for &id in ids {
            let relayed_by = if self.pending.contains_key(&id) {
                None
            } else {
                self.relayed.acked(id)
            };
            match relayed_by {
                Some(owner) => by_owner.entry(owner).or_default().push(id),
                None => self.ack_one(user, id, &mut actions),
            }
        }
        actions.extend(
            by_owner
                .into_iter()
                .map(|(owner, ids)| Action::ForwardAcks {
                    owner,
                    user: user.to_owned(),
                    ids,
                }),
        );
        actions
    }

    /// `user`'s client has shown these messages, which this server owns.
    pub fn ack_owned(&mut self, user: &str, ids: &[MessageId]) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        for &id in ids {
            self.ack_one(user, id, &mut actions);
        }
        actions
    }

    fn ack_one(&mut self, user: &str, id: MessageId, actions: &mut Vec<Action<W>>) {
        // One lookup of the message: an acknowledgement is the commonest event here.
        let Entry::Occupied(mut entry) = self.pending.entry(id) else {
            // A message finished with rows: its row, if any, goes. An id this ledger does not
            // know (forgotten long ago, or made up) costs nothing: deletes are for the rows it
            // wrote, and a row it no longer remembers stays for `readlog`, which removes it.
            if self.recent.get(id).copied().unwrap_or(false) {
                self.queue_delete(user.to_owned(), id);
            }
            return;
        };
        let pending = entry.get_mut();
        let Some(recipient) = pending.recipient(user) else {
            return;
        };
        let stored = match recipient.state {
            State::Waiting => false,
            State::Writing => {
                recipient.state = State::AckedWhileWriting;
                return;
            }
            // Stored while other recipients of a group message are still out.
            State::Stored => true,
            State::AckedWhileWriting | State::Acked => return,
        };
        recipient.state = State::Acked;
        let finished = pending.is_done().then(|| entry.remove());
        if stored {
            self.queue_delete(user.to_owned(), id);
        }
        if let Some(pending) = finished {
            self.finish(id, pending, actions);
        }
    }

    fn queue_delete(&mut self, recipient: String, id: MessageId) {
        self.deletes.push(InboxDelete { recipient, id });
        self.wake = true;
    }

    /// Answers the senders of message `id` and forgets it, if every recipient has it.
    fn finish_if_done(&mut self, id: MessageId, actions: &mut Vec<Action<W>>) {
        if let Entry::Occupied(entry) = self.pending.entry(id) {
            if entry.get().is_done() {
                let pending = entry.remove();
                self.finish(id, pending, actions);
            }
        }
    }

    /// Message `id`, done with, is answered to its waiters and remembered as sent.
    fn finish(&mut self, id: MessageId, pending: Pending<W>, actions: &mut Vec<Action<W>>) {
        self.recent.insert(id, pending.stored_any);
        actions.extend(
            pending
                .waiters
                .into_iter()
                .map(|waiter| Action::Answer(waiter, Answer::Sent(id))),
        );
    }

    /// Whether the writer's next due time may be earlier than when it last asked; clears it.
    pub fn take_wake(&mut self) -> bool {
        mem::take(&mut self.wake)
    }

    /// When the writer next has something to write, as seen at `now`.
    pub fn next_due(&mut self, now: Instant) -> Due {
        if !self.urgent.is_empty() || !self.deletes.is_empty() {
            return Due::Now;
        }
        match self.first_deadline() {
            Some(deadline) if self.closed || deadline <= now => Due::Now,
            Some(deadline) => Due::At(deadline),
            None => Due::Idle,
        }
    }

    /// The deadline of the oldest message that still has a waiting recipient; the entries of
    /// messages finished since are dropped on the way.
    fn first_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, id)) = self.by_deadline.front() {
            if self.has_waiting(id) {
                return Some(deadline);
            }
            self.by_deadline.pop_front();
        }
        None
    }

    fn has_waiting(&self, id: MessageId) -> bool {
        self.pending.get(&id).is_some_and(|pending| {
            pending
                .recipients
                .iter()
                .any(|recipient| recipient.state == State::Waiting)
        })
    }

    /// The next batch to write at `now`, if anything is due and no batch is being written.
    pub fn take_batch(&mut self, now: Instant) -> Option<Batch> {
        if self.in_flight.is_some() {
            return None;
        }
        let mut rows = Vec::new();
        let mut messages = Vec::new();
        while rows.len() < self.config.max_batch_rows {
            let Some(id) = self.urgent.pop_front() else {
                break;
            };
            self.take_rows(id, true, &mut rows, &mut messages);
        }
        while rows.len() < self.config.max_batch_rows {
            match self.by_deadline.front() {
                Some(&(deadline, id)) if deadline <= now || self.closed => {
                    self.by_deadline.pop_front();
                    self.take_rows(id, false, &mut rows, &mut messages);
                }
                _ => break,
            }
        }
        let deletes = mem::take(&mut self.deletes);
        if rows.is_empty() && deletes.is_empty() {
            return None;
        }
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        self.in_flight = Some(InFlight {
            id,
            messages,
            refused: false,
        });
        Some(Batch { id, rows, deletes })
    }

    /// Moves message `id`'s waiting recipients (only the urgent ones, if `urgent_only`) into
    /// `rows`.
    fn take_rows(
        &mut self,
        id: MessageId,
        urgent_only: bool,
        rows: &mut Vec<InboxRow>,
        messages: &mut Vec<MessageId>,
    ) {
        let Some(pending) = self.pending.get_mut(&id) else {
            return;
        };
        let before = rows.len();
        for recipient in &mut pending.recipients {
            if recipient.state == State::Waiting && (recipient.urgent || !urgent_only) {
                recipient.state = State::Writing;
                rows.push(InboxRow {
                    recipient: recipient.name.clone(),
                    message: pending.message.clone(),
                });
            }
        }
        if rows.len() > before {
            messages.push(id);
        }
    }

    /// Batch `batch_id` is committed: its rows are stored.
    pub fn committed(&mut self, batch_id: u64) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        let Some(flight) = self.in_flight.take_if(|flight| flight.id == batch_id) else {
            return actions;
        };
        for id in flight.messages {
            let Some(pending) = self.pending.get_mut(&id) else {
                continue;
            };
            let mut late_deletes = Vec::new();
            let mut stored = Vec::new();
            for recipient in &mut pending.recipients {
                match recipient.state {
                    State::Writing => {
                        recipient.state = State::Stored;
                        stored.push(recipient.name.clone());
                    }
                    State::AckedWhileWriting => {
                        recipient.state = State::Acked;
                        late_deletes.push(recipient.name.to_string());
                    }
                    _ => continue,
                }
                pending.stored_any = true;
            }
            if !stored.is_empty() {
                actions.push(Action::Redeliver {
                    message: pending.message.clone(),
                    recipients: stored,
                });
            }
            for recipient in late_deletes {
                self.queue_delete(recipient, id);
            }
            self.finish_if_done(id, &mut actions);
        }
        actions
    }

    /// An attempt to write batch `batch_id` failed; the writer tries it again. Its senders are
    /// told, once, that their messages are not stored yet.
    pub fn failed(&mut self, batch_id: u64) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        let Some(flight) = self
            .in_flight
            .as_mut()
            .filter(|flight| flight.id == batch_id && !flight.refused)
        else {
            return actions;
        };
        flight.refused = true;
        for id in &flight.messages {
            if let Some(pending) = self.pending.get_mut(id) {
                actions.extend(
                    pending
                        .waiters
                        .drain(..)
                        .map(|waiter| Action::Answer(waiter, Answer::NotStoredYet)),
                );
            }
        }
        actions
    }

    /// While the batch being written keeps failing: the senders of the messages that have
    /// fallen due since it was taken (a recipient offline or unreachable, or an ack deadline
    /// passed at `now`) are told at once that they are not stored yet, rather than when the
    /// database is back. The messages stay pending, for a later batch.
    pub fn refuse_due(&mut self, now: Instant) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        if !self.in_flight.as_ref().is_some_and(|flight| flight.refused) {
            return actions;
        }
        let past_deadline = self
            .by_deadline
            .iter()
            .take_while(|&&(deadline, _)| deadline <= now)
            .map(|&(_, id)| id);
        for id in self.urgent.iter().copied().chain(past_deadline) {
            if let Some(pending) = self.pending.get_mut(&id) {
                actions.extend(
                    pending
                        .waiters
                        .drain(..)
                        .map(|waiter| Action::Answer(waiter, Answer::NotStoredYet)),
                );
            }
        }
        actions
    }

    /// Refuses new messages from now on and makes everything waiting due at once.
    pub fn shutdown(&mut self) {
        self.closed = true;
        self.wake = true;
    }

    /// How many messages are pending.
    pub fn n_pending(&self) -> usize {
        self.pending.len()
    }

    /// How many recipients of pending messages have neither acknowledged them nor had their
    /// row committed. It walks the pending messages: for a scrape, not for the hot path.
    pub fn n_unacknowledged(&self) -> usize {
        self.pending
            .values()
            .flat_map(|pending| &pending.recipients)
            .filter(|recipient| matches!(recipient.state, State::Waiting | State::Writing))
            .count()
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
