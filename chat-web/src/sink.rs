//! The gateway session's output: each event a text frame for the socket's writer task, and
//! the marks that tell the session when what it emitted has been written.
//!
//! The queue to the writer is bounded. A page that does not read its events fills it, and is
//! then disconnected (`overflow`): what it had not acknowledged stays with the farm, for its
//! next `readlog`. The session never waits on a page to emit, only to acknowledge.

use chat_client::output::{LineSink, Written};
use futures::{Sink, SinkExt};
use std::io;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Events queued for one page before it counts as not reading them.
pub(crate) const EVENT_QUEUE: usize = 1024;

/// What the writer task is handed.
pub(crate) enum Outgoing {
    /// One event, a JSON object.
    Event(String),
    /// Said once every event before it was written.
    Mark(oneshot::Sender<()>),
}

/// The session's side of the queue.
pub(crate) struct WebSink {
    pub(crate) events: mpsc::Sender<Outgoing>,
    /// Cancelled when the page stopped reading, or its socket is gone: the gateway ends.
    pub(crate) overflow: CancellationToken,
}

impl WebSink {
    fn queue(&self, outgoing: Outgoing) -> bool {
        if self.events.try_send(outgoing).is_ok() {
            return true;
        }
        self.overflow.cancel();
        false
    }
}

impl LineSink for WebSink {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        if self.queue(Outgoing::Event(line.to_owned())) {
            Ok(())
        } else {
            let message = "the page does not read its events, or is gone";
            Err(io::Error::new(io::ErrorKind::BrokenPipe, message))
        }
    }

    fn written(&mut self) -> Written {
        let (done, written) = oneshot::channel();
        if !self.queue(Outgoing::Mark(done)) {
            return Box::pin(std::future::ready(false));
        }
        Box::pin(async move { written.await.is_ok() })
    }
}

/// The writer task: sends each event as a text frame, each flushed, and answers the marks.
/// Ends when the queue's senders are gone (then closes the socket) or a send fails.
pub(crate) async fn write<S, M>(
    mut socket: S,
    mut queue: mpsc::Receiver<Outgoing>,
    frame: fn(String) -> M,
    close: M,
) where
    S: Sink<M> + Unpin,
{
    while let Some(outgoing) = queue.recv().await {
        match outgoing {
            Outgoing::Event(event) => {
                if socket.send(frame(event)).await.is_err() {
                    return;
                }
            }
            Outgoing::Mark(done) => {
                let _ = done.send(());
            }
        }
    }
    let _ = socket.send(close).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mark_is_said_only_after_what_came_before_was_sent() {
        let (events, queue) = mpsc::channel(EVENT_QUEUE);
        let overflow = CancellationToken::new();
        let mut sink = WebSink {
            events,
            overflow: overflow.clone(),
        };
        let (frames_tx, mut frames) = futures::channel::mpsc::unbounded::<String>();
        sink.write_line(r#"{"type":"a"}"#).unwrap();
        let written = sink.written();
        let writer = tokio::spawn(write(frames_tx, queue, |event| event, "close".to_string()));
        assert!(written.await);
        use futures::StreamExt;
        assert_eq!(frames.next().await.as_deref(), Some(r#"{"type":"a"}"#));
        drop(sink);
        writer.await.unwrap();
        assert_eq!(frames.next().await.as_deref(), Some("close"));
        assert!(!overflow.is_cancelled());
    }

    #[tokio::test]
    async fn a_page_that_does_not_read_is_let_go() {
        let (events, queue) = mpsc::channel(2);
        let overflow = CancellationToken::new();
        let mut sink = WebSink {
            events,
            overflow: overflow.clone(),
        };
        sink.write_line("1").unwrap();
        sink.write_line("2").unwrap();
        assert!(sink.write_line("3").is_err());
        assert!(overflow.is_cancelled());
        drop(queue);
        assert!(!sink.written().await);
    }
}
