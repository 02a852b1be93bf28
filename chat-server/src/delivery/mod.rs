//! The delivery contract: a message its sender was told is "sent" is never lost.
//!
//! A submitted message is pushed at once to every session of every recipient logged in here,
//! relayed in one `Deliver` frame to each other server where recipients are logged in, and
//! recorded as *pending* on this server, which owns it. Then, for each recipient, one of two
//! things happens first:
//!
//! - its client acknowledges the message: nothing is written for it;
//! - the message's ack deadline passes (`--ack-deadline-ms`), or the recipient was logged in
//!   nowhere or could not be reached: the writer stores its inbox row, in one transaction with
//!   whatever else is due (group commit). An acknowledgement that comes after that deletes the
//!   row, in a later batch.
//!
//! The sender is told "sent" once every recipient has acknowledged the message or has its row
//! committed. With every recipient online and acknowledging, the database sees nothing at all.
//!
//! A server that relays a message remembers only where it came from: its recipients' acks go
//! back over the link to the owner. A relay that fails (no link, a recipient who just left)
//! costs nothing but a stored row, since the owner stores whatever is not acknowledged.
//!
//! - `ledger`: what is owed for each message, as a state machine without I/O.
//! - `writer`: the one task that writes inbox rows and deletes, in the ledger's order.
//! - `recent`: the bounded memory of recent message ids.
//! - `ids`: the maps keyed by message id, with a fast keyed hasher.
//! - `shown`: what is only shown, outside the contract: echoes of a message on its sender's
//!   other sessions, and notices of joins and leaves.
//!
//! **One writer task owns all inbox writes and deletes, one batch at a time**, so a delete is
//! never applied before the insert it undoes. The ledger's lock is never held across an
//! `.await`.

mod ids;
mod ledger;
mod recent;
mod shown;
mod writer;

pub use ledger::LedgerConfig;

use crate::hub::{Hub, Sessions};
use crate::links::Links;
use crate::outbound::Outbound;
use crate::presence::{Located, Presence};
use crate::store::Store;
use crate::telemetry;
use chat_proto::{
    ChatMessage, ErrorCode, ErrorReply, MessageId, PeerFrame, RequestId, Response, ServerFrame,
    SharedMessage,
};
use ledger::{Action, Addressee, Answer, Ledger, Submitted};
use smallvec::{smallvec, SmallVec};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The most recipients in one relayed frame: 4096 names of at most 32 bytes and a message of
/// at most 4 KiB stay far below the link's frame limit.
const MAX_RELAY_RECIPIENTS: usize = 4096;
/// How many recently finished message ids are remembered at least, to answer retried sends,
/// and how many relayed ones, to route their acknowledgements.
const RECENT_IDS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How long a pushed message waits for its recipients' acknowledgements before it is
    /// stored for those who have not acknowledged it.
    pub ack_deadline: Duration,
    /// The most inbox rows in one transaction.
    pub max_batch: usize,
}

/// Whom to tell once a message is sent: a request of a client session.
pub struct Waiter {
    pub session: Outbound,
    pub request: RequestId,
}

impl Waiter {
    /// Answers the waiting request.
    fn answer(self, answer: Answer) {
        let result = match answer {
            Answer::Sent(id) => Ok(Response::Sent { id }),
            Answer::NotStoredYet => Err(ErrorReply::new(
                ErrorCode::Unavailable,
                "not stored yet: the database is unreachable; the server keeps trying, and \
                 sending again is safe",
            )),
            Answer::ShuttingDown => Err(ErrorReply::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down; send again in a moment",
            )),
        };
        self.session.push(ServerFrame::Reply {
            id: self.request,
            result,
        });
    }
}

/// Where messages go: the sessions here, and the links to the other servers.
pub struct Routes {
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    pub links: Arc<Links>,
}

pub struct Delivery {
    ledger: Mutex<Ledger<Waiter>>,
    /// Tells the writer that something may be due earlier than it thought.
    wake: Notify,
    routes: Routes,
    writer_stop: CancellationToken,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// One flag per recipient of a message, in place for all but large groups.
type Flags = SmallVec<[bool; 16]>;

/// Where a new message's recipients are now.
struct Plan {
    /// Indices into the recipients, with their sessions here.
    local: SmallVec<[(usize, Sessions); 1]>,
    /// Indices into the recipients, by the server they are logged in on.
    remote: Located,
}

impl Delivery {
    /// Starts the writer task.
    pub fn start(store: Store, routes: Routes, config: DeliveryConfig) -> Arc<Delivery> {
        let ledger = Ledger::new(LedgerConfig {
            ack_deadline: config.ack_deadline,
            max_batch_rows: config.max_batch.max(1),
            recent_ids: RECENT_IDS,
        });
        let delivery = Arc::new(Delivery {
            ledger: Mutex::new(ledger),
            wake: Notify::new(),
            routes,
            writer_stop: CancellationToken::new(),
            writer: Mutex::new(None),
        });
        let writer = tokio::spawn(writer::run(delivery.clone(), store));
        *lock(&delivery.writer) = Some(writer);
        delivery
    }

