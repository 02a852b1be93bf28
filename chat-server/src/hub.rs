//! Who is logged in on this server, the way to reach each of their sessions, and the links
//! that must hear about every login and logout, and of every change to a group's members.

use crate::farm::Farm;
use crate::outbound::Outbound;
use crate::paging::first_after;
use chat_proto::{PeerFrame, ServerFrame};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// The most names in one presence frame, to keep frames well under the size limit.
const PRESENCE_CHUNK: usize = 4096;

/// A user's sessions here, as [`Hub::sessions_of`] hands them out: most users have one or
/// two, which a message's routing then copies without an allocation.
pub type Sessions = SmallVec<[Outbound; 2]>;

/// The logged-in users of this server. A user may have several sessions at once.
///
/// **Presence frames are pushed to the links under the hub's lock**, so that a link's first
/// frame (everyone logged in here) and every later change reach the peer in the order they
/// happened here.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Vec<Outbound>>,
    /// The links to the other servers, told of each user's first login and last logout.
    watchers: Vec<Outbound<PeerFrame>>,
}

impl Hub {
    pub fn add(&self, user: &str, session: Outbound) {
        let mut inner = self.lock();
        let sessions = inner.sessions.entry(user.to_owned()).or_default();
        sessions.push(session);
        if sessions.len() == 1 {
            let frame = PeerFrame::Online {
                users: vec![user.to_owned()],
                reset: false,
            };
            for link in &inner.watchers {
                link.push(frame.clone());
            }
        }
    }

    pub fn remove(&self, user: &str, session_id: u64) {
        let mut inner = self.lock();
        let Some(list) = inner.sessions.get_mut(user) else {
            return;
        };
        list.retain(|session| session.id() != session_id);
        if list.is_empty() {
            inner.sessions.remove(user);
            let frame = PeerFrame::Offline {
                users: vec![user.to_owned()],
            };
            for link in &inner.watchers {
                link.push(frame.clone());
            }
        }
    }

    /// Tells `link` who is logged in here now, and from now on every change.
    pub fn watch(&self, link: Outbound<PeerFrame>) {
        let mut inner = self.lock();
        let users: Vec<String> = inner.sessions.keys().cloned().collect();
        let mut chunks = users.chunks(PRESENCE_CHUNK);
        let first = chunks.next().unwrap_or_default();
        link.push(PeerFrame::Online {
            users: first.to_vec(),
            reset: true,
        });
        for chunk in chunks {
            link.push(PeerFrame::Online {
                users: chunk.to_vec(),
                reset: false,
            });
        }
        inner.watchers.push(link);
    }

    /// Queues `frame` on every link that has had its first frame. A link that starts later
    /// sends its first frame after this one was queued, so its peer hears of the change that
    /// way: on a link's first frame, the peer forgets what it cached of the groups.
    pub fn tell_links(&self, frame: &PeerFrame) {
        for link in &self.lock().watchers {
            link.push(frame.clone());
        }
    }

    pub fn unwatch(&self, link_id: u64) {
        self.lock().watchers.retain(|link| link.id() != link_id);
    }

    /// The sessions of `user`, if they are logged in here.
    /// Pushes `frame` to every session here. A session too slow to take it is closed, as for
    /// a delivery.
    pub fn tell_sessions(&self, frame: &ServerFrame) -> usize {
        let inner = self.lock();
        let sessions = inner.sessions.values().flatten();
        sessions
            .filter(|session| session.push(frame.clone()))
            .count()
    }

    /// Tells every session here of each change of the farm's ring ([`ServerFrame::RingChanged`]),
    /// until `shutdown`: a client then fails over along the farm as it is, even after servers
    /// came back at new addresses while it sat here.
    pub async fn tell_ring_changes(self: Arc<Self>, farm: Arc<Farm>, shutdown: CancellationToken) {
        let mut views = farm.subscribe();
        let mut told = views.borrow_and_update().ring_info();
        loop {
            tokio::select! {
                changed = views.changed() => if changed.is_err() { return },
                () = shutdown.cancelled() => return,
            }
            let ring = views.borrow_and_update().ring_info();
            if ring != told {
                let n_told = self.tell_sessions(&ServerFrame::RingChanged(ring.clone()));
                tracing::debug!(sessions = n_told, "told sessions the ring changed");
                told = ring;
            }
        }
    }

    /// Pushes `frame` to every session here of each of `users`, but the session `except`:
    /// for what is only shown, never acknowledged (echoes, notices). A session too slow to
    /// take it is closed, as for a delivery.
    pub fn show(&self, users: &[impl AsRef<str>], frame: &ServerFrame, except: Option<u64>) {
        let inner = self.lock();
        let sessions = users
            .iter()
            .filter_map(|user| inner.sessions.get(user.as_ref()))
            .flatten()
            .filter(|session| Some(session.id()) != except);
        for session in sessions {
            session.push(frame.clone());
        }
    }

    pub fn sessions_of(&self, user: &str) -> Sessions {
        self.lock()
            .sessions
            .get(user)
            .map(|sessions| sessions.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn is_online(&self, user: &str) -> bool {
        self.lock().sessions.contains_key(user)
    }

    /// Up to `count` of the users logged in here whose names sort after `after`, in order.
    pub fn users_after(&self, after: Option<&str>, count: usize) -> Vec<String> {
        let inner = self.lock();
        let names = inner.sessions.keys().map(String::as_str);
        first_after(names, after, count)
    }

    /// How many sessions `user` has here.
    pub fn n_sessions(&self, user: &str) -> usize {
        self.lock().sessions.get(user).map_or(0, Vec::len)
    }

    /// How many users are logged in here.
    pub fn n_users(&self) -> usize {
        self.lock().sessions.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
