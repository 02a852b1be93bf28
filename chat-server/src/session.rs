//! One client connection: the hello, the read loop, and the writer task.
//!
//! The read loop decodes frames and hands each to [`crate::commands`]; it never writes to the
//! socket. The writer task owns the socket's write half and drains the session's bounded
//! [`Outbound`] queue. A bad frame closes this one connection, with its reason logged.

use crate::limits::RateLimit;
use crate::outbound::Outbound;
use crate::server::Shared;
use chat_proto::{
    handshake_codec, ClientFrame, HandshakeBuilder, Hello, Pattern, RekeyHandle, SecureCodec,
    ServerFrame, CLIENT_PROLOGUE, MAX_CLIENT_FRAME_LEN, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use rand_core::OsRng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::timeout;
use tokio_util::bytes::Bytes;
use tokio_util::codec::Framed;

/// How long a new connection has for the handshake and the hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the goodbye (queued frames and the `Closing` frame) may take to write.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

type ClientFramed = Framed<TcpStream, SecureCodec<ClientFrame, ServerFrame>>;

/// The per-connection state that commands read and change.
pub struct Session {
    pub shared: Arc<Shared>,
    pub outbound: Outbound,
    /// The logged-in user, if any.
    pub user: Option<String>,
    pub peer: SocketAddr,
}

/// Serves one client connection until either side closes it. Without a connection `permit`
/// the client is refused at the hello: the server has too many.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let _ = stream.set_nodelay(true);
    let refusal = permit.is_none().then(|| {
        "this server has too many connections; try another server or again later".to_owned()
    });
    let framed = match greet(stream, &shared, refusal).await {
        Ok(framed) => framed,
        Err(reason) => {
            tracing::info!(%peer, %reason, "connection refused at hello");
            return;
        }
    };
    let rekey = framed.codec().rekey_handle();
    let (sink, mut frames) = framed.split();
    let (outbound, queue) = Outbound::new();
    let writer = tokio::spawn(write_frames(sink, queue, outbound.clone(), rekey));
    let mut session = Session {
        shared: shared.clone(),
        outbound: outbound.clone(),
        user: None,
        peer,
    };
    let mut rate = RateLimit::new(shared.max_frames_per_sec, shared.max_frames_per_sec * 2);
    // Frames refused as too fast are themselves limited: a client that keeps sending at more
    // than twice the rate is flooding, and is disconnected.
    let mut refusals = RateLimit::new(shared.max_frames_per_sec, shared.max_frames_per_sec * 2);
    loop {
        tokio::select! {
            frame = frames.next() => match frame {
                Some(Ok(frame)) if rate.allow(Instant::now()) => session.handle(frame).await,
                Some(Ok(frame)) => {
                    if !refusals.allow(Instant::now()) {
                        tracing::warn!(%peer, "closing connection: flooding");
                        outbound.close(format!(
                            "flooding: more than twice {} frames a second",
                            shared.max_frames_per_sec
                        ));
                        break;
                    }
                    session.refuse_too_fast(frame).await;
                }
                Some(Err(err)) => {
                    tracing::warn!(%peer, %err, "closing connection: unreadable frame");
                    outbound.close(format!("unreadable frame: {err}"));
                    break;
                }
                None => break,
            },
            () = outbound.closed() => break,
            () = shared.shutdown.cancelled() => {
                // Let the delivery writer flush, so that queued "sent" replies still go out.
                let _ = timeout(shared.shutdown_grace, shared.drained.cancelled()).await;
                outbound.close("server is shutting down");
                break;
            }
        }
    }
    session.logout();
    if let Some(reason) = outbound.close_reason() {
        tracing::debug!(%peer, %reason, "session closed");
    }
    outbound.close("");
    let _ = writer.await;
}

