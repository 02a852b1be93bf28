//! The farm as this server sees it: the registry in `server_info`, the ring of live servers,
//! and where each user should be served.
//!
//! The heartbeat task renews this server's row every second and reads the whole registry in
//! the same round trip; a server whose heartbeat is older than the timeout counts as down.
//! **This server is always live in its own view**, even while the database is unreachable, so
//! that it keeps serving its users.

use crate::store::{Registry, ServerState, Store, StoreError};
use crate::telemetry::{self, DbWork};
use chat_proto::{Ring, RingInfo, ServerAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the server renews its row in `server_info` and rereads the registry.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// One reading of the registry.
#[derive(Debug)]
pub struct FarmView {
    pub me: String,
    pub vnodes: u32,
    /// Every registered server, sorted by name.
    pub servers: Vec<ServerState>,
    /// The ring of the live servers.
    pub ring: Ring,
}

impl FarmView {
    fn new(me: &str, registry: Registry) -> FarmView {
        let mut servers = registry.servers;
        for server in &mut servers {
            if server.name == me {
                server.live = true;
            }
        }
        let mut live: Vec<&str> = servers
            .iter()
            .filter(|server| server.live)
            .map(|server| server.name.as_str())
            .collect();
        live.push(me);
        let ring = Ring::new(live, registry.vnodes);
        FarmView {
            me: me.to_owned(),
            vnodes: registry.vnodes,
            servers,
            ring,
        }
    }

    pub fn server(&self, name: &str) -> Option<&ServerState> {
        self.servers.iter().find(|server| server.name == name)
    }

    /// The live servers other than this one.
    pub fn live_peers(&self) -> impl Iterator<Item = &ServerState> {
        self.servers
            .iter()
            .filter(|server| server.live && server.name != self.me)
    }

    /// What a client needs to compute placements.
    pub fn ring_info(&self) -> RingInfo {
        RingInfo {
            vnodes: self.vnodes,
            servers: self
                .servers
                .iter()
                .filter(|server| server.live)
                .map(|server| ServerAddr {
                    name: server.name.clone(),
                    addr: server.client_addr.clone(),
                })
                .collect(),
        }
    }

    /// The server that should serve `user` now: the first, in the ring's order for the user,
    /// that is this server or one that `reachable` says is up. Home while home is up, then the
    /// backup, then on clockwise.
    pub fn serving(&self, user: &str, reachable: impl Fn(&str) -> bool) -> &str {
        self.ring
            .successors(user)
            .find(|server| *server == self.me || reachable(server))
            .unwrap_or(&self.me)
    }

    /// The user's home and backup on the ring of live servers.
    pub fn placement(&self, user: &str) -> (String, Option<String>) {
        let mut order = self.ring.successors(user);
        let home = order.next().unwrap_or(&self.me).to_owned();
        (home, order.next().map(str::to_owned))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another server has registered as {0} since this one started")]
    Replaced(String),
}

/// The latest view of the farm, shared by everything that routes.
pub struct Farm {
    me: String,
    /// When this server registered, to recognise its own row.
    started_at_ms: i64,
    heartbeat_timeout: Duration,
    view: watch::Sender<Arc<FarmView>>,
    /// When the last heartbeat succeeded, or `None` while the last one failed.
    beat_ok_at: Mutex<Option<Instant>>,
}

impl Farm {
    /// A farm view with this server alone, until the first read of the registry.
    pub fn new(me: &str, started_at_ms: i64, heartbeat_timeout: Duration) -> Farm {
        let alone = Registry {
            ours: true,
            vnodes: chat_proto::ring::DEFAULT_VNODES,
            servers: Vec::new(),
        };
        let (view, _) = watch::channel(Arc::new(FarmView::new(me, alone)));
        Farm {
            me: me.to_owned(),
            started_at_ms,
            heartbeat_timeout,
            view,
            beat_ok_at: Mutex::new(None),
        }
    }

    /// How long ago the last heartbeat succeeded; `None` if the last one failed (the database
    /// is unreachable), or none has been made yet.
    pub fn since_heartbeat(&self) -> Option<Duration> {
        let ok_at = *self
            .beat_ok_at
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        ok_at.map(|at| at.elapsed())
    }

    pub fn view(&self) -> Arc<FarmView> {
        self.view.borrow().clone()
    }

    /// Wakes whenever the registry's contents change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<FarmView>> {
        self.view.subscribe()
    }

    /// Heartbeats once and takes in the registry. Fails if another process has registered
    /// under this server's name since it started.
    pub async fn refresh(&self, store: &Store) -> Result<(), RefreshError> {
        let beat = store
            .heartbeat(&self.me, self.started_at_ms, self.heartbeat_timeout)
            .await;
        let ok_at = beat.is_ok().then(Instant::now);
        *self
            .beat_ok_at
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = ok_at;
        let registry = beat.inspect_err(|_| telemetry::database_error(DbWork::Heartbeat))?;
        if !registry.ours {
            return Err(RefreshError::Replaced(self.me.clone()));
        }
        let view = FarmView::new(&self.me, registry);
        self.view.send_if_modified(|current| {
            let changed = current.servers != view.servers || current.vnodes != view.vnodes;
            if changed {
                *current = Arc::new(view);
            }
            changed
        });
        Ok(())
    }

    /// Heartbeats every [`HEARTBEAT_INTERVAL`] until `shutdown`. Shuts the server down if
    /// another server has taken its name.
    pub async fn run(self: Arc<Self>, store: Store, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match self.refresh(&store).await {
                Ok(()) if failing => {
                    tracing::info!("heartbeat restored");
                    failing = false;
                }
                Ok(()) => {}
                Err(err @ RefreshError::Replaced(_)) => {
                    tracing::error!(%err, "shutting down");
                    shutdown.cancel();
                    return;
                }
                Err(err) if !failing => {
                    tracing::warn!(%err, "heartbeat failed");
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str, live: bool) -> ServerState {
        ServerState {
            name: name.into(),
            client_addr: format!("{name}:1"),
            peer_addr: format!("{name}:2"),
            started_at_ms: 0,
            live,
            link_key: None,
            web_url: None,
        }
    }

    fn view(me: &str, servers: &[(&str, bool)]) -> FarmView {
        let registry = Registry {
            ours: true,
            vnodes: 8,
            servers: servers
                .iter()
                .map(|(name, live)| state(name, *live))
                .collect(),
        };
        FarmView::new(me, registry)
    }

    #[test]
    fn the_ring_holds_the_live_servers_and_always_this_one() {
        let view = view("s1", &[("s1", false), ("s2", true), ("s3", false)]);
        assert_eq!(view.ring.servers(), ["s1", "s2"]);
        assert_eq!(view.ring_info().servers.len(), 2);
        assert_eq!(view.live_peers().count(), 1);
    }

    #[test]
    fn users_are_served_by_the_first_reachable_server_in_their_order() {
        let view = view("s1", &[("s1", true), ("s2", true), ("s3", true)]);
        for user in ["alice", "bob", "carol", "dave", "erin"] {
            let order: Vec<&str> = view.ring.successors(user).collect();
            assert_eq!(view.serving(user, |_| true), order[0]);
            // Home unreachable: the backup serves (which may be this server).
            let unreachable_home = |server: &str| server != order[0];
            if order[0] != "s1" {
                assert_eq!(view.serving(user, unreachable_home), order[1], "{user}");
            }
            // Nothing reachable: this server serves everyone.
            assert_eq!(view.serving(user, |_| false), "s1");
        }
    }
}
