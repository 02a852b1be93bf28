//! The ledger's promises, checked on examples and over random interleavings of its inputs.

use super::*;
use chat_proto::Recipient as To;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

const DEADLINE: Duration = Duration::from_millis(1000);

fn ledger(max_batch_rows: usize) -> Ledger<u32> {
    Ledger::new(LedgerConfig {
        ack_deadline: DEADLINE,
        max_batch_rows,
        recent_ids: 10_000,
    })
}

fn message(id: MessageId) -> Arc<SharedMessage> {
    SharedMessage::new(chat_proto::ChatMessage {
        id,
        from: "sender".into(),
        to: To::Group("g".into()),
        text: "hi".into(),
        sent_at_ms: 0,
    })
}

fn to(names: &[&str], offline: &[&str]) -> Vec<Addressee> {
    names
        .iter()
        .map(|name| Addressee {
            name: Arc::from(*name),
            offline: offline.contains(name),
        })
        .collect()
}

/// The answers among `actions`.
fn answers(actions: Vec<Action<u32>>) -> Vec<Action<u32>> {
    actions
        .into_iter()
        .filter(|action| matches!(action, Action::Answer(..)))
        .collect()
}

fn keys(batch: &Batch) -> Vec<(String, MessageId)> {
    batch
        .rows
        .iter()
        .map(|row| (row.recipient.to_string(), row.message.id))
        .collect()
}

#[test]
fn acknowledged_before_the_deadline_is_never_written() {
    let mut ledger = ledger(100);
    let t0 = Instant::now();
    let id = MessageId::new();
    assert!(matches!(
        ledger.submit(message(id), to(&["bob", "carol"], &[]), 1, t0),
        Submitted::Route
    ));
    assert_eq!(ledger.next_due(t0), Due::At(t0 + DEADLINE));
    assert_eq!(ledger.next_due(t0 + DEADLINE), Due::Now);
    assert!(ledger.take_batch(t0).is_none());
    assert!(ledger.ack("bob", &[id]).is_empty());
    assert_eq!(
        ledger.ack("carol", &[id]),
        [Action::Answer(1, Answer::Sent(id))]
    );
    assert_eq!(ledger.next_due(t0), Due::Idle);
    assert!(ledger.take_batch(t0 + DEADLINE * 2).is_none());
    // A retried send of a finished message is answered at once.
    assert!(matches!(
        ledger.submit(message(id), to(&["bob"], &[]), 2, t0),
        Submitted::Answer(2, Answer::Sent(_))
    ));
}

#[test]
fn offline_recipients_are_written_at_once_and_online_ones_at_the_deadline() {
    let mut ledger = ledger(100);
    let t0 = Instant::now();
    let id = MessageId::new();
    ledger.submit(message(id), to(&["bob", "carol"], &["carol"]), 1, t0);
    assert!(ledger.take_wake());
    assert_eq!(ledger.next_due(t0), Due::Now);
    let batch = ledger.take_batch(t0).unwrap();
    assert_eq!(keys(&batch), [("carol".to_owned(), id)]);
    // Carol is pushed the message again wherever she is now; bob has not got it.
    assert_eq!(
        ledger.committed(batch.id),
        [Action::Redeliver {
            message: message(id),
            recipients: vec!["carol".into()]
        }]
    );
    let batch = ledger.take_batch(t0 + DEADLINE).unwrap();
    assert_eq!(keys(&batch), [("bob".to_owned(), id)]);
    // Bob acknowledges while his row is being written: the row goes afterwards.
    assert!(ledger.ack("bob", &[id]).is_empty());
    assert_eq!(
        ledger.committed(batch.id),
        [Action::Answer(1, Answer::Sent(id))]
    );
    let batch = ledger.take_batch(t0 + DEADLINE).unwrap();
    assert!(batch.rows.is_empty());
    assert_eq!(batch.deletes.len(), 1);
    assert_eq!(batch.deletes[0].recipient, "bob");
}

