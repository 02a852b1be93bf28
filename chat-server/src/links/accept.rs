//! The accepting side: one connection to the peer listener.

use super::{link, LinkContext};
use chat_proto::LinkHello;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Accepts a link from a server that must dial this one, and runs it.
///
/// The dialer has proved in the handshake that it holds the cluster key. It must also be a
/// live server of the registry, with the start time it registered and the link key of its
/// row: a stale process, or one that claims another's name, is refused.
pub async fn accept(ctx: Arc<LinkContext>, stream: TcpStream, addr: SocketAddr) {
    let dialer = match ctx.links.hear_dialer(stream).await {
        Ok(dialer) => dialer,
        Err(reason) => {
            tracing::warn!(%addr, %reason, "link refused at hello");
            return;
        }
    };
    if !registered(&ctx, &dialer.hello, &dialer.link_key).await {
        let reason = format!(
            "{} is not a live server of the registry with this link key, or has restarted since",
            dialer.hello.name
        );
        tracing::warn!(%addr, %reason, "link refused at hello");
        ctx.links.refuse(dialer, reason).await;
        return;
    }
    let peer = dialer.hello.name.clone();
    match ctx.links.accept(dialer).await {
        Ok(framed) => link::run(ctx, peer, framed).await,
        Err(reason) => tracing::warn!(%addr, %reason, "link failed at hello"),
    }
}

/// True if the registry has the dialer, live, with the start time of its hello. A server that
/// just started is not in the last reading yet, so a miss reads the registry again.
async fn registered(ctx: &LinkContext, hello: &LinkHello, link_key: &str) -> bool {
    let matches = |ctx: &LinkContext| {
        ctx.farm.view().server(&hello.name).is_some_and(|server| {
            server.live
                && server.started_at_ms == hello.started_at_ms
                && server.link_key.as_deref() == Some(link_key)
        })
    };
    if matches(ctx) {
        return true;
    }
    match ctx.farm.refresh(&ctx.store).await {
        Ok(_) => matches(ctx),
        Err(err) => {
            tracing::warn!(%err, "cannot read the registry to check a dialer");
            false
        }
    }
}
