//! One client connection: the hello, the read loop, and the writer task.
//!
//! The read loop decodes frames and hands each to [`crate::commands`] through `requests`, which
//! keeps answering pings while a login waits for its password hash; it never writes to the
//! socket. The [`Writer`] task owns the socket's write half and drains the session's bounded
//! [`Outbound`] queue. A bad frame closes this one connection, with its reason logged; so does
//! a connection that does not log in within `--login-timeout-secs`, and one more than
//! `--max-connections-per-address` allow.

mod requests;

use crate::commands::{CommandContext, Session};
use crate::connection::{
    handshake, read_within, send, FrameReader, Secured, Writer, GOODBYE_TIMEOUT, HELLO_TIMEOUT,
};
use crate::limits::{AddressSlots, RateLimit};
use crate::outbound::Outbound;
use crate::telemetry::{self, Limit, Refusal};
use chat_proto::{
    ClientFrame, ErrorCode, ErrorReply, HandshakeBuilder, Hello, Pattern, ServerFrame,
    CLIENT_PROLOGUE, MAX_CLIENT_FRAME_LEN, PROTOCOL_VERSION,
};
use rand_core::OsRng;
use requests::Requests;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};
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
    /// How long a connection may stay open without a user logged in.
    pub login_timeout: Duration,
    /// How long the writer may take to hand a batch to a peer that does not read.
    pub write_timeout: Duration,
    /// Connections open per source address, within their cap.
    pub address_slots: Arc<AddressSlots>,
}

/// Serves one client connection until either side closes it. Without a connection `permit`
/// the client is refused at the hello: the server has too many.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let address_slot = ctx.address_slots.admit(peer.ip());
    let (refusal, counted) = if permit.is_none() {
        let refusal =
            "this server has too many connections; try another server or again later".to_owned();
        (Some(refusal), Refusal::MaxConnections)
    } else if address_slot.is_none() {
        let refusal = format!(
            "too many connections from {}: at most {}; close one or try again later",
            peer.ip(),
            ctx.address_slots.max()
        );
        (Some(refusal), Refusal::PerAddress)
    } else {
        (None, Refusal::Handshake)
    };
    // Boxed: the handshake's state is freed once it is done, rather than sized into the
    // session's task for as long as the connection lasts.
    let (outbound, frames, writer) = match Box::pin(greet(stream, &ctx, refusal)).await {
        Ok(framed) => start_writer(framed, ctx.write_timeout),
        Err(reason) => {
            telemetry::connection_refused(counted);
            tracing::info!(%peer, %reason, "connection refused at hello");
            return;
        }
    };
    telemetry::connection_accepted();
    let session = Session::new(ctx.commands.clone(), outbound.clone(), peer);
    // The session is dropped at the end, which logs its user out.
    read_requests(frames, &ctx, session, &outbound, peer).await;
    if let Some(reason) = outbound.close_reason() {
        tracing::debug!(%peer, %reason, "session closed");
    }
    outbound.close("");
    let _ = writer.await;
}

/// Splits `framed` and starts its writer task, draining a new session's outbound queue;
/// returns the queue, the reading half and the writer task. Not async: a value moved out in an
/// async function still takes room in its future, here for as long as the session lasts.
fn start_writer(
    framed: ClientFramed,
    write_timeout: Duration,
) -> (Outbound, FrameReader<ClientFrame>, JoinHandle<()>) {
    let (outbound, queue) = Outbound::new();
    let (writer, frames) = Writer::split(framed, outbound.clone(), queue);
    let writer = writer
        .goodbye(|reason| ServerFrame::Closing { reason })
        .write_timeout(write_timeout);
    (outbound, frames, tokio::spawn(writer.run()))
}

/// Hands the client's frames to `session` until the connection closes or the server shuts
/// down, within the frame rate, and closes a connection that does not log in in time.
async fn read_requests(
    mut frames: FrameReader<ClientFrame>,
    ctx: &SessionContext,
    session: Session,
    outbound: &Outbound,
    peer: SocketAddr,
) {
    let max_rate = ctx.max_frames_per_sec;
    let mut rate = RateLimit::new(max_rate, max_rate * 2);
    // Frames refused as too fast are themselves limited: a client that keeps sending at more
    // than twice the rate is flooding, and is disconnected.
    let mut refusals = RateLimit::new(max_rate, max_rate * 2);
    let mut requests = Requests::new(session);
    let mut login_deadline = Some(Instant::now() + ctx.login_timeout);
    // Made once, not for every frame: each takes and frees a place among its token's waiters,
    // under a lock, every time it is made and polled.
    let mut closed = std::pin::pin!(outbound.closed());
    let mut shutdown = std::pin::pin!(ctx.shutdown.cancelled());
    loop {
        // Looked at first, as a frame that is ready is taken without polling them.
        if outbound.is_closed() {
            return;
        }
        if ctx.shutdown.is_cancelled() {
            return shut_down(ctx, outbound).await;
        }
        let (reading, busy) = (requests.may_read(), requests.is_busy());
        let deadline = login_deadline.filter(|_| !busy);
        tokio::select! {
            biased;
            frame = frames.next(), if reading => match frame {
                Some(Ok(frame)) if rate.allow(std::time::Instant::now()) => {
                    requests.take(&ctx.commands, outbound, frame).await;
                }
                Some(Ok(frame)) => {
                    if !refusals.allow(std::time::Instant::now()) {
                        telemetry::rate_limited(Limit::Flood);
                        tracing::warn!(%peer, "closing connection: flooding");
                        outbound.close(format!(
                            "flooding: more than twice {max_rate} frames a second"
                        ));
                        return;
                    }
                    telemetry::rate_limited(Limit::Frames);
                    refuse_too_fast(outbound, frame, max_rate).await;
                }
                Some(Err(err)) => {
                    tracing::warn!(%peer, %err, "closing connection: unreadable frame");
                    outbound.close(format!("unreadable frame: {err}"));
                    return;
                }
                None => return,
            },
            session = requests.slow(), if busy => requests.slow_done(session).await,
            () = sleep_until_some(deadline), if deadline.is_some() => {
                let limit = ctx.login_timeout.as_secs();
                tracing::info!(%peer, "closing connection: not logged in within {limit} s");
                outbound.close(format!("not logged in within {limit} s"));
                return;
            }
            () = &mut closed => return,
            () = &mut shutdown => return shut_down(ctx, outbound).await,
        }
        // The time to log in starts again after a logout.
        match requests.logged_in() {
            Some(true) => login_deadline = None,
            Some(false) if login_deadline.is_none() => {
                login_deadline = Some(Instant::now() + ctx.login_timeout);
            }
            _ => {}
        }
    }
}

/// Sleeps until `deadline`, or for ever if there is none. (Made lazily: the loop above makes
/// one for every frame, and a `sleep_until` made there would read the clock each time.)
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Closes the session as the server shuts down, once the delivery writer has flushed, so that
/// queued "sent" replies still go out.
async fn shut_down(ctx: &SessionContext, outbound: &Outbound) {
    let _ = timeout(ctx.shutdown_grace, ctx.drained.cancelled()).await;
    outbound.close("server is shutting down");
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
