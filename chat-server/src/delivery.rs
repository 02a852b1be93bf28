//! The delivery contract: a message its sender was told is "sent" is never lost.
//!
//! A submitted message is pushed at once to every session of every recipient logged in here,
//! relayed in one `Deliver` frame to each other server where recipients are logged in, and
//! recorded as *pending* on this server, which owns it. Then one of two things happens first:
//!
//! - every recipient's client acknowledges it: the sender is told "sent", and the message is
//!   never written to the database at all;
//! - the writer's next batch picks it up: it stores one inbox row per recipient that has not
//!   acknowledged it yet, commits the whole batch at once (group commit), and then tells the
//!   senders "sent". An acknowledgement that comes after that deletes the row, in a later batch.
//!
//! The writer waits `commit_delay` after the first job of a batch before writing, which gives
//! live recipients the time to acknowledge, so that a busy server writes little.
//!
//! A server that relays a message remembers only where it came from: its recipients' acks go
//! back over the link to the owner. A relay that fails (no link, a recipient who just left)
//! costs nothing but a stored row, since the owner stores whatever is not acknowledged.
//!
//! **One writer task owns all inbox writes and deletes, in queue order.** A delete is therefore
//! never applied before the insert it undoes. The state lock is never held across an `.await`.

use crate::hub::Hub;
use crate::links::Links;
use crate::outbound::Outbound;
use crate::presence::Presence;
use crate::store::{InboxDelete, InboxRow, Store};
use chat_proto::{
    ChatMessage, ErrorCode, ErrorReply, MessageId, PeerFrame, RequestId, Response, ServerFrame,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

/// How many jobs may wait for the writer before submitters wait for room.
const JOB_QUEUE_LEN: usize = 65_536;
/// The most recipients in one relayed frame: 4096 names of at most 32 bytes and a message of
/// at most 4 KiB stay far below the link's frame limit.
const MAX_RELAY_RECIPIENTS: usize = 4096;
/// How many recently finished message ids are remembered, to answer retried sends, and how
/// many relayed ones, to route their acknowledgements.
const RECENT_IDS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How long the writer waits after a batch's first message before writing it.
    pub commit_delay: Duration,
    /// The most jobs in one batch.
    pub max_batch: usize,
}

/// Whom to tell once a message is sent: a request of a client session.
pub struct Waiter {
    pub session: Outbound,
    pub request: RequestId,
}

impl Waiter {
    /// Answers the waiting request.
    fn answer(self, result: Result<Response, ErrorReply>) {
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
    state: Mutex<State>,
    jobs: mpsc::Sender<Job>,
    routes: Routes,
    writer_stop: CancellationToken,
    writer: Mutex<Option<JoinHandle<()>>>,
}

enum Job {
    Persist(MessageId),
    Delete(InboxDelete),
}

#[derive(Default)]
struct State {
    pending: HashMap<MessageId, Pending>,
    /// Messages finished here, and whether they were written to the inbox.
    recent: Recent<bool>,
    /// Messages relayed here by another server, and which server owns each.
    relayed: Recent<String>,
    /// The writer has taken its final sweep: nothing submitted now could be stored.
    closed: bool,
}

struct Pending {
    message: Arc<ChatMessage>,
    /// Recipients whose clients have not acknowledged the message.
    unacked: Vec<String>,
    /// The writer has taken it into a batch that is being written now.
    writing: bool,
    /// Recipients who acknowledged while it was being written; their rows go afterwards.
    acked_while_writing: Vec<String>,
    waiters: Vec<Waiter>,
}

impl Delivery {
    /// Starts the writer task.
    pub fn start(store: Store, routes: Routes, config: DeliveryConfig) -> Arc<Delivery> {
        let (jobs, job_rx) = mpsc::channel(JOB_QUEUE_LEN);
        let delivery = Arc::new(Delivery {
            state: Mutex::new(State::default()),
            jobs,
            routes,
            writer_stop: CancellationToken::new(),
            writer: Mutex::new(None),
        });
        let writer = tokio::spawn(delivery.clone().run_writer(store, config, job_rx));
        *lock(&delivery.writer) = Some(writer);
        delivery
    }

