//! The hot loop of a farm connection: one reader task and one writer task, as in the real
//! client, joined by a bounded queue of acknowledgements.
//!
//! The **reader** checks every delivery against the [`Ledger`], records its latency, and queues
//! its id for acknowledgement; it notes every `Sent` reply. The **writer** is the only task that
//! writes to the socket: it sends the connection's messages while its sender's window has room,
//! and batches the queued acknowledgements into `Ack` frames as the real client does (whatever
//! is queued at that moment, up to `MAX_ACK_BATCH` ids). It flushes once per burst of frames.

use crate::farm::Conn;
use crate::ledger::{Ledger, Outgoing};
use crate::report::Latencies;
use crate::stop_watch::StopWatch;
use chat_client::connection::MAX_ACK_BATCH;
use chat_client::handshake::ServerFramed;
use chat_proto::{
    Batch, ClientFrame, MessageId, Recipient, Request, RequestId, Response, ServerFrame,
};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Acknowledgements queued between the reader and the writer (the real client's bound).
const ACK_QUEUE: usize = 1024;
/// The most frames written before a flush.
const MAX_BURST: usize = 64;
/// How long the writer may take to write what is queued at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one connection sends: messages `0..messages` of ledger sender `sender`, to `to`.
#[derive(Debug, Clone)]
pub struct Sending {
    pub sender: usize,
    pub to: Recipient,
    pub size: usize,
}

/// A connection's part in the workload.
#[derive(Debug, Clone)]
pub struct Role {
    /// Its receiving slot in the ledger.
    pub slot: u32,
    pub sending: Option<Sending>,
}

/// A running connection: its reader and writer tasks, and what stops them.
pub struct Flow {
    pub reader: JoinHandle<Latencies>,
    pub writer: JoinHandle<()>,
    pub stop: CancellationToken,
}

impl Flow {
    /// Starts the reader and the writer of a farm connection; the reader records into
    /// `latencies`.
    pub fn start(conn: Conn, ledger: Arc<Ledger>, role: Role, latencies: Latencies) -> Flow {
        let first_id = conn.next_request_id();
        let (sink, stream) = conn.framed.split();
        let (acks_tx, acks_rx) = mpsc::channel(ACK_QUEUE);
        let stop = CancellationToken::new();
        let reader = tokio::spawn(read(
            stream,
            ledger.clone(),
            role.clone(),
            first_id,
            acks_tx,
            stop.clone(),
            latencies,
        ));
        let writer = tokio::spawn(write(sink, ledger, role, first_id, acks_rx, stop.clone()));
        Flow {
            reader,
            writer,
            stop,
        }
    }

    /// Stops both tasks, writing what is queued, and returns the latencies of the deliveries
    /// this connection received.
    pub async fn finish(self) -> Latencies {
        self.stop.cancel();
        let _ = self.writer.await;
        self.reader.await.unwrap_or_default()
    }
}

async fn read(
    mut stream: SplitStream<ServerFramed>,
    ledger: Arc<Ledger>,
    role: Role,
    first_id: RequestId,
    acks: mpsc::Sender<MessageId>,
    stop: CancellationToken,
    mut latencies: Latencies,
) -> Latencies {
    let mut watch = StopWatch::new(&stop);
    loop {
        let Some(frame) = watch.next(&mut stream).await else {
            break;
        };
        match frame {
            Some(Ok(ServerFrame::Deliver(message))) => {
                ledger.received(&message.text, role.slot, &mut latencies);
                if acks.send(message.id).await.is_err() {
                    break;
                }
            }
            Some(Ok(ServerFrame::Reply { id, result })) => {
                let Some(sending) = &role.sending else {
                    ledger.error(format!("a reply to request {id}, which was never sent"));
                    continue;
                };
                let seq = id.wrapping_sub(first_id);
                match result {
                    Ok(Response::Sent { .. }) => ledger.sent(sending.sender, seq),
                    Ok(other) => ledger.abandon(sending.sender, seq, &format!("{other:?}")),
                    Err(refusal) => ledger.abandon(sending.sender, seq, &refusal.message),
                }
            }
            // The load stays where it logged in; a returning home is not measured here. Echoes
            // and notices are not deliveries: nothing to count or acknowledge.
            Some(Ok(
                ServerFrame::GoHome { .. }
                | ServerFrame::RingChanged(_)
                | ServerFrame::Echo(_)
                | ServerFrame::Notice(_),
            )) => {}
            Some(Ok(ServerFrame::Closing { reason })) => {
                if !stop.is_cancelled() {
                    ledger.error(format!("the server closed a connection: {reason}"));
                }
                break;
            }
            Some(Err(err)) => {
                ledger.error(format!("a bad frame: {err}"));
                break;
            }
            None => {
                ledger.error("a server closed a connection".to_string());
                break;
            }
        }
    }
    latencies
}

/// The next frame to write, if one is ready without waiting.
fn ready_frame(acks: &mut mpsc::Receiver<MessageId>, next: &mut NextSend) -> Option<ClientFrame> {
    if let Ok(id) = acks.try_recv() {
        return Some(ack_batch(id, acks));
    }
    let seq = next.outgoing.try_take()?;
    Some(next.frame(seq))
}

/// An `Ack` frame with `first` and whatever else is queued now, up to `MAX_ACK_BATCH` ids.
fn ack_batch(first: MessageId, acks: &mut mpsc::Receiver<MessageId>) -> ClientFrame {
    let mut ids = vec![first];
    while ids.len() < MAX_ACK_BATCH {
        match acks.try_recv() {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
    }
    ClientFrame::Ack { ids }
}

/// The messages a writer has still to send, as frames.
struct NextSend {
    outgoing: Outgoing,
    ledger: Arc<Ledger>,
    sending: Option<Sending>,
    first_id: RequestId,
}

impl NextSend {
    fn frame(&self, seq: u32) -> ClientFrame {
        let sending = self
            .sending
            .as_ref()
            .expect("only a sending connection has messages to take");
        ClientFrame::Request {
            id: self.first_id.wrapping_add(seq),
            body: Request::Send {
                id: MessageId::new(),
                to: sending.to.clone(),
                text: self.ledger.text(sending.sender, seq, sending.size),
            },
        }
    }
}

async fn write(
    mut sink: SplitSink<ServerFramed, Batch<ClientFrame>>,
    ledger: Arc<Ledger>,
    role: Role,
    first_id: RequestId,
    mut acks: mpsc::Receiver<MessageId>,
    stop: CancellationToken,
) {
    let mut next = NextSend {
        outgoing: Outgoing::new(
            ledger.clone(),
            role.sending.as_ref().map(|sending| sending.sender),
        ),
        ledger: ledger.clone(),
        sending: role.sending,
        first_id,
    };
    // Made once, and polled last: each one made takes and frees a place among the token's
    // waiters, under a lock.
    let mut stopped = std::pin::pin!(stop.cancelled());
    loop {
        let first = tokio::select! {
            biased;
            Some(id) = acks.recv() => ack_batch(id, &mut acks),
            seq = next.outgoing.take() => next.frame(seq),
            () = &mut stopped => break,
        };
        // What is ready goes as one batch: one encrypted message, as the real client's
        // server writes them.
        let mut burst = vec![first];
        while burst.len() < MAX_BURST {
            match ready_frame(&mut acks, &mut next) {
                Some(frame) => burst.push(frame),
                None => break,
            }
        }
        let burst = sink.send(Batch(burst));
        if let Err(err) = burst.await {
            ledger.error(format!("cannot write to the server: {err}"));
            return;
        }
    }
    // Acknowledge what was delivered before the end, then close.
    let goodbye = async {
        while let Ok(id) = acks.try_recv() {
            sink.feed(Batch(vec![ack_batch(id, &mut acks)])).await?;
        }
        sink.close().await
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
}