    /// Delivers `message` to `recipients` and tells `waiter` once it is sent; the sender's
    /// other sessions are shown it as an echo. A message whose id is already pending or was
    /// recently sent is neither delivered nor echoed again; the waiter is told all the same.
    pub fn submit(&self, message: ChatMessage, recipients: Vec<Arc<str>>, waiter: Waiter) {
        let message = SharedMessage::new(message);
        let sending_session = waiter.session.id();
        let plan = self.plan(&recipients);
        let mut reached: Flags = smallvec![false; recipients.len()];
        for &idx in plan
            .local
            .iter()
            .map(|(idx, _)| idx)
            .chain(plan.remote.iter().flat_map(|(_, indices)| indices))
        {
            reached[idx] = true;
        }
        let addressees = recipients
            .iter()
            .zip(reached)
            .map(|(name, reached)| Addressee {
                name: name.clone(),
                offline: !reached,
            })
            .collect();
        let submitted = self.with_ledger(|ledger| {
            ledger.submit(message.clone(), addressees, waiter, Instant::now())
        });
        match submitted {
            Submitted::Route => {
                telemetry::hot().messages_accepted.increment(1);
                let missed = self.route(&message, &recipients, plan);
                if !missed.is_empty() {
                    self.with_ledger(|ledger| ledger.unreachable(message.id, &missed));
                }
                self.echo(&message, sending_session);
            }
            Submitted::Joined => {}
            Submitted::Answer(waiter, answer) => waiter.answer(answer),
        }
    }

    /// Finds the recipients' sessions here and the other servers they are logged in on.
    fn plan(&self, recipients: &[Arc<str>]) -> Plan {
        let local = recipients
            .iter()
            .enumerate()
            .filter_map(|(idx, user)| {
                let sessions = self.routes.hub.sessions_of(user);
                (!sessions.is_empty()).then_some((idx, sessions))
            })
            .collect();
        let remote = self.routes.presence.locate(recipients);
        Plan { local, remote }
    }

    /// Pushes `message` to the recipients' sessions here, and relays it once to each other
    /// server where some of them are logged in. Returns the recipients it reached nowhere.
    fn route(
        &self,
        message: &Arc<SharedMessage>,
        recipients: &[Arc<str>],
        plan: Plan,
    ) -> Vec<Arc<str>> {
        let mut missed = Vec::new();
        let mut pushed: Flags = smallvec![false; recipients.len()];
        let mut n_delivered = 0;
        for (idx, sessions) in plan.local {
            for session in sessions {
                let queued = session.push(ServerFrame::Deliver(message.clone()));
                pushed[idx] |= queued;
                n_delivered += u64::from(queued);
            }
        }
        telemetry::hot().messages_delivered.increment(n_delivered);
        for (server, indices) in plan.remote {
            // One frame per server, unless its recipients would not fit in one.
            for indices in indices.chunks(MAX_RELAY_RECIPIENTS) {
                let frame = PeerFrame::Deliver {
                    message: message.clone(),
                    recipients: indices.iter().map(|&idx| recipients[idx].clone()).collect(),
                };
                if self.routes.links.send(&server, frame) {
                    for &idx in indices {
                        pushed[idx] = true;
                    }
                }
            }
        }
        for (user, pushed) in recipients.iter().zip(pushed) {
            if !pushed {
                missed.push(user.clone());
            }
        }
        missed
    }

    /// Shows a message that server `owner` relayed to these users of this server.
    pub fn deliver_relayed(
        &self,
        owner: &str,
        message: Arc<SharedMessage>,
        recipients: &[Arc<str>],
    ) {
        self.with_ledger(|ledger| ledger.relayed(owner, message.id, recipients.len()));
        let mut n_delivered = 0;
        for user in recipients {
            for session in self.routes.hub.sessions_of(user) {
                n_delivered += u64::from(session.push(ServerFrame::Deliver(message.clone())));
            }
        }
        telemetry::hot().messages_delivered.increment(n_delivered);
    }

    /// Records that `user`'s client, logged in here, has shown these messages. The
    /// acknowledgements of relayed messages go back to the servers that own them.
    pub fn ack(&self, user: &str, ids: &[MessageId]) {
        let actions = self.with_ledger(|ledger| ledger.ack(user, ids));
        self.carry_out(actions);
    }

    /// Records that `user`'s client has shown these messages, which this server owns.
    pub fn ack_owned(&self, user: &str, ids: &[MessageId]) {
        let actions = self.with_ledger(|ledger| ledger.ack_owned(user, ids));
        self.carry_out(actions);
    }

    fn carry_out(&self, actions: Vec<Action<Waiter>>) {
        for action in actions {
            match action {
                Action::Answer(waiter, answer) => waiter.answer(answer),
                Action::Redeliver {
                    message,
                    recipients,
                } => {
                    let plan = self.plan(&recipients);
                    self.route(&message, &recipients, plan);
                }
                Action::ForwardAcks { owner, user, ids } => {
                    // Without a link the owner stores the message, and the client skips it in
                    // readlog.
                    self.routes.links.send_acks(&owner, user, ids);
                }
            }
        }
    }

    /// How many messages this server owns that are not yet sent, and how many of their
    /// deliveries are neither acknowledged nor stored.
    pub fn backlog(&self) -> (usize, usize) {
        let ledger = lock(&self.ledger);
        (ledger.n_pending(), ledger.n_unacknowledged())
    }

    /// Stores every message still pending and stops the writer. Call once no session submits.
    pub async fn finish(&self) {
        self.writer_stop.cancel();
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            if let Err(err) = writer.await {
                tracing::error!(%err, "delivery writer failed");
            }
        }
    }

    /// Runs `f` on the ledger under its lock, and wakes the writer if `f` made work due
    /// sooner.
    fn with_ledger<T>(&self, f: impl FnOnce(&mut Ledger<Waiter>) -> T) -> T {
        let mut ledger = lock(&self.ledger);
        let result = f(&mut ledger);
        if ledger.take_wake() {
            self.wake.notify_one();
        }
        result
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
