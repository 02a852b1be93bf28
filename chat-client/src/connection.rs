//! One connection to a chat server: opened (see `handshake`), then a reader task, a writer
//! task, and the timers of the heartbeat and of rekeying.
//!
//! **Only the writer task writes to the socket.** Requests and acknowledgements reach it
//! through bounded queues. The reader task matches each reply to its request by id and passes
//! everything else (deliveries, echoes, notices, the server's goodbye, the end of the
//! connection) to the session, in the order it arrived, as [`Incoming`] events.
//!
//! When the connection ends, the reader queues [`Incoming::Lost`] or [`Incoming::Closing`]
//! *before* it fails the requests still waiting, so the session learns why first. A server
//! that stops answering is noticed by the heartbeat (see `heartbeat`), which ends the
//! connection the same way.

use crate::handshake::{self, KeyRefusal, ServerFramed, ServerTrust, REKEY_INTERVAL};
use crate::heartbeat::{self, Heartbeat};
use chat_proto::noise::NoiseError;
use chat_proto::{
    ChatMessage, ClientFrame, ErrorReply, Forwarded, GroupNotice, MessageId, Request, RequestId,
    Response, ServerFrame,
};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long the TCP connect, the handshake and the hello may take together, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closing may wait for queued frames (acknowledgements above all) to be written.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The most ids in one `Ack` frame: the protocol's bound.
pub const MAX_ACK_BATCH: usize = chat_proto::MAX_ACK_IDS;

const FRAME_QUEUE: usize = 64;
const ACK_QUEUE: usize = 1024;
const INCOMING_QUEUE: usize = 256;

pub(crate) type Reply = Result<Response, ErrorReply>;

/// How a connection is made and watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// How long the TCP connect, the handshake and the hello may take together.
    pub timeout: Duration,
    /// How the server is pinged; `None` sends no pings and trusts the socket alone.
    pub heartbeat: Option<Heartbeat>,
    /// Which server keys are accepted.
    pub trust: ServerTrust,
    /// Sent first on the connection, when set (see [`Config::forwarded`]).
    ///
    /// [`Config::forwarded`]: crate::session::Config::forwarded
    pub forwarded: Option<Forwarded>,
}

/// Why a connection could not be made.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} did not answer within {}", duration_text(*.after))]
    Timeout { addr: String, after: Duration },
    #[error("{addr} is not a chat server")]
    NotChatServer { addr: String },
    #[error("{addr} refused the connection: {reason}")]
    Refused { addr: String, reason: String },
    #[error("{addr} speaks protocol version {theirs}; this client speaks version {ours}")]
    Version {
        addr: String,
        theirs: u16,
        ours: u16,
    },
    #[error("{addr} closed the connection during the handshake")]
    ClosedEarly { addr: String },
    /// The server did not take the forwarded address of a front end's user.
    #[error("{addr} did not take the forwarded address: {reason}")]
    Forwarded { addr: String, reason: String },
    #[error("the secure handshake with {addr} failed: {source}")]
    Handshake { addr: String, source: NoiseError },
    /// The server's key is not the one this client trusts. Failover treats the server as not
    /// answering, but never retries forever when every server is refused so.
    #[error(transparent)]
    KeyRefused(#[from] KeyRefusal),
    #[error("bad hello from {addr}: {source}")]
    Frame {
        addr: String,
        source: chat_proto::FrameError,
    },
    #[error("no server answered ({})", join_errors(.0))]
    NoneAnswered(Vec<ConnectError>),
    /// Every server tried presented a key this client refuses.
    #[error("no server could be trusted ({})", join_errors(.0))]
    NoneTrusted(Vec<ConnectError>),
}

impl ConnectError {
    /// Whether the connection was refused for the server's key, not for being unreachable.
    pub fn is_key_refusal(&self) -> bool {
        matches!(
            self,
            ConnectError::KeyRefused(_) | ConnectError::NoneTrusted(_)
        )
    }

    /// The error for a walk over servers that all failed: [`ConnectError::NoneTrusted`] when
    /// every one was refused for its key, [`ConnectError::NoneAnswered`] otherwise.
    pub fn none_of(failures: Vec<ConnectError>) -> ConnectError {
        if !failures.is_empty() && failures.iter().all(ConnectError::is_key_refusal) {
            ConnectError::NoneTrusted(failures)
        } else {
            ConnectError::NoneAnswered(failures)
        }
    }
}

