//! The way into a connection from anywhere else in the server: its bounded outbound queue.
//!
//! **Only the connection's writer task writes to its socket.** Everyone else puts frames on the
//! queue with [`Outbound::push`], which never waits: a client (or a peer server) that does not
//! read fast enough to keep its queue from filling up is disconnected with a reason, so that
//! one slow reader never stalls delivery to the others. Whatever a client did not acknowledge
//! is then stored for it; a peer's link is dialed again.

use chat_proto::ServerFrame;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How many frames may wait for one client before it counts as too slow.
pub const OUTBOUND_QUEUE_LEN: usize = 4096;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A cheap, cloneable handle on one connection's outbound queue of `F` frames.
pub struct Outbound<F = ServerFrame> {
    inner: Arc<Inner<F>>,
}

impl<F> Clone for Outbound<F> {
    fn clone(&self) -> Self {
        Outbound {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<F> {
    id: u64,
    capacity: usize,
    frames: mpsc::Sender<F>,
    closed: CancellationToken,
    /// Why the connection was closed (a client is told in a `Closing` frame); the first reason wins.
    close_reason: Mutex<Option<String>>,
}

impl Outbound<ServerFrame> {
    /// A new client session's handle, and the receiving end for its writer task.
    pub fn new() -> (Outbound, mpsc::Receiver<ServerFrame>) {
        Outbound::with_capacity(OUTBOUND_QUEUE_LEN)
    }
}

impl<F> Outbound<F> {
    /// A handle whose queue holds `capacity` frames, and the receiving end for the writer.
    pub fn with_capacity(capacity: usize) -> (Outbound<F>, mpsc::Receiver<F>) {
        let (frames, rx) = mpsc::channel(capacity);
        let inner = Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            capacity,
            frames,
            closed: CancellationToken::new(),
            close_reason: Mutex::new(None),
        };
        (
            Outbound {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// Identifies the connection, for logs and for removing it from the hub.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Queues `frame` without waiting. Returns false if the connection is gone or was too slow and
    /// has now been closed; the frame was not queued.
    pub fn push(&self, frame: F) -> bool {
        match self.inner.frames.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(format!(
                    "too slow: {} frames were waiting to be read",
                    self.inner.capacity
                ));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues `frame`, waiting for room. For the session's own replies: a client that does not
    /// read its replies only holds itself up.
    pub async fn send(&self, frame: F) -> bool {
        tokio::select! {
            sent = self.inner.frames.send(frame) => sent.is_ok(),
            () = self.inner.closed.cancelled() => false,
        }
    }

    /// Asks the connection to close, for `reason`.
    pub fn close(&self, reason: impl Into<String>) {
        let mut slot = self
            .inner
            .close_reason
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if slot.is_none() {
            *slot = Some(reason.into());
        }
        drop(slot);
        self.inner.closed.cancel();
    }

    /// Resolves once [`Outbound::close`] was called.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await;
    }

    pub fn close_reason(&self) -> Option<String> {
        self.inner
            .close_reason
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}
