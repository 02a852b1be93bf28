//! The way into a link from anywhere in the server: its bounded outbound queue and its counters.

use crate::outbound::{Outbound, Receiver};
use chat_proto::{MessageId, PeerFrame, UserAcks};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How many frames may wait for one peer. A peer that falls this far behind has its link
/// closed and dialed again: the messages it missed are stored for their recipients, and the
/// new link starts with a fresh list of who is logged in.
pub const LINK_QUEUE_LEN: usize = 16_384;
/// How many acknowledgements may wait for one `Acked` frame: with names of 32 bytes and ids
/// of 16, a frame stays well under the link's frame limit.
const MAX_GATHERED_ACKS: usize = 16_384;

/// A cheap, cloneable handle on one link.
#[derive(Clone)]
pub struct LinkHandle {
    queue: Outbound<PeerFrame>,
    peer: Arc<str>,
    stats: Arc<LinkStats>,
    acks: Arc<Mutex<Gathered>>,
}

/// Acknowledgements waiting for the writer to reach the `Acked` frame queued for them.
#[derive(Default)]
struct Gathered {
    acks: Vec<UserAcks>,
    n_ids: usize,
}

/// What crossed a peer's links, in both directions, since this server started.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub frames_out: AtomicU64,
    pub frames_in: AtomicU64,
    /// `Deliver` frames: one per message per server, however many recipients it has there.
    pub delivers_out: AtomicU64,
    pub delivers_in: AtomicU64,
    /// How long the last link's handshake took, in microseconds: a round trip and the key
    /// exchanges (the links' heartbeats are one-way, so this is their round-trip measure).
    pub handshake_us: AtomicU64,
}

impl LinkStats {
    /// Counts a frame written (`out`) or read.
    pub fn count(&self, frame: &PeerFrame, out: bool) {
        let (frames, delivers) = if out {
            (&self.frames_out, &self.delivers_out)
        } else {
            (&self.frames_in, &self.delivers_in)
        };
        frames.fetch_add(1, Ordering::Relaxed);
        if matches!(frame, PeerFrame::Deliver { .. }) {
            delivers.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_handshake(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.handshake_us.store(micros, Ordering::Relaxed);
    }

    pub fn describe(&self) -> String {
        format!(
            "frames_out={} frames_in={} delivers_out={} delivers_in={}",
            self.frames_out.load(Ordering::Relaxed),
            self.frames_in.load(Ordering::Relaxed),
            self.delivers_out.load(Ordering::Relaxed),
            self.delivers_in.load(Ordering::Relaxed),
        )
    }
}

impl LinkHandle {
    pub fn new(peer: &str, stats: Arc<LinkStats>) -> (LinkHandle, Receiver<PeerFrame>) {
        let (queue, frames) = Outbound::with_capacity(LINK_QUEUE_LEN);
        let handle = LinkHandle {
            queue,
            peer: peer.into(),
            stats,
            acks: Arc::default(),
        };
        (handle, frames)
    }

    pub fn id(&self) -> u64 {
        self.queue.id()
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The link's queue itself, for its writer and for the hub.
    pub fn queue(&self) -> &Outbound<PeerFrame> {
        &self.queue
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Queues `frame` without waiting. A full queue closes the link; false if not queued.
    pub fn push(&self, frame: PeerFrame) -> bool {
        self.queue.push(frame)
    }

    /// Queues `user`'s acknowledgements for the peer. They leave in one `Acked` frame with
    /// every other acknowledgement gathered by the time the writer reaches that frame, so a
    /// busy link carries many in each. Too many waiting means the link is too slow: it closes.
    pub fn push_acks(&self, user: String, ids: Vec<MessageId>) -> bool {
        let mut gathered = lock(&self.acks);
        let first = gathered.acks.is_empty();
        gathered.n_ids += ids.len();
        gathered.acks.push(UserAcks { user, ids });
        let too_many = gathered.n_ids > MAX_GATHERED_ACKS;
        drop(gathered);
        if too_many {
            self.close(format!(
                "too slow: more than {MAX_GATHERED_ACKS} acknowledgements were waiting"
            ));
            return false;
        }
        // The frame to be filled; it was already queued if others are waiting.
        !first || self.push(PeerFrame::Acked { acks: Vec::new() })
    }

    /// What the writer sends for an `Acked` frame queued by [`LinkHandle::push_acks`]: every
    /// acknowledgement gathered so far.
    pub fn fill(&self, frame: &mut PeerFrame) {
        if let PeerFrame::Acked { acks } = frame {
            if acks.is_empty() {
                *acks = std::mem::take(&mut *lock(&self.acks)).acks;
            }
        }
    }

    /// Asks the link to close; the first reason is the one logged.
    pub fn close(&self, reason: impl Into<String>) {
        self.queue.close(reason);
    }

    pub async fn closed(&self) {
        self.queue.closed().await;
    }

    pub fn close_reason(&self) -> Option<String> {
        self.queue.close_reason()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
