//! Persistent links to the other servers of the farm.
//!
//! Every pair of live servers keeps exactly one link. **The server that registered later dials
//! the earlier one** (ties broken by name); the other accepts. Both sides check that rule with
//! the start times in the hellos, so a view of the registry that is a second old cannot make
//! two links. A link that drops is dialed again with backoff for as long as its peer is live.
//!
//! Links sit below delivery, which routes over them: what a link hears that delivery must
//! handle goes through the [`Relayed`] trait, which `server` implements for delivery. The link
//! tasks get a [`LinkContext`] of what they use.
//!
//! - `handle`: [`LinkHandle`], a link's bounded outbound queue, and its counters.
//! - `link`: one link's reader task, its writer, and what each incoming frame does.
//! - `dial`: the dialing side: a supervisor that follows the registry, one loop per peer.
//! - `accept`: the accepting side: the peer listener.
//! - `greet`: the XXpsk3 handshake and the hellos of both sides.
//! - `home`: calling users home to a peer that says it serves, spread over a short window.

mod accept;
mod dial;
mod greet;
mod handle;
mod home;
mod link;

pub use accept::accept;
pub use dial::supervise;
pub use handle::{LinkHandle, LinkStats};

use crate::farm::{Farm, FarmView};
use crate::hub::Hub;
use crate::members::Members;
use crate::presence::Presence;
use crate::revocation::Revocations;
use crate::store::Store;
use chat_proto::{MessageId, PeerFrame, SharedMessage};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the link tasks (dialing, accepting, reading) use, and nothing more.
pub struct LinkContext {
    pub links: Arc<Links>,
    /// The registry, to know whom to dial and to check who dials.
    pub farm: Arc<Farm>,
    /// For reading the registry again when a dialer is not in the last reading.
    pub store: Store,
    /// Tells each new link who is logged in here, and every change after.
    pub hub: Arc<Hub>,
    /// Where each link's news of who is logged in on its peer goes.
    pub presence: Arc<Presence>,
    /// The groups' members, cached: a peer's `GroupChanged` invalidates a group, and a link
    /// that starts or ends clears them all.
    pub members: Arc<Members>,
    /// The users' revocation epochs, cached: a peer's `Revoked` invalidates a user, and a link
    /// that starts or ends clears them all, as for the members.
    pub revocations: Arc<Revocations>,
    pub delivery: Arc<dyn Relayed>,
    /// Cancelled when the server starts to shut down: no more dialing or accepting.
    pub shutdown: CancellationToken,
    /// Cancelled once the delivery writer has flushed: the links close.
    pub drained: CancellationToken,
    /// Every link and dial loop, so that shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// What a link hands to delivery: messages that its peer owns for users here, and the
/// acknowledgements of messages that this server owns.
pub trait Relayed: Send + Sync {
    /// Shows a message that server `owner` relayed to these users of this server.
    fn deliver_relayed(&self, owner: &str, message: Arc<SharedMessage>, recipients: &[Arc<str>]);

    /// Records that `user`'s client, on the link's peer, has shown these messages.
    fn ack_owned(&self, user: &str, ids: &[MessageId]);
}

/// The links of this server.
pub struct Links {
    me: String,
    /// This process's link key, registered in `server_info`.
    link_key: chat_proto::Keypair,
    /// The farm's pre-shared cluster key.
    cluster_key: zeroize::Zeroizing<[u8; 32]>,
    /// This server's registration time, in milliseconds since the Unix epoch.
    started_at_ms: i64,
    state: Mutex<State>,
    /// Bumped whenever a link comes up or goes down.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// The links that are up, by peer name.
    up: HashMap<String, LinkHandle>,
    /// Counters per peer; they outlive each link, so that they count across reconnects.
    stats: HashMap<String, Arc<LinkStats>>,
    /// The peers that a dial loop is responsible for.
    dialing: HashSet<String>,
    /// True once this server accepts clients: every link then tells its peer so, once.
    serving: bool,
    /// The call-back under way to each peer, to be replaced by a newer one.
    calling_back: HashMap<String, tokio::task::AbortHandle>,
}

impl Links {
    pub fn new(
        me: &str,
        started_at_ms: i64,
        link_key: chat_proto::Keypair,
        cluster_key: zeroize::Zeroizing<[u8; 32]>,
    ) -> Links {
        Links {
            me: me.to_owned(),
            link_key,
            cluster_key,
            started_at_ms,
            state: Mutex::default(),
            changed: watch::channel(0).0,
        }
    }