    /// Delivers `message` to `recipients` and tells `waiter` once it is sent. A message whose id
    /// is already pending or was recently sent is not delivered again; the waiter is told all the
    /// same.
    pub async fn submit(&self, message: ChatMessage, recipients: Vec<String>, waiter: Waiter) {
        let id = message.id;
        let message = Arc::new(message);
        {
            let mut state = lock(&self.state);
            if state.closed {
                drop(state);
                let refusal = ErrorReply::new(
                    ErrorCode::ShuttingDown,
                    "the server is shutting down; send again in a moment",
                );
                waiter.answer(Err(refusal));
                return;
            }
            if let Some(pending) = state.pending.get_mut(&id) {
                pending.waiters.push(waiter);
                return;
            }
            if recipients.is_empty() || state.recent.contains(id) {
                drop(state);
                tell_sent(id, [waiter]);
                return;
            }
            let pending = Pending {
                message: message.clone(),
                unacked: recipients.clone(),
                writing: false,
                acked_while_writing: Vec::new(),
                waiters: vec![waiter],
            };
            state.pending.insert(id, pending);
        }
        self.route(&message, &recipients);
        // If the writer is gone we are shutting down; the final sweep stores the message.
        let _ = self.jobs.send(Job::Persist(id)).await;
    }

    /// Pushes `message` to the recipients' sessions here, and relays it once to each other
    /// server where some of them are logged in.
    fn route(&self, message: &ChatMessage, recipients: &[String]) {
        self.push_local(message, recipients);
        for (server, users) in self.routes.presence.locate(recipients) {
            // One frame per server, unless its recipients would not fit in one.
            for users in users.chunks(MAX_RELAY_RECIPIENTS) {
                let frame = PeerFrame::Deliver {
                    message: message.clone(),
                    recipients: users.to_vec(),
                };
                self.routes.links.send(&server, frame);
            }
        }
    }

    fn push_local(&self, message: &ChatMessage, recipients: &[String]) {
        for user in recipients {
            for session in self.routes.hub.sessions_of(user) {
                session.push(ServerFrame::Deliver(message.clone()));
            }
        }
    }

    /// Shows a message that server `owner` relayed to these users of this server.
    pub fn deliver_relayed(&self, owner: &str, message: ChatMessage, recipients: &[String]) {
        lock(&self.state)
            .relayed
            .insert(message.id, owner.to_owned());
        self.push_local(&message, recipients);
    }

    /// Records that `user`'s client, logged in here, has shown these messages. The
    /// acknowledgements of relayed messages go back to the servers that own them.
    pub async fn ack(&self, user: &str, ids: &[MessageId]) {
        let mut owned = Vec::new();
        let mut by_owner: BTreeMap<String, Vec<MessageId>> = BTreeMap::new();
        {
            let state = lock(&self.state);
            for &id in ids {
                match state.relayed.get(id) {
                    Some(owner) if !state.pending.contains_key(&id) => {
                        by_owner.entry(owner.clone()).or_default().push(id);
                    }
                    _ => owned.push(id),
                }
            }
        }
        for (owner, ids) in by_owner {
            let user = user.to_owned();
            // Without a link the owner stores the message, and the client skips it in readlog.
            self.routes
                .links
                .send(&owner, PeerFrame::Acked { user, ids });
        }
        self.ack_owned(user, &owned).await;
    }

