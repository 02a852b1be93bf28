//! The dialing side: a supervisor that follows the registry and keeps one dial loop per peer
//! that this server must dial.

use super::{link, LinkContext};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The first pause before dialing a peer again; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a TCP connect and the hellos may take together.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the supervisor looks again even when the registry did not change.
const RECHECK: Duration = Duration::from_secs(1);

/// Starts a dial loop for each live peer that this server must dial, until shutdown.
pub async fn supervise(ctx: Arc<LinkContext>) {
    let mut views = ctx.farm.subscribe();
    loop {
        let view = views.borrow_and_update().clone();
        for peer in view.live_peers() {
            if !ctx.links.dials(&peer.name, peer.started_at_ms) {
                continue;
            }
            if ctx.links.lock().dialing.insert(peer.name.clone()) {
                ctx.tracker.spawn(dial_loop(ctx.clone(), peer.name.clone()));
            }
        }
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RECHECK) => {}
            () = ctx.shutdown.cancelled() => return,
        }
    }
}

/// Keeps a link to `peer` up for as long as the registry says it is live and this server is
/// the one to dial it.
async fn dial_loop(ctx: Arc<LinkContext>, peer: String) {
    let mut backoff = MIN_BACKOFF;
    let mut last_error = String::new();
    loop {
        let view = ctx.farm.view();
        let Some(state) = view
            .server(&peer)
            .filter(|state| state.live && ctx.links.dials(&peer, state.started_at_ms))
        else {
            break;
        };
        if ctx.shutdown.is_cancelled() {
            break;
        }
        let Some(link_key) = state.link_key.clone() else {
            break;
        };
        let dialed = dial(
            &ctx,
            &peer,
            &state.peer_addr,
            state.started_at_ms,
            &link_key,
        );
        match timeout(DIAL_TIMEOUT, dialed).await {
            Ok(Ok(framed)) => {
                backoff = MIN_BACKOFF;
                last_error.clear();
                link::run(ctx.clone(), peer.clone(), framed).await;
            }
            Ok(Err(err)) => log_once(&peer, &state.peer_addr, err, &mut last_error),
            Err(_) => log_once(&peer, &state.peer_addr, "timed out".into(), &mut last_error),
        }
        tokio::select! {
            () = tokio::time::sleep(jitter(backoff)) => {}
            () = ctx.shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    ctx.links.lock().dialing.remove(&peer);
}

async fn dial(
    ctx: &LinkContext,
    peer: &str,
    addr: &str,
    started_at_ms: i64,
    link_key: &str,
) -> Result<super::greet::PeerFramed, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|err| format!("cannot connect: {err}"))?;
    ctx.links
        .greet_as_dialer(stream, peer, started_at_ms, link_key)
        .await
}

/// Logs a failure to dial, but not the same failure again and again.
fn log_once(peer: &str, addr: &str, err: String, last_error: &mut String) {
    if *last_error != err {
        tracing::warn!(%peer, %addr, %err, "cannot link to peer; retrying");
        *last_error = err;
    }
}

/// `pause` plus up to half of it again, so that many servers do not redial in step.
fn jitter(pause: Duration) -> Duration {
    let random = RandomState::new().hash_one(std::time::Instant::now());
    let extra_ms = random % (pause.as_millis() as u64 / 2 + 1);
    pause + Duration::from_millis(extra_ms)
}
