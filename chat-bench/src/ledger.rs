//! The ledger of one message workload: what each sender sent, what each recipient got, and
//! the window that keeps each sender's messages in flight bounded.
//!
//! Every message is named by its sender's index and its sequence number, both carried in its
//! text with the moment it was sent ([`Stamp`]). A message is *complete* once the farm told its
//! sender it is sent (when [`Ledger::new`] is asked to wait for that) and every recipient got it
//! once; completing a message gives its sender's window one place back. A second delivery of a
//! message to the same recipient is counted as doubled, and a message that was sent but did not
//! reach every recipient by the end counts as missing, once per recipient it missed.
//!
//! Everything here is atomic counters and bits, shared by the connections' tasks without locks.

use crate::report::Latencies;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// How many errors are printed on standard error; the rest are only counted.
const PRINTED_ERRORS: u64 = 10;

/// The counts at the end of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// First deliveries, over all recipients.
    pub delivered: u64,
    /// Deliveries to recipients who had the message already.
    pub doubled: u64,
    /// Deliveries owed for sent messages that never arrived.
    pub missing: u64,
    pub errors: u64,
}

/// The shape of a workload: who sends how much to how many.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub senders: usize,
    /// Messages per sender.
    pub messages: u32,
    /// Recipients of every message.
    pub recipients: u32,
    /// Receiving slots: a recipient's slot names it in the delivered bits (0 for one recipient).
    pub slots: u32,
    /// Most messages of one sender in flight.
    pub window: u32,
    /// Whether a message waits for the server's "sent" to complete (IRC has none).
    pub wait_for_sent: bool,
    /// The least time between two messages of one sender (`--rate`); none sends as fast as
    /// the window allows.
    pub pace: Option<Duration>,
}

pub struct Ledger {
    shape: Shape,
    /// Per message: the events still missing before it is complete.
    remaining: Vec<AtomicU32>,
    /// Per message: the server said "sent" (or, without "sent", it was written).
    sent: Vec<AtomicBool>,
    /// Per message: one bit per receiving slot, set at its first delivery.
    seen: Vec<AtomicU64>,
    words_per_message: usize,
    windows: Vec<Semaphore>,
    completed: AtomicU64,
    /// Messages taken by their senders, sent or not yet.
    taken: AtomicU64,
    /// Messages the server answered: sent, or refused and abandoned.
    answered: AtomicU64,
    /// No sender takes another message: [`Ledger::stop_sending`].
    stopped: AtomicBool,
    doubled: AtomicU64,
    errors: AtomicU64,
    /// Woken once [`Ledger::is_done`] holds, and after [`Ledger::stop_sending`] at every
    /// answer.
    done: Notify,
    /// The shared base of the timestamps in message texts.
    clock: Instant,
}

/// What a delivery was to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    First,
    Doubled,
    /// Not a message of this workload.
    Unknown,
}

impl Ledger {
    pub fn new(shape: Shape) -> Arc<Ledger> {
        let n_messages = shape.senders * shape.messages as usize;
        let words_per_message = (shape.slots as usize).div_ceil(64).max(1);
        let events = shape.recipients + u32::from(shape.wait_for_sent);
        Arc::new(Ledger {
            shape,
            remaining: (0..n_messages).map(|_| AtomicU32::new(events)).collect(),
            sent: (0..n_messages).map(|_| AtomicBool::new(false)).collect(),
            seen: (0..n_messages * words_per_message)
                .map(|_| AtomicU64::new(0))
                .collect(),
            words_per_message,
            windows: (0..shape.senders)
                .map(|_| Semaphore::new(shape.window as usize))
                .collect(),
            completed: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            doubled: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            done: Notify::new(),
            clock: Instant::now(),
        })
    }

    fn index(&self, sender: usize, seq: u32) -> Option<usize> {
        (sender < self.shape.senders && seq < self.shape.messages)
            .then(|| sender * self.shape.messages as usize + seq as usize)
    }

    /// Waits for a place in `sender`'s window and takes it.
    pub async fn take_place(&self, sender: usize) {
        if let Ok(permit) = self.windows[sender].acquire().await {
            permit.forget();
        }
    }

