//! One live link: a reader task (this one) and a [`Writer`] task, fed by the link's bounded
//! queue.
//!
//! **Only the writer task writes to the link's socket.** It sends a heartbeat when the link has
//! been idle for [`HEARTBEAT_EVERY`]; the reader drops a link that stays silent for
//! [`DEAD_AFTER`], so a hung peer is noticed even when its TCP connection looks fine.

use super::greet::PeerFramed;
use super::{home, LinkContext, LinkHandle};
use crate::connection::{FrameReader, Writer};
use chat_proto::{PeerFrame, ServerFrame, UserAcks};
use futures::FutureExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::timeout;

/// How long a link may be idle before the writer sends a heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// How long a link may be silent before it counts as dead: three missed heartbeats. Servers
/// notice a hung peer well before its clients do (they miss three pings a second apart), so
/// that a client failing over is not redirected back to the hung server.
const DEAD_AFTER: Duration = Duration::from_millis(1500);
/// The most frames taken one after the other without looking for the link's end.
const READY_IN_A_ROW: u32 = 64;

/// Runs the link to `peer` until it drops or the server shuts down.
pub async fn run(ctx: Arc<LinkContext>, peer: String, framed: PeerFramed) {
    let (link, queue) = LinkHandle::new(&peer, ctx.links.stats_of(&peer));
    let (writer, stream) = Writer::split(framed, link.queue().clone(), queue);
    let counted = link.clone();
    let writer = writer
        .heartbeat(HEARTBEAT_EVERY, || PeerFrame::Heartbeat)
        .on_frame(move |frame| {
            counted.fill(frame);
            counted.stats().count(frame, true);
        });
    // Who is logged in here goes first, then every change, in order; only then may messages
    // be routed over the link.
    ctx.hub.watch(link.queue().clone());
    ctx.links.register(link.clone());
    // What the peer changed while there was no link, it told no one.
    ctx.members.clear();
    ctx.revocations.clear();
    tracing::info!(%peer, "link up");
    let writer = tokio::spawn(writer.run());
    let reason = read_frames(stream, &ctx, &link).await;
    link.close(reason);
    ctx.links.unregister(&link);
    ctx.hub.unwatch(link.id());
    ctx.presence.forget(&peer, link.id());
    // What the peer changes from now on, it cannot tell this server.
    ctx.members.clear();
    ctx.revocations.clear();
    let _ = writer.await;
    let reason = link.close_reason().unwrap_or_default();
    tracing::info!(%peer, %reason, "link down");
}

async fn read_frames(
    mut stream: FrameReader<PeerFrame>,
    ctx: &Arc<LinkContext>,
    link: &LinkHandle,
) -> String {
    let mut in_a_row = 0;
    loop {
        // A frame read already (the rest of a batch) is taken without starting the silence
        // timer, which reads the clock; every so often the link looks up for its end too.
        let ready = if in_a_row < READY_IN_A_ROW {
            stream.next().now_or_never()
        } else {
            None
        };
        let frame = match ready {
            Some(frame) => {
                in_a_row += 1;
                Ok(frame)
            }
            None => {
                in_a_row = 0;
                tokio::select! {
                    frame = timeout(DEAD_AFTER, stream.next()) => frame,
                    () = link.closed() => return String::new(),
                    () = ctx.drained.cancelled() => return "this server is shutting down".into(),
                }
            }
        };
        match frame {
            Err(_) => return format!("peer silent for {DEAD_AFTER:?}"),
            Ok(None) => return "peer closed the link".into(),
            Ok(Some(Err(err))) => return format!("unreadable frame: {err}"),
            Ok(Some(Ok(frame))) => {
                link.stats().count(&frame, false);
                apply(ctx, link, frame).await;
            }
        }
    }
}

/// What a frame from a peer does here.
async fn apply(ctx: &Arc<LinkContext>, link: &LinkHandle, frame: PeerFrame) {
    let peer = link.peer();
    match frame {
        PeerFrame::Online { users, reset } => {
            if reset {
                // The link's first frame: the peer told this link of no change made before it.
                ctx.members.clear();
                ctx.revocations.clear();
            }
            ctx.presence.online(peer, link.id(), users, reset);
        }
        PeerFrame::Offline { users } => ctx.presence.offline(peer, link.id(), users),
        PeerFrame::Deliver {
            message,
            recipients,
        } => ctx.delivery.deliver_relayed(peer, message, &recipients),
        PeerFrame::Acked { acks } => {
            for UserAcks { user, ids } in acks {
                ctx.delivery.ack_owned(&user, &ids);
            }
        }
        PeerFrame::GroupChanged { group } => ctx.members.invalidate(&group),
        PeerFrame::Revoked { user } => ctx.revocations.invalidate(&user),
        PeerFrame::Heartbeat => {}
        PeerFrame::Serving => home::call_back(ctx, peer),
        PeerFrame::Echo { message } => {
            let sender = [message.from.clone()];
            ctx.hub.show(&sender, &ServerFrame::Echo(message), None);
        }
        PeerFrame::Notice { notice, recipients } => {
            ctx.hub
                .show(&recipients, &ServerFrame::Notice(notice), None);
        }
    }
}
