//! [`Writer`]: the one task that writes to a connection's socket, for client sessions and
//! links alike.
//!
//! **Only this task writes to the socket.** Everyone else queues frames on the connection's
//! [`Outbound`]. The writer writes everything already queued with one flush, keeps the
//! connection's rekey clock, and, once the connection closes, writes what is still queued and
//! its last frame within [`GOODBYE_TIMEOUT`]. A write blocked on a peer that stopped reading
//! (its socket buffer full) is abandoned when the connection closes, or once it has taken
//! longer than the write timeout ([`WRITE_TIMEOUT`] unless set): then the connection is
//! closed, so that a peer keeping its TCP window shut does not hold its socket and task.

use super::halves::{self, FrameReader, FrameWriter};
use super::{Secured, GOODBYE_TIMEOUT, WRITE_TIMEOUT};
use crate::outbound::{Outbound, Receiver};
use chat_proto::{Frame, FrameError, RekeyHandle};
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// What the writer calls with every frame it writes.
type FrameHook<F> = Box<dyn FnMut(&mut F) + Send>;

/// Writes the frames queued for one connection, until it closes.
pub struct Writer<Out> {
    sink: FrameWriter<Out>,
    queue: Receiver<Out>,
    outbound: Outbound<Out>,
    rekey: RekeyHandle,
    /// The frame to send when nothing was queued for so long, if any.
    heartbeat: Option<(Duration, fn() -> Out)>,
    /// Called with every frame before it is written: to count them, or to fill one in.
    on_frame: Option<FrameHook<Out>>,
    /// The last frame, made from the reason the connection closed (if it has one).
    goodbye: Option<fn(String) -> Out>,
    /// The longest one batch may take to be written and flushed.
    write_timeout: Duration,
    /// The frame taken off the queue but not yet handed to the sink: a write abandoned when
    /// the connection closes leaves it here, for the goodbye to write first.
    unsent: Option<Out>,
}

impl<Out: Frame> Writer<Out> {
    /// Splits `framed`: the writer takes its sending half and drains `queue`, the receiving end
    /// of `outbound`; the caller keeps the reading half.
    pub fn split<In>(
        framed: Secured<In, Out>,
        outbound: Outbound<Out>,
        queue: Receiver<Out>,
    ) -> (Self, FrameReader<In>) {
        let (stream, sink) = halves::split(framed);
        let rekey = sink.rekey_handle();
        let writer = Writer {
            sink,
            queue,
            outbound,
            rekey,
            heartbeat: None,
            on_frame: None,
            goodbye: None,
            write_timeout: WRITE_TIMEOUT,
            unsent: None,
        };
        (writer, stream)
    }

    /// Sends `frame()` whenever nothing was queued for `idle`.
    pub fn heartbeat(mut self, idle: Duration, frame: fn() -> Out) -> Self {
        self.heartbeat = Some((idle, frame));
        self
    }

    /// Calls `hook` with every frame just before it is written (not with those of the
    /// goodbye); it may change the frame.
    pub fn on_frame(mut self, hook: impl FnMut(&mut Out) + Send + 'static) -> Self {
        self.on_frame = Some(Box::new(hook));
        self
    }

    /// Ends with `frame(reason)` when the connection was closed for a reason that is not empty.
    pub fn goodbye(mut self, frame: fn(String) -> Out) -> Self {
        self.goodbye = Some(frame);
        self
    }

    /// Closes the connection when a batch takes longer than `limit` to write.
    pub fn write_timeout(mut self, limit: Duration) -> Self {
        self.write_timeout = limit;
        self
    }

    /// Writes until the connection closes, then says goodbye. A write that fails closes the
    /// connection without one; a frame too large to encode closes it with one.
    pub async fn run(mut self) {
        let outbound = self.outbound.clone();
        // Made once: one made for every frame takes and frees its place among the token's
        // waiters each time, under a lock.
        let mut closed = std::pin::pin!(outbound.closed());
        let mut last_rekey = Instant::now();
        loop {
            if outbound.is_closed() {
                break;
            }
            // A frame that is ready is taken without a look at `closed` (a lock): under load
            // there nearly always is one, and the look above comes first.
            let frame = tokio::select! {
                biased;
                frame = self.next_frame() => frame,
                () = &mut closed => break,
            };
            self.rekey.request_if_due(&mut last_rekey, Instant::now());
            self.unsent = Some(frame);
            let limit = self.write_timeout;
            tokio::select! {
                written = timeout(limit, self.write_queued()) => match written {
                    Ok(Ok(())) => {}
                    Ok(Err(FrameError::TooLarge { max })) => {
                        // Nothing of that frame was written: the connection can still say why
                        // it closes, rather than vanish.
                        tracing::warn!(max, "closing a connection: a frame too large to send");
                        outbound.close(format!(
                            "the server had a frame too large to send (over {max} bytes)"
                        ));
                        break;
                    }
                    Ok(Err(err)) => {
                        outbound.close(format!("cannot write: {err}"));
                        return;
                    }
                    Err(_) => {
                        tracing::info!("closing connection: the peer read nothing for {limit:?}");
                        outbound.close(format!("not reading: nothing was read for {limit:?}"));
                        return;
                    }
                },
                () = &mut closed => break,
            }
        }
        // Boxed: the goodbye's state is needed once, at the end, not in every writer's task.
        let _ = Box::pin(timeout(GOODBYE_TIMEOUT, self.say_goodbye())).await;
    }