    /// Queues `frame` for `peer` without waiting. False if there is no link to it now.
    pub fn send(&self, peer: &str, frame: PeerFrame) -> bool {
        let link = self.lock().up.get(peer).cloned();
        link.is_some_and(|link| link.push(frame))
    }

    /// Queues `user`'s acknowledgements for `peer`, gathered with others (see
    /// [`LinkHandle::push_acks`]). False if there is no link to it now.
    pub fn send_acks(&self, peer: &str, user: String, ids: Vec<MessageId>) -> bool {
        let link = self.lock().up.get(peer).cloned();
        link.is_some_and(|link| link.push_acks(user, ids))
    }

    pub fn is_up(&self, peer: &str) -> bool {
        self.lock().up.contains_key(peer)
    }

    /// True if every live server of `view` but this one has a link up with it.
    pub fn linked_with_all(&self, view: &FarmView) -> bool {
        let state = self.lock();
        view.live_peers()
            .all(|peer| state.up.contains_key(&peer.name))
    }

    /// The server that should serve `user` now in `view`: home if it is this server or
    /// linked, else the backup on the same terms, and so on around the ring.
    pub fn serving(&self, view: &FarmView, user: &str) -> String {
        view.serving(user, |server| self.is_up(server)).to_owned()
    }

    /// Every peer this server has had a link to, with whether it is up and its counters.
    pub fn report(&self) -> Vec<(String, bool, Arc<LinkStats>)> {
        let state = self.lock();
        let mut report: Vec<_> = state
            .stats
            .iter()
            .map(|(peer, stats)| (peer.clone(), state.up.contains_key(peer), stats.clone()))
            .collect();
        report.sort_by(|a, b| a.0.cmp(&b.0));
        report
    }

    /// True once this server accepts clients ([`Links::start_serving`]).
    pub fn is_serving(&self) -> bool {
        self.lock().serving
    }

    /// The live servers of `view` with no link up from this one.
    pub fn unlinked(&self, view: &FarmView) -> Vec<String> {
        let state = self.lock();
        view.live_peers()
            .filter(|peer| !state.up.contains_key(&peer.name))
            .map(|peer| peer.name.clone())
            .collect()
    }

    /// Waits until every one of `peers` has a link up, or `limit` passes.
    pub async fn wait_up(&self, peers: &[String], limit: Duration) -> bool {
        let mut changes = self.changed.subscribe();
        let all_up = async {
            loop {
                if peers.iter().all(|peer| self.is_up(peer)) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, all_up).await.is_ok()
    }

    /// This server accepts clients now: tells every peer, over the links that are up and on
    /// each link that comes up later, so that they send this server's users home.
    pub fn start_serving(&self) {
        let mut state = self.lock();
        state.serving = true;
        for link in state.up.values() {
            link.push(PeerFrame::Serving);
        }
    }

    /// True if this server is the one to dial `peer`: it registered later (ties by name).
    fn dials(&self, peer: &str, peer_started_at_ms: i64) -> bool {
        (self.started_at_ms, self.me.as_str()) > (peer_started_at_ms, peer)
    }

    fn stats_of(&self, peer: &str) -> Arc<LinkStats> {
        self.lock()
            .stats
            .entry(peer.to_owned())
            .or_default()
            .clone()
    }

    /// Makes `link` the link to its peer, closing any older one. Once this server serves, the
    /// link tells the peer so; under the lock, so that [`Links::start_serving`] and this tell
    /// each link exactly once.
    fn register(&self, link: LinkHandle) {
        let mut state = self.lock();
        if state.serving {
            link.push(PeerFrame::Serving);
        }
        let old = state.up.insert(link.peer().to_owned(), link);
        drop(state);
        if let Some(old) = old {
            old.close("replaced by a newer link");
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Forgets `link`, unless a newer link to its peer has replaced it.
    fn unregister(&self, link: &LinkHandle) {
        let mut state = self.lock();
        if state
            .up
            .get(link.peer())
            .is_some_and(|current| current.id() == link.id())
        {
            state.up.remove(link.peer());
            drop(state);
            self.changed.send_modify(|n| *n += 1);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