/// A timeout as people say it: whole seconds when it is, milliseconds otherwise.
fn duration_text(duration: Duration) -> String {
    match (duration.as_secs(), duration.subsec_millis()) {
        (1, 0) => "1 second".to_string(),
        (secs, 0) => format!("{secs} seconds"),
        _ => format!("{} ms", duration.as_millis()),
    }
}

fn join_errors(errors: &[ConnectError]) -> String {
    if errors.is_empty() {
        return "no server was given".to_string();
    }
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

/// Why a request got no response.
#[derive(Debug, Error)]
pub enum RequestError {
    /// The server answered with an error; the connection stays open.
    #[error("{0}")]
    Refused(ErrorReply),
    /// The connection ended before the reply came.
    #[error("the connection was lost")]
    ConnectionLost,
}

/// What the server sends unasked, and the end of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message to show and then acknowledge.
    Message(ChatMessage),
    /// A message the user sent from another session: shown, never acknowledged.
    Echo(ChatMessage),
    /// Someone joined or left one of the user's groups: shown, never acknowledged.
    Notice(GroupNotice),
    /// The server says the user's home, `server`, takes them back: time to move there.
    GoHome { server: String },
    /// The farm's ring changed: the servers as they are now.
    Ring(chat_proto::RingInfo),
    /// The server said it is closing the connection, and why.
    Closing(String),
    /// The connection ended without a goodbye, and why.
    Lost(String),
}

/// State shared by the [`Connection`] handle and its reader, writer and heartbeat tasks.
pub(crate) struct Shared {
    /// The requests waiting for a reply. `None` once the connection has ended, so that no
    /// request can start waiting for a reply that will never come.
    pending: Mutex<Option<HashMap<RequestId, oneshot::Sender<Reply>>>>,
    /// The id of the next request, from the session or the heartbeat.
    next_id: AtomicU32,
    /// Why the connection was ended from this side (the writer could not write, the heartbeat
    /// gave up); the first reason wins.
    end_reason: Mutex<Option<String>>,
    /// Cancelled when the connection must end: the writer cannot write, the heartbeat gave up,
    /// or the handle closes or drops the connection. Every task stops on it.
    stop: CancellationToken,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Option<HashMap<RequestId, oneshot::Sender<Reply>>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts waiting for the reply to a new request; `None` once the connection has ended.
    pub(crate) fn expect_reply(&self) -> Option<(RequestId, oneshot::Receiver<Reply>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        self.pending().as_mut()?.insert(id, reply_tx);
        Some((id, reply_rx))
    }

    /// Stops waiting for the reply to `id`; a reply that comes later is ignored.
    pub(crate) fn forget(&self, id: RequestId) {
        if let Some(pending) = self.pending().as_mut() {
            pending.remove(&id);
        }
    }

    /// Ends the connection from this side, for `reason` unless another came first.
    pub(crate) fn end(&self, reason: String) {
        let mut slot = self
            .end_reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.get_or_insert(reason);
        drop(slot);
        self.stop.cancel();
    }

    pub(crate) fn stop(&self) -> &CancellationToken {
        &self.stop
    }
}

/// A live connection: send requests, acknowledge messages, close.
pub struct Connection {
    addr: String,
    server_name: String,
    frames: mpsc::Sender<ClientFrame>,
    acks: mpsc::Sender<MessageId>,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// Ends every task when the handle is dropped without [`Connection::close`].
    stop_on_drop: DropGuard,
}