#[test]
fn recipients_in_any_order_are_acknowledged_each_and_a_name_given_twice_counts_once() {
    let mut ledger = ledger(100);
    let t0 = Instant::now();
    let id = MessageId::new();
    let names = ["zoe", "bob", "mia", "bob", "amy"];
    // Bob is named twice, once as offline: he is one recipient, and written at once.
    let mut recipients = to(&names, &[]);
    recipients[3].offline = true;
    ledger.submit(message(id), recipients, 1, t0);
    let batch = ledger.take_batch(t0).unwrap();
    assert_eq!(keys(&batch), [("bob".to_owned(), id)]);
    ledger.committed(batch.id);
    for name in ["amy", "zoe", "nobody"] {
        assert!(ledger.ack(name, &[id]).is_empty(), "{name}");
    }
    assert_eq!(
        ledger.ack("mia", &[id]),
        [Action::Answer(1, Answer::Sent(id))]
    );
}

#[test]
fn only_ids_with_rows_written_cost_a_delete() {
    let mut ledger = ledger(100);
    let t0 = Instant::now();
    // Ids never seen, or of a message that finished with no row: nothing to write.
    let made_up: Vec<MessageId> = (0..1000).map(|_| MessageId::new()).collect();
    assert!(ledger.ack("bob", &made_up).is_empty());
    let live = MessageId::new();
    ledger.submit(message(live), to(&["bob"], &[]), 1, t0);
    ledger.ack("bob", &[live]);
    ledger.ack("bob", &[live]);
    assert_eq!(ledger.next_due(t0), Due::Idle);
    assert!(ledger.take_batch(t0).is_none());

    // A message stored for bob, then acknowledged once it finished: its row goes.
    let stored = MessageId::new();
    ledger.submit(message(stored), to(&["bob"], &["bob"]), 2, t0);
    let batch = ledger.take_batch(t0).unwrap();
    assert_eq!(
        answers(ledger.committed(batch.id)),
        [Action::Answer(2, Answer::Sent(stored))]
    );
    ledger.ack("bob", &made_up);
    ledger.ack("bob", &[stored]);
    let batch = ledger.take_batch(t0).unwrap();
    assert!(batch.rows.is_empty());
    let deletes: Vec<_> = batch
        .deletes
        .iter()
        .map(|del| (&*del.recipient, del.id))
        .collect();
    assert_eq!(deletes, [("bob", stored)]);
}

#[test]
fn a_failed_batch_tells_its_senders_once_and_is_stored_later() {
    let mut ledger = ledger(100);
    let t0 = Instant::now();
    let id = MessageId::new();
    ledger.submit(message(id), to(&["bob"], &["bob"]), 1, t0);
    let batch = ledger.take_batch(t0).unwrap();
    assert_eq!(
        ledger.failed(batch.id),
        [Action::Answer(1, Answer::NotStoredYet)]
    );
    assert!(ledger.failed(batch.id).is_empty());
    // The sender tries again while the writer still retries.
    assert!(matches!(
        ledger.submit(message(id), to(&["bob"], &["bob"]), 2, t0),
        Submitted::Joined
    ));
    assert_eq!(
        answers(ledger.committed(batch.id)),
        [Action::Answer(2, Answer::Sent(id))]
    );
}

