//! The accepting side: one connection to the peer listener.

use super::link;
use crate::server::Shared;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Accepts a link from a server that must dial this one, and runs it.
pub async fn accept(shared: Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    match shared.links.greet_as_acceptor(stream).await {
        Ok((framed, peer)) => link::run(shared, peer, framed).await,
        Err(reason) => tracing::warn!(%addr, %reason, "link refused at hello"),
    }
}