impl Connection {
    /// Connects to `addr` (`host:port`), makes the handshake, checks the server's key,
    /// exchanges hellos and starts the reader, the writer, the rekey timer, and the heartbeat
    /// when `options` ask for one.
    pub async fn connect(
        addr: &str,
        options: &ConnectOptions,
    ) -> Result<(Connection, mpsc::Receiver<Incoming>), ConnectError> {
        let opening = tokio::time::timeout(options.timeout, handshake::open(addr, &options.trust));
        let (framed, server_name) = opening.await.map_err(|_| ConnectError::Timeout {
            addr: addr.to_string(),
            after: options.timeout,
        })??;
        let (connection, incoming) = Connection::start(addr, server_name, framed, options);
        if let Some(forwarded) = &options.forwarded {
            let said = connection.request(Request::Forwarded(forwarded.clone()));
            match tokio::time::timeout(options.timeout, said).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    return Err(ConnectError::Forwarded {
                        addr: addr.to_string(),
                        reason: err.to_string(),
                    })
                }
                Err(_) => {
                    return Err(ConnectError::Timeout {
                        addr: addr.to_string(),
                        after: options.timeout,
                    })
                }
            }
        }
        Ok((connection, incoming))
    }

    fn start(
        addr: &str,
        server_name: String,
        framed: ServerFramed,
        options: &ConnectOptions,
    ) -> (Connection, mpsc::Receiver<Incoming>) {
        let rekey = framed.codec().rekey_handle();
        let (sink, stream) = framed.split();
        let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE);
        let (acks_tx, acks_rx) = mpsc::channel(ACK_QUEUE);
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU32::new(1),
            end_reason: Mutex::new(None),
            stop: CancellationToken::new(),
        });
        let writer = tokio::spawn(write_frames(sink, frames_rx, acks_rx, shared.clone()));
        let reader = tokio::spawn(read_frames(stream, incoming_tx, shared.clone()));
        let stop = shared.stop.clone();
        tokio::spawn(handshake::rekey_on_timer(rekey, REKEY_INTERVAL, stop));
        if let Some(beat) = options.heartbeat {
            // The heartbeat holds a weak sender, so it never keeps the writer's queue open.
            tokio::spawn(heartbeat::run(beat, shared.clone(), frames_tx.downgrade()));
        }
        let connection = Connection {
            addr: addr.to_string(),
            server_name,
            frames: frames_tx,
            acks: acks_tx,
            stop_on_drop: shared.stop.clone().drop_guard(),
            shared,
            reader,
            writer,
        };
        (connection, incoming_rx)
    }

    /// The address this connection was made to, as given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The name the server gave in its hello.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Sends one request and waits for its reply.
    pub async fn request(&self, body: Request) -> Result<Response, RequestError> {
        let Some((id, reply_rx)) = self.shared.expect_reply() else {
            return Err(RequestError::ConnectionLost);
        };
        let frame = ClientFrame::Request { id, body };
        if self.frames.send(frame).await.is_err() {
            return Err(RequestError::ConnectionLost);
        }
        match reply_rx.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(refusal)) => Err(RequestError::Refused(refusal)),
            Err(_) => Err(RequestError::ConnectionLost),
        }
    }

    /// Queues an acknowledgement; the writer batches whatever is queued into one frame.
    pub async fn ack(&self, id: MessageId) {
        // When the writer has gone the connection is over, and the server will deliver the
        // message again on the next connection: nothing is lost by dropping the ack.
        let _ = self.acks.send(id).await;
    }

    /// Writes what is still queued (within [`CLOSE_TIMEOUT`]), then closes the connection.
    pub async fn close(self) {
        let Connection {
            frames,
            acks,
            reader,
            writer,
            stop_on_drop,
            ..
        } = self;
        drop(frames);
        drop(acks);
        if tokio::time::timeout(CLOSE_TIMEOUT, writer).await.is_err() {
            tracing::debug!("gave up writing the last frames");
        }
        // Dropping the guard stops the reader and the heartbeat.
        drop(stop_on_drop);
        reader.abort();
    }
}

/// The writer task: the only code that writes to the socket after the hello.
///
/// It writes until both queues are closed and drained, or until the connection is stopped
/// (then it gives up at once, even halfway through a write to a server that stopped reading).
async fn write_frames(
    sink: futures::stream::SplitSink<ServerFramed, ClientFrame>,
    frames: mpsc::Receiver<ClientFrame>,
    acks: mpsc::Receiver<MessageId>,
    shared: Arc<Shared>,
) {
    let stop = shared.stop.clone();
    tokio::select! {
        () = write_queued(sink, frames, acks, &shared) => {}
        () = stop.cancelled() => tracing::debug!("the writer stopped"),
    }
}

async fn write_queued(
    mut sink: futures::stream::SplitSink<ServerFramed, ClientFrame>,
    mut frames: mpsc::Receiver<ClientFrame>,
    mut acks: mpsc::Receiver<MessageId>,
    shared: &Shared,
) {
    loop {
        let frame = tokio::select! {
            Some(frame) = frames.recv() => frame,
            Some(id) = acks.recv() => {
                // Batch whatever else is queued right now, without waiting for more.
                let mut ids = vec![id];
                while ids.len() < MAX_ACK_BATCH {
                    match acks.try_recv() {
                        Ok(id) => ids.push(id),
                        Err(_) => break,
                    }
                }
                ClientFrame::Ack { ids }
            }
            else => break,
        };
        if let Err(err) = sink.send(frame).await {
            tracing::debug!("cannot write to the server: {err}");
            shared.end(format!("cannot write: {err}"));
            return;
        }
    }
    if let Err(err) = sink.close().await {
        tracing::debug!("cannot close the connection cleanly: {err}");
    }
}