    /// The next frame to write: the next one queued, or a heartbeat once the connection has
    /// been idle long enough.
    async fn next_frame(&mut self) -> Out {
        let Some((idle, heartbeat)) = self.heartbeat else {
            return self.queue.recv().await;
        };
        // A frame queued already is taken without starting the idle timer, which reads the
        // clock: under load, the queue is seldom empty.
        if let Some(frame) = self.queue.try_recv() {
            return frame;
        }
        timeout(idle, self.queue.recv())
            .await
            .unwrap_or_else(|_| heartbeat())
    }

    /// Writes the unsent frame and everything already queued behind it, or queued while the
    /// writer lets the other woken tasks run once, with one flush (or one write per
    /// [`halves::WRITE_BATCH`] bytes in a long burst). Abandoned (dropped) at
    /// any point, it loses no frame: the one it holds stays unsent, and what is encoded stays
    /// in the sink's buffer.
    async fn write_queued(&mut self) -> Result<(), FrameError> {
        let mut yielded = false;
        while self.unsent.is_some() {
            self.sink.make_room().await?;
            if let Some(mut frame) = self.unsent.take() {
                if let Some(on_frame) = &mut self.on_frame {
                    on_frame(&mut frame);
                }
                self.sink.feed(frame)?;
            }
            self.unsent = self.queue.try_recv();
            if self.unsent.is_none() && !yielded {
                // Once, before the flush: the tasks already woken (readers of other
                // connections, sessions' requests) run first and may queue more frames here,
                // which then share this write. One write system call costs more than a
                // round of the scheduler.
                yielded = true;
                tokio::task::yield_now().await;
                self.unsent = self.queue.try_recv();
            }
        }
        self.sink.flush().await
    }

    /// Writes what is still queued, then the goodbye frame, and closes the socket.
    async fn say_goodbye(&mut self) -> Result<(), FrameError> {
        let mut unsent = self.unsent.take();
        while let Some(frame) = unsent.take().or_else(|| self.queue.try_recv()) {
            self.sink.make_room().await?;
            self.sink.feed(frame)?;
        }
        let reason = self
            .outbound
            .close_reason()
            .filter(|reason| !reason.is_empty());
        if let (Some(goodbye), Some(reason)) = (self.goodbye, reason) {
            self.sink.feed(goodbye(reason))?;
        }
        self.sink.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::halves::tests::connected;
    use chat_proto::ServerFrame;

    #[tokio::test]
    async fn a_frame_too_large_to_send_closes_with_a_reason() {
        let (mut client, server) = connected().await;
        let (outbound, queue) = Outbound::new();
        let (writer, _reader) = Writer::split(server, outbound.clone(), queue);
        let writer = writer.goodbye(|reason| ServerFrame::Closing { reason });
        let run = tokio::spawn(writer.run());
        let pong = || ServerFrame::Reply {
            id: 1,
            result: Ok(chat_proto::Response::Pong),
        };
        assert!(outbound.push(pong()));
        assert!(outbound.push(ServerFrame::Closing {
            reason: "x".repeat(chat_proto::MAX_FRAME_LEN + 1),
        }));
        assert!(outbound.push(pong()));
        let mut received = Vec::new();
        while let Some(frame) = futures::StreamExt::next(&mut client).await {
            received.push(frame.unwrap());
        }
        run.await.unwrap();
        let reason = "the server had a frame too large to send (over 1048576 bytes)".to_owned();
        assert_eq!(
            received,
            [pong(), pong(), ServerFrame::Closing { reason }],
            "what was queued around it still goes out, then the reason"
        );
    }

    /// Every connection has a writer task for its whole life, so its size counts: a value held
    /// across an `.await` (or moved out too late) grows every one of them.
    #[tokio::test]
    async fn a_writer_task_stays_small() {
        let (_client, server) = connected().await;
        let (outbound, queue) = Outbound::new();
        let (writer, _reader) = Writer::split(server, outbound, queue);
        let run = writer
            .goodbye(|reason| ServerFrame::Closing { reason })
            .run();
        // 1,024 bytes with Rust 1.95 and tokio 1.54.
        let size = std::mem::size_of_val(&run);
        assert!(size <= 1536, "a writer task's future is {size} bytes");
    }
}
