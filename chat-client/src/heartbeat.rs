//! Noticing a server that hangs: a ping every interval, and a connection ended when the server
//! has not answered for [`Heartbeat::misses`] intervals.
//!
//! A crashed server closes its sockets, and the reader notices at once. A hung one (stopped,
//! deadlocked, cut off by the network) leaves the socket open and silent, so the client asks:
//! it sends `Request::Ping` once per interval and waits up to one interval for the reply. Once
//! the last answer is `misses` intervals old (three missed heartbeats, by default three
//! seconds), the connection is ended from this side, and the reader reports it as lost like any
//! other end. A server that hangs is therefore left 2 to 3 intervals after it stopped: its last
//! answer came at most one interval before it hung.
//!
//! The heartbeat never writes to the socket itself: its pings go through the writer's queue,
//! like every request. A queue too full to take a ping counts as a miss, since a writer that
//! cannot get rid of its frames is stuck on the same server.

use crate::connection::Shared;
use chat_proto::{ClientFrame, Request};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;

/// How often the server is pinged, and how many unanswered pings in a row end the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Between two pings, and how long each may wait for its answer.
    pub interval: Duration,
    /// Unanswered pings in a row after which the server counts as dead; at least one.
    pub misses: u32,
}

impl Default for Heartbeat {
    fn default() -> Heartbeat {
        Heartbeat {
            interval: Duration::from_millis(1000),
            misses: 3,
        }
    }
}

/// Why the heartbeat ended a connection, as [`crate::connection::Incoming::Lost`] reports it.
fn silence_reason(misses: u32) -> String {
    format!("no answer to {misses} pings in a row")
}

/// Whether a connection's end, as `Incoming::Lost` gave it, was the heartbeat giving up on a
/// silent server (and not the server closing or the socket failing). The load generator
/// counts these as clients dropped by their own heartbeat.
pub fn ended_by_silence(reason: &str) -> bool {
    reason.starts_with("no answer to ") && reason.ends_with(" pings in a row")
}

/// Pings until the connection stops, or ends it when the server stops answering.
pub(crate) async fn run(
    heartbeat: Heartbeat,
    shared: Arc<Shared>,
    frames: mpsc::WeakSender<ClientFrame>,
) {
    let stop = shared.stop().clone();
    tokio::select! {
        () = ping(heartbeat, &shared, frames) => {}
        () = stop.cancelled() => {}
    }
}

async fn ping(heartbeat: Heartbeat, shared: &Shared, frames: mpsc::WeakSender<ClientFrame>) {
    let misses = heartbeat.misses.max(1);
    let silence_limit = heartbeat.interval * misses;
    // The hello has just shown that the server is alive: the first ping waits one interval.
    let mut last_answer = Instant::now();
    let mut next_ping = last_answer + heartbeat.interval;
    loop {
        // The server is dead the moment its last answer is `silence_limit` old, whether or not
        // a ping is due then.
        let dead_at = last_answer + silence_limit;
        if next_ping >= dead_at {
            tokio::time::sleep_until(dead_at).await;
            shared.end(silence_reason(misses));
            return;
        }
        tokio::time::sleep_until(next_ping).await;
        next_ping = Instant::now() + heartbeat.interval;
        // The session has let the connection go: nothing to watch any more.
        let Some(frames) = frames.upgrade() else {
            return;
        };
        let Some((id, reply)) = shared.expect_reply() else {
            return;
        };
        let frame = ClientFrame::Request {
            id,
            body: Request::Ping,
        };
        let queued = match frames.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Closed(_)) => return,
        };
        drop(frames);
        let answered = queued
            && match tokio::time::timeout_at(next_ping.min(dead_at), reply).await {
                // Any reply, even a refusal, shows that the server still reads and answers.
                Ok(Ok(_)) => true,
                // The connection ended: the reader reports why.
                Ok(Err(_)) => return,
                Err(_) => false,
            };
        if answered {
            last_answer = Instant::now();
        } else {
            shared.forget(id);
            tracing::debug!("a ping went unanswered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_server_is_told_from_other_ends() {
        assert!(ended_by_silence(&silence_reason(3)));
        assert!(!ended_by_silence("the server closed the connection"));
        assert!(!ended_by_silence("cannot write: broken pipe"));
    }
}
