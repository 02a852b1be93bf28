//! Start-up, the accept loop, and graceful shutdown of one chat server.

use crate::config::Config;
use crate::delivery::{Delivery, DeliveryConfig};
use crate::hub::Hub;
use crate::store::{ServerRow, Store, StoreError};
use crate::{console, session};
use anyhow::Context;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the server renews its row in `server_info`.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// What every session of this server shares.
pub struct Shared {
    pub name: String,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub delivery: Arc<Delivery>,
    /// Names known to be registered. Users are never deleted, so this needs no invalidation.
    known_users: Mutex<HashSet<String>>,
    /// Cancelled when the server starts to shut down: sessions stop reading requests.
    pub shutdown: CancellationToken,
    /// Cancelled once the delivery writer has flushed: sessions say goodbye and close.
    pub drained: CancellationToken,
    pub shutdown_grace: Duration,
}

impl Shared {
    pub fn remember_user(&self, user: &str) {
        self.known_users_lock().insert(user.to_owned());
    }

    pub async fn user_exists(&self, user: &str) -> Result<bool, StoreError> {
        if self.known_users_lock().contains(user) {
            return Ok(true);
        }
        let exists = self.store.user_exists(user).await?;
        if exists {
            self.remember_user(user);
        }
        Ok(exists)
    }

    fn known_users_lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known_users
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Runs the server until `shutdown` is cancelled, then shuts it down gracefully.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = Store::open(&config.database_url, config.db_pool_size)
        .await
        .context("cannot open the database")?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let client_addr = listener.local_addr()?;
    let peer_addr = resolve(&config.peer_listen).await?;
    store
        .register_server(&ServerRow {
            name: config.name.clone(),
            host: client_addr.ip().to_string(),
            client_port: client_addr.port(),
            server_port: peer_addr.port(),
        })
        .await
        .context("cannot register in server_info")?;

    let hub = Arc::new(Hub::default());
    let delivery_config = DeliveryConfig {
        commit_delay: config.commit_delay(),
        max_batch: config.max_batch.max(1),
    };
    let delivery = Delivery::start(store.clone(), hub.clone(), delivery_config);
    let shared = Arc::new(Shared {
        name: config.name.clone(),
        store: store.clone(),
        hub,
        delivery,
        known_users: Mutex::default(),
        shutdown: shutdown.clone(),
        drained: CancellationToken::new(),
        shutdown_grace: config.shutdown_timeout(),
    });
    let tracker = TaskTracker::new();
    tracker.spawn(heartbeat(shared.clone()));
    // The console waits on standard input, which cannot be interrupted; it is not tracked.
    tokio::spawn(console::run(shared.clone()));

    tracing::info!(name = %config.name, %client_addr, "serving clients");
    println!(
        "ready name={} client={client_addr} peer={peer_addr}",
        config.name
    );
    accept_loop(&listener, &shared, &tracker).await;

    tracing::info!("shutting down: no new connections");
    drop(listener);
    if timeout(shared.shutdown_grace, shared.delivery.finish())
        .await
        .is_err()
    {
        tracing::error!("pending messages could not be stored before the shutdown timeout");
    }
    shared.drained.cancel();
    tracker.close();
    if timeout(shared.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some sessions did not close before the shutdown timeout");
    }
    if let Err(err) = store.mark_server_gone(&config.name).await {
        tracing::warn!(%err, "could not mark this server gone in server_info");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, tracker: &TaskTracker) {
    let mut backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(10);
                    tracker.spawn(session::serve(stream, peer, shared.clone()));
                }
                Err(err) => {
                    // Out of file descriptors, say: wait, so as not to spin.
                    tracing::warn!(%err, "accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            () = shared.shutdown.cancelled() => return,
        }
    }
}

async fn heartbeat(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        match shared.store.heartbeat(&shared.name).await {
            Ok(()) if failing => {
                tracing::info!("heartbeat restored");
                failing = false;
            }
            Ok(()) => {}
            Err(err) if !failing => {
                tracing::warn!(%err, "heartbeat failed");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))
}
