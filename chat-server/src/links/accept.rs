//! The accepting side: one connection to the peer listener.

use super::link;
use crate::server::Shared;
use chat_proto::LinkHello;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Accepts a link from a server that must dial this one, and runs it.
///
/// The dialer has proved in the handshake that it holds the cluster key. It must also be a
/// live server of the registry, with the start time it registered and the link key of its
/// row: a stale process, or one that claims another's name, is refused.
pub async fn accept(shared: Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let dialer = match shared.links.hear_dialer(stream).await {
        Ok(dialer) => dialer,
        Err(reason) => {
            tracing::warn!(%addr, %reason, "link refused at hello");
            return;
        }
    };
    if !registered(&shared, &dialer.hello, &dialer.link_key).await {
        let reason = format!(
            "{} is not a live server of the registry with this link key, or has restarted since",
            dialer.hello.name
        );
        tracing::warn!(%addr, %reason, "link refused at hello");
        shared.links.refuse(dialer, reason).await;
        return;
    }
    let peer = dialer.hello.name.clone();
    match shared.links.accept(dialer).await {
        Ok(framed) => link::run(shared, peer, framed).await,
        Err(reason) => tracing::warn!(%addr, %reason, "link failed at hello"),
    }
}

/// True if the registry has the dialer, live, with the start time of its hello. A server that
/// just started is not in the last reading yet, so a miss reads the registry again.
async fn registered(shared: &Shared, hello: &LinkHello, link_key: &str) -> bool {
    let matches = |shared: &Shared| {
        shared
            .farm
            .view()
            .server(&hello.name)
            .is_some_and(|server| {
                server.live
                    && server.started_at_ms == hello.started_at_ms
                    && server.link_key.as_deref() == Some(link_key)
            })
    };
    if matches(shared) {
        return true;
    }
    match shared.farm.refresh(&shared.store).await {
        Ok(_) => matches(shared),
        Err(err) => {
            tracing::warn!(%err, "cannot read the registry to check a dialer");
            false
        }
    }
}