#[test]
fn while_a_batch_fails_what_falls_due_is_refused_at_once_and_stored_later() {
    let mut ledger = ledger(100);
    let t0 = Instant::now();
    let (first, offline, online) = (MessageId::new(), MessageId::new(), MessageId::new());
    ledger.submit(message(first), to(&["bob"], &["bob"]), 1, t0);
    let batch = ledger.take_batch(t0).unwrap();
    // Nothing is refused before the database failed.
    ledger.submit(message(offline), to(&["carol"], &["carol"]), 2, t0);
    assert!(ledger.refuse_due(t0).is_empty());
    assert_eq!(
        ledger.failed(batch.id),
        [Action::Answer(1, Answer::NotStoredYet)]
    );
    // The offline recipient's message is due now: refused at once, and only once.
    assert_eq!(
        ledger.refuse_due(t0),
        [Action::Answer(2, Answer::NotStoredYet)]
    );
    assert!(ledger.refuse_due(t0).is_empty());
    // An online recipient's message is refused only once its ack deadline has passed.
    ledger.submit(message(online), to(&["dave"], &[]), 3, t0);
    assert!(ledger.refuse_due(t0).is_empty());
    assert_eq!(
        ledger.refuse_due(t0 + DEADLINE),
        [Action::Answer(3, Answer::NotStoredYet)]
    );
    // The database is back: the refused messages are written in the next batch.
    ledger.committed(batch.id);
    let next = ledger.take_batch(t0 + DEADLINE).unwrap();
    let mut written = keys(&next);
    written.sort();
    let mut expected = vec![("carol".to_owned(), offline), ("dave".to_owned(), online)];
    expected.sort();
    assert_eq!(written, expected);
}

#[test]
fn shutdown_stores_everything_waiting_and_refuses_new_messages() {
    let mut ledger = ledger(1);
    let t0 = Instant::now();
    let (first, second) = (MessageId::new(), MessageId::new());
    ledger.submit(message(first), to(&["bob"], &[]), 1, t0);
    ledger.submit(message(second), to(&["carol"], &[]), 2, t0);
    ledger.shutdown();
    assert!(matches!(
        ledger.submit(message(MessageId::new()), to(&["bob"], &[]), 3, t0),
        Submitted::Answer(3, Answer::ShuttingDown)
    ));
    let mut answered = Vec::new();
    while let Some(batch) = ledger.take_batch(t0) {
        assert_eq!(batch.rows.len(), 1, "batches hold at most one row here");
        answered.extend(answers(ledger.committed(batch.id)));
    }
    assert_eq!(
        answered,
        [
            Action::Answer(1, Answer::Sent(first)),
            Action::Answer(2, Answer::Sent(second))
        ]
    );
    assert_eq!(ledger.n_pending(), 0);
}

#[test]
fn acks_of_relayed_messages_go_back_to_their_owner() {
    let mut ledger = ledger(100);
    let (relayed, own) = (MessageId::new(), MessageId::new());
    ledger.relayed("s2", relayed, 1);
    ledger.submit(message(own), to(&["bob"], &[]), 1, Instant::now());
    let actions = ledger.ack("bob", &[relayed, own]);
    assert_eq!(
        actions,
        [
            Action::Answer(1, Answer::Sent(own)),
            Action::ForwardAcks {
                owner: "s2".into(),
                user: "bob".into(),
                ids: vec![relayed]
            }
        ]
    );
}

#[test]
fn an_unreachable_recipient_is_written_in_the_next_batch() {
    let mut ledger = ledger(100);
    let t0 = Instant::now();
    let id = MessageId::new();
    ledger.submit(message(id), to(&["bob", "carol"], &[]), 1, t0);
    ledger.unreachable(id, &[Arc::from("carol")]);
    let batch = ledger.take_batch(t0).unwrap();
    assert_eq!(keys(&batch), [("carol".to_owned(), id)]);
}

/// One input to the ledger, over a few messages and users.
#[derive(Debug, Clone)]
enum Op {
    Submit { msg: usize },
    Ack { msg: usize, user: usize },
    Unreachable { msg: usize, user: usize },
    Advance { ms: u64 },
    Take,
    Commit,
    Fail,
}

const USERS: [&str; 4] = ["ann", "bob", "cy", "di"];
const N_MESSAGES: usize = 6;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..N_MESSAGES).prop_map(|msg| Op::Submit { msg }),
        4 => (0..N_MESSAGES, 0..USERS.len()).prop_map(|(msg, user)| Op::Ack { msg, user }),
        1 => (0..N_MESSAGES, 0..USERS.len()).prop_map(|(msg, user)| Op::Unreachable { msg, user }),
        2 => (0..1500u64).prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::Take),
        2 => Just(Op::Commit),
        1 => Just(Op::Fail),
    ]
}

