//! The gateway session's output: each event a text frame for the socket's writer task, and
//! the marks that tell the session when the page has taken what it emitted.
//!
//! The session asks for a mark before it acknowledges a message or confirms a `readlog`
//! batch. The writer sends it to the page as `{"type":"mark","mark":N}` after the events
//! before it, and the page answers `{"command":"marked","mark":N}` once it has handled them
//! (a page handles its frames in order): only then does the farm hear that the messages were
//! shown. A page that does not answer a mark within [`MARK_TIMEOUT`] is let go, and what it
//! had not confirmed stays with the farm, for its next `readlog`.
//!
//! The queue to the writer is bounded. A page that does not read its events fills it, and is
//! then disconnected (`overflow`) the same way. The session never waits on a page to emit,
//! only to acknowledge.

use chat_client::output::{LineSink, Written};
use futures::{Sink, SinkExt};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Events queued for one page before it counts as not reading them.
pub(crate) const EVENT_QUEUE: usize = 1024;

/// How long a page may take to answer a mark.
pub(crate) const MARK_TIMEOUT: Duration = Duration::from_secs(10);

/// The marks sent to a page and not answered yet, by number; shared by the writer, which
/// sends them, and the reader of the page's frames, which hears the answers.
#[derive(Default)]
pub(crate) struct Marks {
    state: Mutex<MarkState>,
}

#[derive(Default)]
struct MarkState {
    next: u64,
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Marks {
    /// Numbers a new mark, whose `done` is said once the page answers it or a later one.
    fn number(&self, done: oneshot::Sender<()>) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.next += 1;
        let mark = state.next;
        state.waiting.insert(mark, done);
        mark
    }

    /// The page answered `mark`: it has handled everything up to it.
    pub(crate) fn answered(&self, mark: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let later = state.waiting.split_off(&mark.saturating_add(1));
        let done = std::mem::replace(&mut state.waiting, later);
        drop(state);
        for (_, done) in done {
            let _ = done.send(());
        }
    }
}

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
        let overflow = self.overflow.clone();
        Box::pin(async move {
            match tokio::time::timeout(MARK_TIMEOUT, written).await {
                Ok(answered) => answered.is_ok(),
                Err(_) => {
                    tracing::debug!("a page did not answer a mark in time");
                    overflow.cancel();
                    false
                }
            }
        })
    }
}

/// The writer task: sends each event as a text frame, each flushed, and each mark after the
/// events before it. Ends when the queue's senders are gone (then closes the socket) or a
/// send fails.
pub(crate) async fn write<S, M>(
    mut socket: S,
    mut queue: mpsc::Receiver<Outgoing>,
    marks: Arc<Marks>,
    frame: fn(String) -> M,
    close: M,
) where
    S: Sink<M> + Unpin,
{
    while let Some(outgoing) = queue.recv().await {
        let text = match outgoing {
            Outgoing::Event(event) => event,
            Outgoing::Mark(done) => format!(r#"{{"type":"mark","mark":{}}}"#, marks.number(done)),
        };
        if socket.send(frame(text)).await.is_err() {
            return;
        }
    }
    let _ = socket.send(close).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose queue holds `capacity` events, its queue, and its overflow token.
    fn sink(capacity: usize) -> (WebSink, mpsc::Receiver<Outgoing>, CancellationToken) {
        let (events, queue) = mpsc::channel(capacity);
        let overflow = CancellationToken::new();
        let sink = WebSink {
            events,
            overflow: overflow.clone(),
        };
        (sink, queue, overflow)
    }

    #[tokio::test]
    async fn a_mark_is_said_once_the_page_answers_it_after_what_came_before() {
        let (mut sink, queue, overflow) = sink(EVENT_QUEUE);
        let (frames_tx, mut frames) = futures::channel::mpsc::unbounded::<String>();
        sink.write_line(r#"{"type":"a"}"#).unwrap();
        let written = sink.written();
        let marks = Arc::new(Marks::default());
        let writer = tokio::spawn(write(
            frames_tx,
            queue,
            marks.clone(),
            |event| event,
            "close".to_string(),
        ));
        use futures::StreamExt;
        assert_eq!(frames.next().await.as_deref(), Some(r#"{"type":"a"}"#));
        assert_eq!(
            frames.next().await.as_deref(),
            Some(r#"{"type":"mark","mark":1}"#)
        );
        marks.answered(1);
        assert!(written.await, "the page answered the mark");
        drop(sink);
        writer.await.unwrap();
        assert_eq!(frames.next().await.as_deref(), Some("close"));
        assert!(!overflow.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_that_does_not_answer_its_marks_is_let_go() {
        let (mut sink, _queue, overflow) = sink(EVENT_QUEUE);
        assert!(!sink.written().await, "no answer within the mark timeout");
        assert!(overflow.is_cancelled());
    }

    #[test]
    fn an_answer_covers_every_mark_up_to_it() {
        let marks = Marks::default();
        let (first, mut first_rx) = oneshot::channel();
        let (second, mut second_rx) = oneshot::channel();
        let (third, mut third_rx) = oneshot::channel();
        assert_eq!(
            [
                marks.number(first),
                marks.number(second),
                marks.number(third)
            ],
            [1, 2, 3]
        );
        marks.answered(2);
        assert!(first_rx.try_recv().is_ok() && second_rx.try_recv().is_ok());
        assert!(third_rx.try_recv().is_err(), "mark 3 is not answered yet");
    }

    #[tokio::test]
    async fn a_page_that_does_not_read_is_let_go() {
        let (mut sink, queue, overflow) = sink(2);
        sink.write_line("1").unwrap();
        sink.write_line("2").unwrap();
        assert!(sink.write_line("3").is_err());
        assert!(overflow.is_cancelled());
        drop(queue);
        assert!(!sink.written().await);
    }
}
