//! Start-up, the accept loop, and graceful shutdown of one chat server.

use crate::config::Config;
use crate::delivery::{Delivery, DeliveryConfig, Routes};
use crate::farm::Farm;
use crate::hub::Hub;
use crate::keys::Keys;
use crate::limits::LoginThrottle;
use crate::links::{self, Links};
use crate::presence::Presence;
use crate::store::{ServerRow, Store, StoreError};
use crate::{admin, console, session};
use anyhow::Context;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a starting server waits for its links to the live servers before it serves.
const INITIAL_LINKS_TIMEOUT: Duration = Duration::from_secs(3);

/// What every session and link of this server shares.
pub struct Shared {
    pub name: String,
    pub store: Store,
    pub farm: Arc<Farm>,
    pub hub: Arc<Hub>,
    pub presence: Arc<Presence>,
    pub links: Arc<Links>,
    pub delivery: Arc<Delivery>,
    /// Names known to be registered. Users are never deleted, so this needs no invalidation.
    known_users: Mutex<HashSet<String>>,
    /// Cancelled when the server starts to shut down: sessions stop reading requests.
    pub shutdown: CancellationToken,
    /// Cancelled once the delivery writer has flushed: sessions say goodbye, links close.
    pub drained: CancellationToken,
    pub shutdown_grace: Duration,
    /// Every session, link and dial loop, so that shutdown can wait for them.
    pub tracker: TaskTracker,
    /// One permit per client connection, up to `--max-connections`.
    pub connections: Arc<Semaphore>,
    /// Frames a second per client connection, on average.
    pub max_frames_per_sec: u32,
    pub login_throttle: LoginThrottle,
    /// The static key of every client handshake.
    pub farm_key: chat_proto::Keypair,
}

impl Shared {
    /// The server that should serve `user` now: home if it is this server or linked, else
    /// the backup on the same terms, and so on around the ring.
    pub fn serving(&self, user: &str) -> String {
        self.links.serving(&self.farm.view(), user)
    }

    /// The user's home and backup on the current ring of live servers.
    pub fn placement(&self, user: &str) -> (String, Option<String>) {
        self.farm.view().placement(user)
    }

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
    chat_proto::validate_user(&config.name)
        .map_err(|err| anyhow::anyhow!("bad --name: {}", err.to_string().replace("user ", "")))?;
    let keys = Keys::load(
        config.farm_key_file.as_deref(),
        config.cluster_key_file.as_deref(),
    )?;
    let store = Store::open(&config.database_url, config.db_pool_size)
        .await
        .context("cannot open the database")?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let peer_listener = TcpListener::bind(&config.peer_listen)
        .await
        .with_context(|| format!("cannot listen for peers on {}", config.peer_listen))?;
    let client_addr = listener.local_addr()?;
    let peer_addr = peer_listener.local_addr()?;
    let row = ServerRow {
        name: config.name.clone(),
        client_addr: advertised(config.advertise.as_deref(), client_addr)?,
        peer_addr: match &config.advertise_peer {
            Some(addr) => advertised(Some(addr), peer_addr)?,
            None => advertised(
                config.advertise.as_deref().map(|a| split_host_port(a).0),
                peer_addr,
            )?,
        },
        link_key: chat_proto::key_to_hex(&keys.link.public_key()),
    };
    if config.admin_socket.is_none() {
        admin::ensure_private_dir(&admin::default_dir())?;
    }
    let admin_listener = admin::bind(&admin::socket_path(&config)).await?;
    let started_at_ms = store
        .register_server(&row)
        .await
        .context("cannot register in server_info")?;

    let farm = Arc::new(Farm::new(
        &config.name,
        started_at_ms,
        config.heartbeat_timeout(),
    ));
    farm.refresh(&store)
        .await
        .context("cannot read the registry")?;
    let hub = Arc::new(Hub::default());
    let presence = Arc::new(Presence::default());
    let Keys {
        farm: farm_key,
        cluster,
        link,
    } = keys;
    let links = Arc::new(Links::new(&config.name, started_at_ms, link, cluster));
    let routes = Routes {
        hub: hub.clone(),
        presence: presence.clone(),
        links: links.clone(),
    };
    let delivery_config = DeliveryConfig {
        commit_delay: config.commit_delay(),
        max_batch: config.max_batch.max(1),
    };
    let delivery = Delivery::start(store.clone(), routes, delivery_config);
    let tracker = TaskTracker::new();
    let shared = Arc::new(Shared {
        name: config.name.clone(),
        store: store.clone(),
        farm: farm.clone(),
        hub,
        presence,
        links,
        delivery,
        known_users: Mutex::default(),
        shutdown: shutdown.clone(),
        drained: CancellationToken::new(),
        shutdown_grace: config.shutdown_timeout(),
        tracker: tracker.clone(),
        connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
        max_frames_per_sec: config.max_frames_per_sec,
        login_throttle: LoginThrottle::default(),
        farm_key,
    });
    tracker.spawn(farm.clone().run(store.clone(), shutdown.clone()));
    tracker.spawn(links::supervise(shared.clone()));
    let accept_links = shared.clone();
    tracker.spawn(accept_loop(
        peer_listener,
        shared.clone(),
        move |stream, addr| links::accept(accept_links.clone(), stream, addr),
    ));
    // The console waits on standard input, which cannot be interrupted; it is not tracked.
    tokio::spawn(console::run(shared.clone()));
    tracker.spawn(admin::serve(admin_listener, shared.clone()));

