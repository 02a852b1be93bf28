//! One client connection: the hello, the read loop, and the writer task.
//!
//! The read loop decodes frames and hands each to [`crate::commands`]; it never writes to the
//! socket. The [`Writer`] task owns the socket's write half and drains the session's bounded
//! [`Outbound`] queue. A bad frame closes this one connection, with its reason logged.

use crate::commands::{CommandContext, Session};
use crate::connection::{
    handshake, read_within, send, FrameReader, Secured, Writer, GOODBYE_TIMEOUT, HELLO_TIMEOUT,
};
use crate::limits::RateLimit;
use crate::outbound::Outbound;
use chat_proto::{
    ClientFrame, ErrorCode, ErrorReply, HandshakeBuilder, Hello, Pattern, ServerFrame,
    CLIENT_PROLOGUE, MAX_CLIENT_FRAME_LEN, PROTOCOL_VERSION,
};
use rand_core::OsRng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

type ClientFramed = Secured<ClientFrame, ServerFrame>;

/// What client connections use, and nothing more.
pub struct SessionContext {
    pub commands: Arc<CommandContext>,
    /// The static key of every client handshake.
    pub farm_key: chat_proto::Keypair,
    /// Frames a second per client connection, on average.
    pub max_frames_per_sec: u32,
    /// Cancelled when the server starts to shut down: sessions stop reading requests.
    pub shutdown: CancellationToken,
    /// Cancelled once the delivery writer has flushed: sessions say goodbye.
    pub drained: CancellationToken,
    /// How long a session waits for `drained` before it says goodbye all the same.
    pub shutdown_grace: Duration,
}

/// Serves one client connection until either side closes it. Without a connection `permit`
/// the client is refused at the hello: the server has too many.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let refusal = permit.is_none().then(|| {
        "this server has too many connections; try another server or again later".to_owned()
    });
    // Boxed: the handshake's state is freed once it is done, rather than sized into the
    // session's task for as long as the connection lasts.
    let (outbound, frames, writer) = match Box::pin(greet(stream, &ctx, refusal)).await {
        Ok(framed) => start_writer(framed),
        Err(reason) => {
            tracing::info!(%peer, %reason, "connection refused at hello");
            return;
        }
    };
    let mut session = Session::new(ctx.commands.clone(), outbound.clone(), peer);
    read_requests(frames, &ctx, &mut session, &outbound, peer).await;
    session.logout();
    if let Some(reason) = outbound.close_reason() {
        tracing::debug!(%peer, %reason, "session closed");
    }
    outbound.close("");
    let _ = writer.await;
}

/// Splits `framed` and starts its writer task, draining a new session's outbound queue;
/// returns the queue, the reading half and the writer task. Not async: a value moved out in an
/// async function still takes room in its future, here for as long as the session lasts.
fn start_writer(framed: ClientFramed) -> (Outbound, FrameReader<ClientFrame>, JoinHandle<()>) {
    let (outbound, queue) = Outbound::new();
    let (writer, frames) = Writer::split(framed, outbound.clone(), queue);
    let writer = writer.goodbye(|reason| ServerFrame::Closing { reason });
    (outbound, frames, tokio::spawn(writer.run()))
}

/// Hands the client's frames to `session` until the connection closes or the server shuts
/// down, within the frame rate.
async fn read_requests(
    mut frames: FrameReader<ClientFrame>,
    ctx: &SessionContext,
    session: &mut Session,
    outbound: &Outbound,
    peer: SocketAddr,
) {
    let max_rate = ctx.max_frames_per_sec;
    let mut rate = RateLimit::new(max_rate, max_rate * 2);
    // Frames refused as too fast are themselves limited: a client that keeps sending at more
    // than twice the rate is flooding, and is disconnected.
    let mut refusals = RateLimit::new(max_rate, max_rate * 2);
    loop {
        tokio::select! {
            frame = frames.next() => match frame {
                Some(Ok(frame)) if rate.allow(Instant::now()) => session.handle(frame).await,
                Some(Ok(frame)) => {
                    if !refusals.allow(Instant::now()) {
                        tracing::warn!(%peer, "closing connection: flooding");
                        outbound.close(format!(
                            "flooding: more than twice {max_rate} frames a second"
                        ));
                        return;
                    }
                    refuse_too_fast(outbound, frame, max_rate).await;
                }
                Some(Err(err)) => {
                    tracing::warn!(%peer, %err, "closing connection: unreadable frame");
                    outbound.close(format!("unreadable frame: {err}"));
                    return;
                }
                None => return,
            },
            () = outbound.closed() => return,
            () = ctx.shutdown.cancelled() => {
                // Let the delivery writer flush, so that queued "sent" replies still go out.
                let _ = timeout(ctx.shutdown_grace, ctx.drained.cancelled()).await;
                outbound.close("server is shutting down");
                return;
            }
        }
    }
}

/// Answers a frame that came too fast without doing what it asks.
async fn refuse_too_fast(outbound: &Outbound, frame: ClientFrame, max_rate: u32) {
    if let ClientFrame::Request { id, .. } = frame {
        let refusal = ErrorReply::new(
            ErrorCode::TooFast,
            format!("too many requests: at most {max_rate} a second; slow down"),
        );
        let reply = ServerFrame::Reply {
            id,
            result: Err(refusal),
        };
        outbound.send(reply).await;
    }
}

/// Runs the Noise NX handshake as the responder with the farm key, then exchanges hellos,
/// refusing a client that speaks another protocol version, or any client when there is a
/// `refusal`. The whole must be done within [`HELLO_TIMEOUT`].
async fn greet(
    stream: TcpStream,
    ctx: &SessionContext,
    refusal: Option<String>,
) -> Result<ClientFramed, String> {
    match timeout(HELLO_TIMEOUT, handshake_and_hello(stream, ctx, refusal)).await {
        Ok(greeted) => greeted,
        Err(_) => Err(format!("no handshake and hello within {HELLO_TIMEOUT:?}")),
    }
}

async fn handshake_and_hello(
    stream: TcpStream,
    ctx: &SessionContext,
    refusal: Option<String>,
) -> Result<ClientFramed, String> {
    let noise = HandshakeBuilder::new(Pattern::Nx)
        .prologue(CLIENT_PROLOGUE)
        .local_static(ctx.farm_key.clone())
        .build_responder(&mut OsRng)
        .map_err(|err| format!("handshake failed: {err}"))?;
    let mut framed = handshake(stream, noise, MAX_CLIENT_FRAME_LEN, "handshake failed").await?;
    let hello: Hello = read_within(&mut framed, "hello").await?;
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
    let name = &ctx.commands.name;
    if let Some(refusal) = refusal {
        let reply = Hello {
            refusal: refusal.clone(),
            ..Hello::new(name)
        };
        let _ = timeout(GOODBYE_TIMEOUT, send(&mut framed, reply, "refusal")).await;
        return Err(refusal);
    }
    send(&mut framed, Hello::new(name), "hello").await?;
    Ok(framed.map_codec(chat_proto::SecureCodec::retype))
}