/// The reader task: matches replies to requests and passes everything else on, in order.
async fn read_frames(
    mut stream: futures::stream::SplitStream<ServerFramed>,
    incoming: mpsc::Sender<Incoming>,
    shared: Arc<Shared>,
) {
    let end = loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = shared.stop.cancelled() => {
                let why = shared
                    .end_reason
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone();
                break Incoming::Lost(why.unwrap_or_else(|| "the connection was closed".into()));
            }
        };
        match frame {
            None => break Incoming::Lost("the server closed the connection".into()),
            Some(Err(err)) => break Incoming::Lost(err.to_string()),
            Some(Ok(ServerFrame::Closing { reason })) => break Incoming::Closing(reason),
            Some(Ok(ServerFrame::GoHome { server, addr })) => {
                tracing::debug!("{server} at {addr} calls this user home");
                if incoming.send(Incoming::GoHome { server }).await.is_err() {
                    break Incoming::Lost("the session ended".into());
                }
            }
            Some(Ok(ServerFrame::RingChanged(ring))) => {
                if incoming.send(Incoming::Ring(ring)).await.is_err() {
                    break Incoming::Lost("the session ended".into());
                }
            }
            Some(Ok(ServerFrame::Deliver(message))) => {
                let message = message.into_message();
                if incoming.send(Incoming::Message(message)).await.is_err() {
                    // Nobody listens any more: the session has ended.
                    break Incoming::Lost("the session ended".into());
                }
            }
            Some(Ok(ServerFrame::Echo(message))) => {
                let echo = Incoming::Echo(message.into_message());
                if incoming.send(echo).await.is_err() {
                    break Incoming::Lost("the session ended".into());
                }
            }
            Some(Ok(ServerFrame::Notice(notice))) => {
                if incoming.send(Incoming::Notice(notice)).await.is_err() {
                    break Incoming::Lost("the session ended".into());
                }
            }
            Some(Ok(ServerFrame::Reply { id, result })) => {
                let waiter = shared.pending().as_mut().and_then(|map| map.remove(&id));
                match waiter {
                    // The request's caller may have given up; that is not an error.
                    Some(waiter) => drop(waiter.send(result)),
                    // A ping answered after the heartbeat gave up on it, say.
                    None => tracing::debug!("a reply to request {id}, which no longer waits"),
                }
            }
        }
    };
    tracing::debug!("connection ended: {end:?}");
    // Tell the session why before failing its waiting requests, so it reports the cause.
    let _ = incoming.send(end).await;
    shared.pending().take();
    shared.stop.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_server_answered_lists_each_failure() {
        let err = ConnectError::NoneAnswered(vec![
            ConnectError::Timeout {
                addr: "a:1".into(),
                after: CONNECT_TIMEOUT,
            },
            ConnectError::NotChatServer { addr: "b:2".into() },
        ]);
        assert_eq!(
            err.to_string(),
            "no server answered (a:1 did not answer within 5 seconds; b:2 is not a chat server)"
        );
    }

    fn refused(addr: &str) -> ConnectError {
        ConnectError::KeyRefused(KeyRefusal::Missing { addr: addr.into() })
    }

    #[test]
    fn only_servers_that_all_refused_for_their_keys_are_untrusted() {
        let unreachable = || ConnectError::NotChatServer { addr: "b:2".into() };
        let all_refused = ConnectError::none_of(vec![refused("a:1"), refused("c:3")]);
        assert!(all_refused.is_key_refusal());
        assert_eq!(
            all_refused.to_string(),
            "no server could be trusted (a:1 presented no key; c:3 presented no key)"
        );
        let mixed = ConnectError::none_of(vec![refused("a:1"), unreachable()]);
        assert!(matches!(mixed, ConnectError::NoneAnswered(_)));
        assert!(!mixed.is_key_refusal());
        let none = ConnectError::none_of(Vec::new());
        assert_eq!(none.to_string(), "no server answered (no server was given)");
    }

    #[test]
    fn timeouts_read_naturally() {
        assert_eq!(duration_text(Duration::from_secs(1)), "1 second");
        assert_eq!(duration_text(Duration::from_secs(5)), "5 seconds");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(duration_text(Duration::from_millis(200)), "200 ms");
    }
}
