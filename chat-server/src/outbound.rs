//! The way into a connection from anywhere else in the server: its bounded outbound queue.
//!
//! **Only the connection's writer task writes to its socket.** Everyone else puts frames on the
//! queue with [`Outbound::push`], which never waits: a client (or a peer server) that does not
//! read fast enough to keep its queue from filling up is disconnected with a reason, so that
//! one slow reader never stalls delivery to the others. Whatever a client did not acknowledge
//! is then stored for it; a peer's link is dialed again.
//!
//! The queue takes memory only for the frames waiting in it: it grows as they come, up to its
//! bound, and is let go of whenever the writer empties it, so an idle connection's queue holds
//! nothing. Its lock is held for one push or one pop, never across an `.await`.

use chat_proto::ServerFrame;
use std::collections::VecDeque;
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc, Mutex, MutexGuard,
};
use tokio::sync::Notify;
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

/// The receiving end of a queue, for the connection's writer task.
pub struct Receiver<F = ServerFrame> {
    inner: Arc<Inner<F>>,
}

struct Inner<F> {
    id: u64,
    capacity: usize,
    queue: Mutex<Queue<F>>,
    /// Wakes the receiver when a frame is queued.
    queued: Notify,
    /// Wakes those waiting in [`Outbound::send`] when a full queue has room again.
    room: Notify,
    closed: CancellationToken,
    /// Set with `closed`, for a look that takes no lock (the token's takes one).
    is_closed: AtomicBool,
    /// Why the connection was closed (a client is told in a `Closing` frame); the first reason wins.
    close_reason: Mutex<Option<String>>,
}

struct Queue<F> {
    frames: VecDeque<F>,
    /// False once the receiving end is gone: nothing is queued any more.
    receiving: bool,
}

/// What became of a frame offered to the queue.
enum Pushed<F> {
    Queued,
    Full(F),
    Gone,
}

impl Outbound<ServerFrame> {
    /// A new client session's handle, and the receiving end for its writer task.
    pub fn new() -> (Outbound, Receiver) {
        Outbound::with_capacity(OUTBOUND_QUEUE_LEN)
    }
}