    /// Takes a place in `sender`'s window if one is free now.
    pub fn try_take_place(&self, sender: usize) -> bool {
        match self.windows[sender].try_acquire() {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// The text of message `seq` of `sender`, padded with `x` to `size` bytes when shorter.
    pub fn text(&self, sender: usize, seq: u32, size: usize) -> String {
        let micros = self.clock.elapsed().as_micros();
        let mut text = format!("{sender}:{seq}:{micros}:");
        if text.len() < size {
            text.extend(std::iter::repeat_n('x', size - text.len()));
        }
        text
    }

    /// Reads the stamp of a message text, and how long ago it was sent.
    pub fn read(&self, text: &str) -> Option<(Stamp, Duration)> {
        let mut fields = text.splitn(4, ':');
        let sender = fields.next()?.parse().ok()?;
        let seq = fields.next()?.parse().ok()?;
        let micros: u64 = fields.next()?.parse().ok()?;
        fields.next()?;
        let now = self.clock.elapsed();
        let age = now.saturating_sub(Duration::from_micros(micros));
        Some((Stamp { sender, seq }, age))
    }

    /// Notes that the server said message `seq` of `sender` is sent (or, without "sent"
    /// replies, that it was written).
    pub fn sent(&self, sender: usize, seq: u32) {
        let Some(idx) = self.index(sender, seq) else {
            self.error(format!(
                "a \"sent\" for message {seq} of sender {sender}, unknown"
            ));
            return;
        };
        if self.sent[idx].swap(true, Ordering::AcqRel) {
            self.error(format!("message {seq} of sender {sender} was sent twice"));
            return;
        }
        self.answer();
        if self.shape.wait_for_sent {
            self.advance(sender, idx);
        }
    }

    fn answer(&self) {
        self.answered.fetch_add(1, Ordering::AcqRel);
        if self.stopped.load(Ordering::Acquire) {
            self.done.notify_waiters();
        }
    }

    /// Notes a delivery of `stamp` to the recipient in `slot`.
    pub fn delivered(&self, stamp: Stamp, slot: u32) -> Delivery {
        let Some(idx) = self.index(stamp.sender, stamp.seq) else {
            return Delivery::Unknown;
        };
        if slot >= self.shape.slots {
            return Delivery::Unknown;
        }
        let word = &self.seen[idx * self.words_per_message + slot as usize / 64];
        let bit = 1u64 << (slot % 64);
        if word.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            self.doubled.fetch_add(1, Ordering::Relaxed);
            return Delivery::Doubled;
        }
        self.advance(stamp.sender, idx);
        Delivery::First
    }

    /// Takes in a message that the recipient in `slot` received: the age of its first delivery
    /// goes into `latencies`, and a text that is not of this run is an error.
    pub fn received(&self, text: &str, slot: u32, latencies: &mut Latencies) {
        match self.read(text) {
            Some((stamp, age)) => match self.delivered(stamp, slot) {
                Delivery::First => latencies.record(age),
                Delivery::Doubled => {}
                Delivery::Unknown => self.error(format!("a stray message: {stamp:?}")),
            },
            None => self.error(format!("a message not of this run: {text:?}")),
        }
    }

    /// Gives up on a message that the server refused, so that its sender goes on; the refusal
    /// is an error.
    pub fn abandon(&self, sender: usize, seq: u32, why: &str) {
        self.error(format!("message {seq} of sender {sender}: {why}"));
        self.answer();
        if let Some(idx) = self.index(sender, seq) {
            if self.remaining[idx].swap(0, Ordering::AcqRel) > 0 {
                self.complete(sender);
            }
        }
    }

    /// Counts an error, printing the first few.
    pub fn error(&self, what: String) {
        let n_before = self.errors.fetch_add(1, Ordering::Relaxed);
        if n_before < PRINTED_ERRORS {
            eprintln!("error: {what}");
        }
    }

    fn advance(&self, sender: usize, idx: usize) {
        // An abandoned message has nothing remaining; what comes after changes nothing.
        let before = self.remaining[idx]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if before == Ok(1) {
            self.complete(sender);
        }
    }

    fn complete(&self, sender: usize) {
        self.windows[sender].add_permits(1);
        self.completed.fetch_add(1, Ordering::AcqRel);
        if self.is_done() {
            self.done.notify_waiters();
        }
    }

    fn total(&self) -> u64 {
        self.shape.senders as u64 * u64::from(self.shape.messages)
    }

    /// Every message is complete; or, once sending stopped, every message taken is.
    fn is_done(&self) -> bool {
        let completed = self.completed.load(Ordering::Acquire);
        completed >= self.total()
            || (self.stopped.load(Ordering::Acquire)
                && completed >= self.taken.load(Ordering::Acquire))
    }

    /// Tells the senders to take no more messages: [`Ledger::wait_done`] then waits only for
    /// the messages already taken. For a load that runs until it is told to stop.
    pub fn stop_sending(&self) {
        self.stopped.store(true, Ordering::Release);
        if self.is_done() {
            self.done.notify_waiters();
        }
    }

    /// How many messages the server said are sent.
    pub fn sent_count(&self) -> u64 {
        self.sent
            .iter()
            .filter(|sent| sent.load(Ordering::Acquire))
            .count() as u64
    }

    /// Waits until every message is complete (or, after [`Ledger::stop_sending`], every one
    /// taken), or `deadline`; false when the deadline came first.
    pub async fn wait_done(&self, deadline: tokio::time::Instant) -> bool {
        self.wait_until(deadline, Ledger::is_done).await
    }

    /// After [`Ledger::stop_sending`]: waits until the server answered every message taken,
    /// or `deadline`; false when the deadline came first. Every message told "sent" is then
    /// delivered already or stored for its recipient.
    pub async fn wait_answered(&self, deadline: tokio::time::Instant) -> bool {
        let all_answered = |ledger: &Ledger| {
            ledger.answered.load(Ordering::Acquire) >= ledger.taken.load(Ordering::Acquire)
        };
        self.wait_until(deadline, all_answered).await
    }

    async fn wait_until(
        &self,
        deadline: tokio::time::Instant,
        done: impl Fn(&Ledger) -> bool,
    ) -> bool {
        loop {
            // Made before the check, so that a change in between still wakes it.
            let notified = self.done.notified();
            if done(self) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return done(self);
            }
        }
    }