/// Runs the Noise NX handshake as the responder with the farm key, then exchanges hellos,
/// refusing a client that speaks another protocol version, or any client when there is a
/// `refusal`. The whole must be done within [`HELLO_TIMEOUT`].
async fn greet(
    stream: TcpStream,
    shared: &Shared,
    refusal: Option<String>,
) -> Result<ClientFramed, String> {
    match timeout(HELLO_TIMEOUT, handshake_and_hello(stream, shared, refusal)).await {
        Ok(greeted) => greeted,
        Err(_) => Err(format!("no handshake and hello within {HELLO_TIMEOUT:?}")),
    }
}

async fn handshake_and_hello(
    stream: TcpStream,
    shared: &Shared,
    refusal: Option<String>,
) -> Result<ClientFramed, String> {
    let mut framed = Framed::new(stream, handshake_codec());
    let noise_error = |err| format!("handshake failed: {err}");
    let mut noise = HandshakeBuilder::new(Pattern::Nx)
        .prologue(CLIENT_PROLOGUE)
        .local_static(shared.farm_key.clone())
        .build_responder(&mut OsRng)
        .map_err(noise_error)?;
    let first = match framed.next().await {
        None => return Err("closed before the handshake".into()),
        Some(Err(err)) => return Err(format!("unreadable handshake: {err}")),
        Some(Ok(first)) => first,
    };
    noise.read_message(&first).map_err(noise_error)?;
    let second = noise.write_message(&[]).map_err(noise_error)?;
    framed
        .send(Bytes::from(second))
        .await
        .map_err(|err| format!("handshake not sent: {err}"))?;
    let transport = noise.into_transport().map_err(noise_error)?;
    let mut framed =
        framed.map_codec(|_| SecureCodec::<Hello, Hello>::new(transport, MAX_CLIENT_FRAME_LEN));
    let hello = match framed.next().await {
        None => return Err("closed before hello".into()),
        Some(Err(err)) => return Err(format!("unreadable hello: {err}")),
        Some(Ok(hello)) => hello,
    };
    if hello.magic != Hello::MAGIC {
        return Err("not a chat client".into());
    }
    let refusal = refusal.or_else(|| {
        (hello.version != PROTOCOL_VERSION).then(|| {
            format!(
                "protocol version {} is not supported; this server speaks version \
                 {PROTOCOL_VERSION}",
                hello.version
            )
        })
    });
    if let Some(refusal) = refusal {
        let reply = Hello {
            refusal: refusal.clone(),
            ..Hello::new(&shared.name)
        };
        let _ = timeout(GOODBYE_TIMEOUT, framed.send(reply)).await;
        return Err(refusal);
    }
    framed
        .send(Hello::new(&shared.name))
        .await
        .map_err(|err| format!("hello not sent: {err}"))?;
    Ok(framed.map_codec(SecureCodec::retype))
}

/// The only task that writes to the client's socket.
async fn write_frames(
    mut sink: futures::stream::SplitSink<ClientFramed, ServerFrame>,
    mut queue: mpsc::Receiver<ServerFrame>,
    outbound: Outbound,
    rekey: RekeyHandle,
) {
    let mut last_rekey = Instant::now();
    loop {
        tokio::select! {
            frame = queue.recv() => {
                let Some(frame) = frame else { break };
                rekey.request_if_due(&mut last_rekey, Instant::now());
                // Write everything already queued with one flush.
                let written = async {
                    sink.feed(frame).await?;
                    while let Ok(frame) = queue.try_recv() {
                        sink.feed(frame).await?;
                    }
                    sink.flush().await
                };
                if written.await.is_err() {
                    outbound.close("");
                    return;
                }
            }
            () = outbound.closed() => break,
        }
    }
    let goodbye = async {
        while let Ok(frame) = queue.try_recv() {
            sink.feed(frame).await?;
        }
        if let Some(reason) = outbound.close_reason().filter(|reason| !reason.is_empty()) {
            sink.feed(ServerFrame::Closing { reason }).await?;
        }
        sink.close().await
    };
    let _ = timeout(GOODBYE_TIMEOUT, goodbye).await;
}