impl<F> Outbound<F> {
    /// A handle whose queue holds `capacity` frames, and the receiving end for the writer.
    pub fn with_capacity(capacity: usize) -> (Outbound<F>, Receiver<F>) {
        let inner = Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            capacity,
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                receiving: true,
            }),
            queued: Notify::new(),
            room: Notify::new(),
            closed: CancellationToken::new(),
            is_closed: AtomicBool::new(false),
            close_reason: Mutex::new(None),
        });
        let receiver = Receiver {
            inner: inner.clone(),
        };
        (Outbound { inner }, receiver)
    }

    /// Identifies the connection, for logs and for removing it from the hub.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Queues `frame` without waiting. Returns false if the connection is gone or was too slow and
    /// has now been closed; the frame was not queued.
    pub fn push(&self, frame: F) -> bool {
        match self.inner.push(frame) {
            Pushed::Queued => true,
            Pushed::Full(_) => {
                self.close(format!(
                    "too slow: {} frames were waiting to be read",
                    self.inner.capacity
                ));
                false
            }
            Pushed::Gone => false,
        }
    }

    /// Queues `frame`, waiting for room. For the session's own replies: a client that does not
    /// read its replies only holds itself up.
    pub async fn send(&self, mut frame: F) -> bool {
        loop {
            // Listening before trying, so that room made in between is not missed.
            let room = self.inner.room.notified();
            let mut room = std::pin::pin!(room);
            room.as_mut().enable();
            match self.inner.push(frame) {
                Pushed::Queued => return true,
                Pushed::Gone => return false,
                Pushed::Full(back) => frame = back,
            }
            tokio::select! {
                () = room => {}
                () = self.inner.closed.cancelled() => return false,
            }
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
        self.inner.is_closed.store(true, Ordering::Release);
        self.inner.closed.cancel();
    }

    /// Whether [`Outbound::close`] was called: a loop that takes what is ready before it
    /// waits on [`Outbound::closed`] looks here first, so that a steady flow of frames does
    /// not keep it from noticing.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed.load(Ordering::Acquire)
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

impl<F> Receiver<F> {
    /// The next frame, once there is one. Cancel-safe: dropped while it waits, it takes none.
    pub async fn recv(&mut self) -> F {
        loop {
            if let Some(frame) = self.try_recv() {
                return frame;
            }
            self.inner.queued.notified().await;
        }
    }

    /// The next frame, if one is queued.
    pub fn try_recv(&mut self) -> Option<F> {
        let mut queue = self.inner.lock();
        let was_full = queue.frames.len() >= self.inner.capacity;
        let frame = queue.frames.pop_front();
        if queue.frames.is_empty() && queue.frames.capacity() > 0 {
            queue.frames = VecDeque::new();
        }
        drop(queue);
        if was_full {
            self.inner.room.notify_waiters();
        }
        frame
    }
}

impl<F> Drop for Receiver<F> {
    fn drop(&mut self) {
        let mut queue = self.inner.lock();
        queue.receiving = false;
        let frames = std::mem::take(&mut queue.frames);
        drop(queue);
        drop(frames);
        self.inner.room.notify_waiters();
    }
}

impl<F> Inner<F> {
    fn lock(&self) -> MutexGuard<'_, Queue<F>> {
        self.queue
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn push(&self, frame: F) -> Pushed<F> {
        let mut queue = self.lock();
        if !queue.receiving {
            return Pushed::Gone;
        }
        if queue.frames.len() >= self.capacity {
            return Pushed::Full(frame);
        }
        queue.frames.push_back(frame);
        drop(queue);
        self.queued.notify_one();
        Pushed::Queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    fn queued<F>(outbound: &Outbound<F>) -> (usize, usize) {
        let queue = outbound.inner.lock();
        (queue.frames.len(), queue.frames.capacity())
    }

    #[tokio::test]
    async fn frames_come_out_in_order_and_an_empty_queue_holds_no_memory() {
        let (outbound, mut receiver) = Outbound::with_capacity(100);
        assert_eq!(queued(&outbound), (0, 0));
        for idx in 0..50 {
            assert!(outbound.push(idx));
        }
        let (len, capacity) = queued(&outbound);
        assert_eq!(len, 50);
        assert!(capacity >= 50);
        for idx in 0..50 {
            assert_eq!(receiver.recv().await, idx);
        }
        assert_eq!(queued(&outbound), (0, 0));
        assert_eq!(receiver.try_recv(), None);
    }

    #[tokio::test]
    async fn a_full_queue_closes_the_connection_as_too_slow() {
        let (outbound, mut receiver) = Outbound::with_capacity(2);
        assert!(outbound.push(1));
        assert!(outbound.push(2));
        assert!(!outbound.push(3));
        let reason = outbound.close_reason().unwrap();
        assert!(reason.starts_with("too slow"), "{reason}");
        timeout(Duration::from_secs(5), outbound.closed())
            .await
            .unwrap();
        assert_eq!(receiver.try_recv(), Some(1));
    }

    #[tokio::test]
    async fn send_waits_for_room_and_push_fails_once_the_receiver_is_gone() {
        let (outbound, mut receiver) = Outbound::with_capacity(1);
        assert!(outbound.push(1));
        let sender = outbound.clone();
        let waiting = tokio::spawn(async move { sender.send(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert_eq!(receiver.recv().await, 1);
        assert!(timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap());
        assert_eq!(receiver.recv().await, 2);
        drop(receiver);
        assert!(!outbound.push(3));
        assert!(!outbound.send(4).await);
        assert_eq!(outbound.close_reason(), None);
    }

    #[tokio::test]
    async fn a_waiting_send_gives_up_when_the_connection_closes() {
        let (outbound, _receiver) = Outbound::with_capacity(1);
        assert!(outbound.push(1));
        let sender = outbound.clone();
        let waiting = tokio::spawn(async move { sender.send(2).await });
        outbound.close("bye");
        assert!(!timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap());
    }
}