    /// Records that `user`'s client has shown these messages, which this server owns.
    pub async fn ack_owned(&self, user: &str, ids: &[MessageId]) {
        let mut finished = Vec::new();
        let mut deletes = Vec::new();
        {
            let mut state = lock(&self.state);
            for &id in ids {
                let Some(pending) = state.pending.get_mut(&id) else {
                    // An id that was forgotten counts as written, so that its row, if any, is
                    // deleted.
                    if state.recent.get(id).copied().unwrap_or(true) {
                        deletes.push(InboxDelete {
                            recipient: user.to_owned(),
                            id,
                        });
                    }
                    continue;
                };
                let Some(idx) = pending.unacked.iter().position(|name| name == user) else {
                    continue;
                };
                pending.unacked.swap_remove(idx);
                if pending.writing {
                    pending.acked_while_writing.push(user.to_owned());
                } else if pending.unacked.is_empty() {
                    if let Some(done) = state.pending.remove(&id) {
                        state.recent.insert(id, false);
                        finished.push((id, done.waiters));
                    }
                }
            }
        }
        for (id, waiters) in finished {
            tell_sent(id, waiters);
        }
        for delete in deletes {
            let _ = self.jobs.send(Job::Delete(delete)).await;
        }
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

    async fn run_writer(
        self: Arc<Self>,
        store: Store,
        config: DeliveryConfig,
        mut jobs: mpsc::Receiver<Job>,
    ) {
        loop {
            let first = tokio::select! {
                job = jobs.recv() => job,
                () = self.writer_stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            let deadline = Instant::now() + config.commit_delay;
            // Gather more until the deadline; a shutdown writes at once.
            while batch.len() < config.max_batch {
                tokio::select! {
                    job = jobs.recv() => match job {
                        Some(job) => batch.push(job),
                        None => break,
                    },
                    () = sleep_until(deadline) => break,
                    () = self.writer_stop.cancelled() => break,
                }
            }
            self.write_batch(&store, batch).await;
        }
        // Shutting down: take what is queued, then everything still pending.
        jobs.close();
        let mut batch = Vec::new();
        while let Some(job) = jobs.recv().await {
            batch.push(job);
        }
        {
            // From here on, submit refuses: everything pending now is in this last batch.
            let mut state = lock(&self.state);
            state.closed = true;
            batch.extend(state.pending.keys().map(|&id| Job::Persist(id)));
        }
        let n_jobs = batch.len();
        self.write_batch(&store, batch).await;
        tracing::info!(n_jobs, "delivery writer flushed and stopped");
    }

    async fn write_batch(&self, store: &Store, batch: Vec<Job>) {
        let mut rows = Vec::new();
        let mut deletes = Vec::new();
        let mut writing = Vec::new();
        {
            let mut state = lock(&self.state);
            for job in batch {
                match job {
                    Job::Persist(id) => {
                        let Some(pending) = state.pending.get_mut(&id) else {
                            continue;
                        };
                        if pending.writing {
                            continue;
                        }
                        pending.writing = true;
                        rows.extend(pending.unacked.iter().map(|user| InboxRow {
                            recipient: user.clone(),
                            message: pending.message.clone(),
                        }));
                        writing.push(id);
                    }
                    Job::Delete(delete) => deletes.push(delete),
                }
            }
        }
        // While the database is away the writer keeps trying, but the senders are told at once
        // that their messages are not stored yet, rather than being left waiting.
        let tell_unavailable = || self.refuse_waiters(&writing);
        store_with_retry(store, &rows, &deletes, tell_unavailable).await;
        let mut finished = Vec::new();
        let mut late_deletes = Vec::new();
        {
            let mut state = lock(&self.state);
            for id in writing {
                let Some(done) = state.pending.remove(&id) else {
                    continue;
                };
                state.recent.insert(id, true);
                late_deletes.extend(
                    done.acked_while_writing
                        .into_iter()
                        .map(|recipient| InboxDelete { recipient, id }),
                );
                finished.push((id, done.waiters));
            }
        }
        for (id, waiters) in finished {
            tell_sent(id, waiters);
        }
        if !late_deletes.is_empty() {
            store_with_retry(store, &[], &late_deletes, || {}).await;
        }
    }

    /// Tells the waiters of these messages that they are not stored yet. The messages stay
    /// pending: they are stored once the database is back, and a resend with the same id
    /// waits for that.
    fn refuse_waiters(&self, ids: &[MessageId]) {
        let mut refused = Vec::new();
        {
            let mut state = lock(&self.state);
            for id in ids {
                if let Some(pending) = state.pending.get_mut(id) {
                    refused.append(&mut pending.waiters);
                }
            }
        }
        for waiter in refused {
            let refusal = ErrorReply::new(
                ErrorCode::Unavailable,
                "not stored yet: the database is unreachable; the server keeps trying, and \
                 sending again is safe",
            );
            waiter.answer(Err(refusal));
        }
    }
}

/// Applies a batch, retrying with backoff until the database takes it. Calls `on_failure`
/// once, after the first failed attempt.
async fn store_with_retry(
    store: &Store,
    rows: &[InboxRow],
    deletes: &[InboxDelete],
    on_failure: impl FnOnce(),
) {
    if rows.is_empty() && deletes.is_empty() {
        return;
    }
    let mut on_failure = Some(on_failure);
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.apply_inbox_batch(rows, deletes).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(%err, n_rows = rows.len(), n_deletes = deletes.len(),
                    "storing a batch of messages failed; retrying in {backoff:?}");
                if let Some(on_failure) = on_failure.take() {
                    on_failure();
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn tell_sent(id: MessageId, waiters: impl IntoIterator<Item = Waiter>) {
    for waiter in waiters {
        waiter.answer(Ok(Response::Sent { id }));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// A bounded map of recent message ids: the oldest is forgotten first.
struct Recent<V> {
    values: HashMap<MessageId, V>,
    order: VecDeque<MessageId>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent {
            values: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<V> Recent<V> {
    fn insert(&mut self, id: MessageId, value: V) {
        if self.values.insert(id, value).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.values.remove(&old);
            }
        }
    }

    fn contains(&self, id: MessageId) -> bool {
        self.values.contains_key(&id)
    }

    fn get(&self, id: MessageId) -> Option<&V> {
        self.values.get(&id)
    }
}