    // Serve clients once linked with every live server, so that routing is complete.
    let peers: Vec<String> = farm
        .view()
        .live_peers()
        .map(|peer| peer.name.clone())
        .collect();
    if !shared.links.wait_up(&peers, INITIAL_LINKS_TIMEOUT).await {
        tracing::warn!("not every live server is linked yet; serving anyway");
    }
    tracing::info!(name = %config.name, %client_addr, %peer_addr, "serving clients");
    println!(
        "ready name={} client={client_addr} peer={peer_addr}",
        config.name
    );
    let serve_clients = shared.clone();
    accept_loop(listener, shared.clone(), move |stream, addr| {
        let permit = serve_clients.connections.clone().try_acquire_owned().ok();
        session::serve(stream, addr, serve_clients.clone(), permit)
    })
    .await;

    tracing::info!("shutting down: no new connections");
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
    admin::remove(&admin::socket_path(&config));
    if let Err(err) = store.mark_server_gone(&config.name).await {
        tracing::warn!(%err, "could not mark this server gone in server_info");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Accepts connections and spawns `serve` for each until shutdown. Accept errors (out of
/// file descriptors, say) back off instead of spinning.
async fn accept_loop<F, Fut>(listener: TcpListener, shared: Arc<Shared>, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    backoff = Duration::from_millis(10);
                    shared.tracker.spawn(serve(stream, addr));
                }
                Err(err) => {
                    tracing::warn!(%err, "accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            () = shared.shutdown.cancelled() => return,
        }
    }
}

/// The address to register for a listener bound at `bound`: `--advertise` may give the host,
/// or the host and the port.
fn advertised(advertise: Option<&str>, bound: SocketAddr) -> anyhow::Result<(String, u16)> {
    match advertise.map(split_host_port) {
        Some((host, Some(port))) => {
            let port = port
                .parse()
                .with_context(|| format!("bad port {port:?} in --advertise"))?;
            Ok((host.to_owned(), port))
        }
        Some((host, None)) => Ok((host.to_owned(), bound.port())),
        None if bound.ip().is_unspecified() => anyhow::bail!(
            "listening on {bound}, which nobody can dial; set --advertise to this machine's \
             address"
        ),
        None => Ok((bound.ip().to_string(), bound.port())),
    }
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; a bare IPv6 address is all host.
fn split_host_port(addr: &str) -> (&str, Option<&str>) {
    if let Some(rest) = addr.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, port)) => (host, port.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match addr.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (addr, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(advertise: Option<&str>, bound: &str, expected: Result<(&str, u16), &str>) {
        let bound: SocketAddr = bound.parse().unwrap();
        let got = advertised(advertise, bound).map_err(|err| err.to_string());
        let expected = expected
            .map(|(host, port)| (host.to_owned(), port))
            .map_err(str::to_owned);
        assert_eq!(got, expected);
    }

    #[test]
    fn advertised_addresses() {
        check(None, "127.0.0.1:7000", Ok(("127.0.0.1", 7000)));
        check(
            Some("chat1.example"),
            "0.0.0.0:7000",
            Ok(("chat1.example", 7000)),
        );
        check(
            Some("10.0.0.5:9000"),
            "0.0.0.0:7000",
            Ok(("10.0.0.5", 9000)),
        );
        check(
            Some("[2001:db8::5]:9000"),
            "[::]:7000",
            Ok(("2001:db8::5", 9000)),
        );
        check(Some("2001:db8::5"), "[::]:7000", Ok(("2001:db8::5", 7000)));
        check(
            Some("h:x"),
            "0.0.0.0:7000",
            Err("bad port \"x\" in --advertise"),
        );
        check(
            None,
            "0.0.0.0:7000",
            Err(
                "listening on 0.0.0.0:7000, which nobody can dial; set --advertise to this \
                 machine's address",
            ),
        );
    }
}