/// Each message's recipients (a non-empty subset of `USERS`) and which of them are offline.
fn messages() -> impl Strategy<Value = Vec<(u8, u8)>> {
    prop::collection::vec((1..16u8, 0..16u8), N_MESSAGES)
}

/// The ledger and a model of everything outside it: the database, the clients, the senders.
struct World {
    ledger: Ledger<u32>,
    now: Instant,
    ids: Vec<MessageId>,
    recipients: Vec<Vec<&'static str>>,
    offline: Vec<Vec<&'static str>>,
    submitted: HashSet<usize>,
    /// (recipient, message) pairs whose client has shown the message: delivered and acked.
    acked: HashSet<(String, MessageId)>,
    batch: Option<Batch>,
    /// The inbox, as committed.
    stored: HashSet<(String, MessageId)>,
    ever_deleted: HashSet<(String, MessageId)>,
    answers: HashMap<u32, usize>,
    waiters: HashSet<u32>,
}

impl World {
    fn new(masks: &[(u8, u8)]) -> World {
        let pick = |mask: u8| -> Vec<&'static str> {
            (0..USERS.len())
                .filter(|bit| mask & (1 << bit) != 0)
                .map(|bit| USERS[bit])
                .collect()
        };
        World {
            ledger: ledger(3),
            now: Instant::now(),
            ids: (0..N_MESSAGES).map(|_| MessageId::new()).collect(),
            recipients: masks.iter().map(|&(mask, _)| pick(mask)).collect(),
            offline: masks.iter().map(|&(mask, off)| pick(mask & off)).collect(),
            submitted: HashSet::new(),
            acked: HashSet::new(),
            batch: None,
            stored: HashSet::new(),
            ever_deleted: HashSet::new(),
            answers: HashMap::new(),
            waiters: HashSet::new(),
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Submit { msg } => {
                let waiter = self.waiters.len() as u32;
                self.waiters.insert(waiter);
                let addressees = to(&self.recipients[msg], &self.offline[msg]);
                let id = self.ids[msg];
                match self
                    .ledger
                    .submit(message(id), addressees, waiter, self.now)
                {
                    Submitted::Route | Submitted::Joined => {}
                    Submitted::Answer(waiter, answer) => self.answer(waiter, answer, msg),
                }
                self.submitted.insert(msg);
            }
            Op::Ack { msg, user } => {
                // Only a recipient who was sent the message can have shown it.
                let user = USERS[user];
                if !self.submitted.contains(&msg) || !self.recipients[msg].contains(&user) {
                    return;
                }
                self.acked.insert((user.to_owned(), self.ids[msg]));
                let actions = self.ledger.ack(user, &[self.ids[msg]]);
                self.carry_out(actions);
            }
            Op::Unreachable { msg, user } => {
                self.ledger
                    .unreachable(self.ids[msg], &[Arc::from(USERS[user])]);
            }
            Op::Advance { ms } => self.now += Duration::from_millis(ms),
            Op::Take => self.take(),
            Op::Commit => self.commit(),
            Op::Fail => {
                if let Some(batch) = &self.batch {
                    let mut actions = self.ledger.failed(batch.id);
                    // What fell due meanwhile is refused too, as the writer does while it waits.
                    actions.extend(self.ledger.refuse_due(self.now));
                    self.carry_out(actions);
                }
            }
        }
    }

    fn take(&mut self) {
        if self.batch.is_some() {
            return;
        }
        self.batch = self.ledger.take_batch(self.now);
        if let Some(batch) = &self.batch {
            assert!(
                batch.rows.len() <= 3 + USERS.len(),
                "a batch grew unbounded"
            );
            for key in keys(batch) {
                assert!(
                    !self.acked.contains(&key),
                    "{key:?} was written after its ack"
                );
                assert!(
                    !self.ever_deleted.contains(&key),
                    "{key:?} is inserted after it was deleted"
                );
            }
        }
    }

    fn commit(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        self.stored.extend(keys(&batch));
        for delete in &batch.deletes {
            let key = (delete.recipient.clone(), delete.id);
            self.stored.remove(&key);
            self.ever_deleted.insert(key);
        }
        let actions = self.ledger.committed(batch.id);
        self.carry_out(actions);
    }

    fn carry_out(&mut self, actions: Vec<Action<u32>>) {
        for action in actions {
            match action {
                Action::Answer(waiter, answer) => {
                    let msg = self.ids.iter().position(|id| match answer {
                        Answer::Sent(sent) => *id == sent,
                        _ => false,
                    });
                    self.answer(waiter, answer, msg.unwrap_or(usize::MAX));
                }
                Action::Redeliver {
                    message,
                    recipients,
                } => {
                    for user in recipients {
                        assert!(
                            self.stored.contains(&(user.to_string(), message.id)),
                            "{user} is sent {} again before it is stored",
                            message.id
                        );
                    }
                }
                Action::ForwardAcks { .. } => panic!("no message here was relayed"),
            }
        }
    }

    fn answer(&mut self, waiter: u32, answer: Answer, msg: usize) {
        *self.answers.entry(waiter).or_default() += 1;
        assert_eq!(self.answers[&waiter], 1, "waiter {waiter} answered twice");
        if let Answer::Sent(id) = answer {
            for user in &self.recipients[msg] {
                let key = (user.to_string(), id);
                assert!(
                    self.acked.contains(&key) || self.stored.contains(&key),
                    "{key:?}: sent, but neither acknowledged nor stored"
                );
            }
        }
    }

    /// Writes whatever the ledger says is due, as the writer task does.
    fn run_writer(&mut self) {
        self.commit();
        while self.ledger.next_due(self.now) == Due::Now {
            self.take();
            if self.batch.is_none() {
                break;
            }
            self.commit();
        }
    }

    /// Lets the deadlines pass: the writer, woken by `next_due`, stores everything not
    /// acknowledged, and every sender is answered.
    fn settle(&mut self) {
        self.now += DEADLINE;
        self.run_writer();
        assert_eq!(self.ledger.next_due(self.now), Due::Idle);
        assert_eq!(self.ledger.n_pending(), 0, "pending after every deadline");
    }

    /// Shuts down and lets the writer finish, as the server does.
    fn shut_down(&mut self) {
        self.ledger.shutdown();
        self.run_writer();
        assert_eq!(
            self.ledger.n_pending(),
            0,
            "something pending after shutdown"
        );
        for &waiter in &self.waiters {
            assert_eq!(self.answers.get(&waiter), Some(&1), "waiter {waiter}");
        }
        for &msg in &self.submitted {
            for user in &self.recipients[msg] {
                let key = (user.to_string(), self.ids[msg]);
                assert!(
                    self.acked.contains(&key) || self.stored.contains(&key),
                    "{key:?}: lost at shutdown"
                );
            }
        }
        for key in &self.acked {
            assert!(
                !self.stored.contains(key),
                "{key:?}: acknowledged, but left stored"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_interleaving_keeps_the_contract(
        masks in messages(),
        ops in prop::collection::vec(op(), 0..80),
    ) {
        let mut world = World::new(&masks);
        for op in ops {
            world.apply(op);
        }
        world.shut_down();
    }

    #[test]
    fn without_a_shutdown_the_deadlines_settle_everything(
        masks in messages(),
        ops in prop::collection::vec(op(), 0..80),
    ) {
        let mut world = World::new(&masks);
        for op in ops {
            world.apply(op);
        }
        world.settle();
        world.shut_down();
    }
}