    /// The counts so far.
    pub fn tally(&self) -> Tally {
        let recipients = u64::from(self.shape.recipients);
        let mut delivered = 0;
        let mut missing = 0;
        for (idx, sent) in self.sent.iter().enumerate() {
            let words = &self.seen[idx * self.words_per_message..][..self.words_per_message];
            let got: u64 = words
                .iter()
                .map(|word| u64::from(word.load(Ordering::Acquire).count_ones()))
                .sum();
            delivered += got;
            if sent.load(Ordering::Acquire) {
                missing += recipients.saturating_sub(got);
            }
        }
        Tally {
            delivered,
            doubled: self.doubled.load(Ordering::Relaxed),
            missing,
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// The messages one sender has still to send, in order, each taken once its window has room
/// (and, when paced, no sooner than its turn).
pub struct Outgoing {
    ledger: Arc<Ledger>,
    /// `None` for a connection that only receives.
    sender: Option<usize>,
    next: u32,
    pace: Option<tokio::time::Interval>,
}

impl Outgoing {
    pub fn new(ledger: Arc<Ledger>, sender: Option<usize>) -> Outgoing {
        let pace = ledger.shape.pace.map(|period| {
            let mut interval = tokio::time::interval(period);
            // A sender held up by its window does not catch up in a burst afterwards.
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        Outgoing {
            ledger,
            sender,
            next: 0,
            pace,
        }
    }

    /// The sender, while it has messages left to send and sending has not stopped.
    fn pending(&self) -> Option<usize> {
        self.sender.filter(|_| {
            self.next < self.ledger.shape.messages && !self.ledger.stopped.load(Ordering::Acquire)
        })
    }

    fn advance(&mut self) -> u32 {
        self.ledger.taken.fetch_add(1, Ordering::AcqRel);
        let seq = self.next;
        self.next += 1;
        seq
    }

    /// The next message's number, if the window has room now; never for a paced sender,
    /// whose messages each wait for their turn in [`Outgoing::take`].
    pub fn try_take(&mut self) -> Option<u32> {
        if self.pace.is_some() {
            return None;
        }
        let sender = self.pending()?;
        self.ledger.try_take_place(sender).then(|| self.advance())
    }

    /// Waits for room in the window and returns the next message's number; waits forever
    /// when nothing is left to send, or once sending has stopped.
    pub async fn take(&mut self) -> u32 {
        let Some(sender) = self.pending() else {
            return std::future::pending().await;
        };
        if let Some(pace) = &mut self.pace {
            pace.tick().await;
        }
        self.ledger.take_place(sender).await;
        if self.pending().is_none() {
            // Stopped meanwhile: the place goes back, and nothing more is taken.
            self.ledger.windows[sender].add_permits(1);
            return std::future::pending().await;
        }
        self.advance()
    }
}

/// Which message a text names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sender: usize,
    pub seq: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(recipients: u32, wait_for_sent: bool) -> Shape {
        Shape {
            senders: 2,
            messages: 3,
            recipients,
            slots: recipients.max(1),
            window: 1,
            wait_for_sent,
            pace: None,
        }
    }

    #[test]
    fn texts_carry_their_stamp_and_are_padded() {
        let ledger = Ledger::new(shape(1, true));
        let text = ledger.text(1, 2, 64);
        assert_eq!(text.len(), 64);
        let (stamp, _) = ledger.read(&text).unwrap();
        assert_eq!(stamp, Stamp { sender: 1, seq: 2 });
        assert!(ledger.read("hello").is_none());
        assert!(ledger.text(1, 2, 0).starts_with("1:2:"));
    }

    #[test]
    fn a_message_completes_on_sent_and_delivery_in_either_order() {
        let ledger = Ledger::new(shape(1, true));
        assert!(ledger.try_take_place(0));
        assert!(!ledger.try_take_place(0));
        let stamp = Stamp { sender: 0, seq: 0 };
        assert_eq!(ledger.delivered(stamp, 0), Delivery::First);
        assert!(!ledger.try_take_place(0), "not complete before its sent");
        ledger.sent(0, 0);
        assert!(ledger.try_take_place(0), "complete: the window has room");
        assert_eq!(ledger.delivered(stamp, 0), Delivery::Doubled);
        ledger.sent(0, 1);
        let tally = ledger.tally();
        assert_eq!((tally.delivered, tally.doubled, tally.missing), (1, 1, 1));
    }

    #[tokio::test]
    async fn once_sending_stopped_only_the_messages_taken_are_waited_for() {
        let ledger = Ledger::new(shape(1, true));
        let mut outgoing = Outgoing::new(ledger.clone(), Some(0));
        assert_eq!(outgoing.try_take(), Some(0));
        ledger.stop_sending();
        assert_eq!(outgoing.try_take(), None, "nothing taken once stopped");
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(
            !ledger.wait_answered(soon()).await,
            "message 0 is not answered"
        );
        ledger.sent(0, 0);
        assert!(ledger.wait_answered(soon()).await);
        assert!(
            !ledger.wait_done(soon()).await,
            "message 0 is not delivered"
        );
        ledger.delivered(Stamp { sender: 0, seq: 0 }, 0);
        assert!(
            ledger.wait_done(soon()).await,
            "all that was taken is complete"
        );
        assert_eq!(ledger.sent_count(), 1);
    }

    #[test]
    fn group_messages_wait_for_every_recipient() {
        let ledger = Ledger::new(Shape {
            slots: 70,
            ..shape(2, false)
        });
        assert!(ledger.try_take_place(1));
        ledger.sent(1, 2);
        let stamp = Stamp { sender: 1, seq: 2 };
        assert_eq!(ledger.delivered(stamp, 69), Delivery::First);
        assert!(!ledger.try_take_place(1));
        assert_eq!(ledger.delivered(stamp, 3), Delivery::First);
        assert!(ledger.try_take_place(1));
        assert_eq!(ledger.delivered(stamp, 70), Delivery::Unknown);
        let unknown = Stamp { sender: 2, seq: 0 };
        assert_eq!(ledger.delivered(unknown, 0), Delivery::Unknown);
        assert_eq!(ledger.tally().missing, 0);
    }

    #[tokio::test]
    async fn the_run_is_done_once_every_message_completes() {
        let ledger = Ledger::new(Shape {
            messages: 1,
            ..shape(1, false)
        });
        let soon = tokio::time::Instant::now() + Duration::from_millis(20);
        assert!(!ledger.wait_done(soon).await);
        for sender in 0..2 {
            ledger.sent(sender, 0);
            ledger.delivered(Stamp { sender, seq: 0 }, 0);
        }
        let later = tokio::time::Instant::now() + Duration::from_secs(5);
        assert!(ledger.wait_done(later).await);
        ledger.abandon(0, 0, "refused");
        assert_eq!(ledger.tally().errors, 1);
    }
}
