//! Start-up, the accept loops, and graceful shutdown of one chat server.
//!
//! This is where the server's parts are made and wired: each kind of task gets a narrow
//! context of what it uses ([`LinkContext`], [`SessionContext`], [`ConsoleContext`]), and
//! nothing below this module knows the whole.
//!
//! - `advertise`: the addresses registered for the listeners.
//! - `web`: the web client's listener, URL and gateway (`chat-web`).

mod advertise;
mod web;

use crate::admin;
use crate::commands::{CommandContext, KnownUsers, LoginCounts, TicketIssuer};
use crate::config::Config;
use crate::console::{self, ConsoleContext};
use crate::delivery::{Delivery, DeliveryConfig, Routes};
use crate::farm::Farm;
use crate::forwarding::ForwardingKey;
use crate::hub::Hub;
use crate::keys::Keys;
use crate::limits::{AddressSlots, LoginThrottle, Registrations};
use crate::links::{self, LinkContext, Links, Relayed};
use crate::members::Members;
use crate::monitor::{self, MonitorContext};
use crate::password::{HashLimits, Hasher};
use crate::presence::Presence;
use crate::revocation::Revocations;
use crate::session::{self, SessionContext};
use crate::store::{ServerRow, Store};
use crate::tickets::TicketKey;
use advertise::{advertised, split_host_port};
use anyhow::Context;
use chat_proto::{MessageId, SharedMessage};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a starting server waits for its links to the live servers before it serves.
const INITIAL_LINKS_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the server until `shutdown` is cancelled, then shuts it down gracefully.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    chat_proto::validate_user(&config.name)
        .map_err(|err| anyhow::anyhow!("bad --name: {}", err.to_string().replace("user ", "")))?;
    let keys = Keys::load(
        config.farm_key_file.as_deref(),
        config.cluster_key_file.as_deref(),
    )?;
    // Before anything counts: the handles of the hot path are taken at their first use.
    let prometheus = match &config.metrics_listen {
        Some(_) => Some(monitor::install_recorder()?),
        None => None,
    };
    let store = Store::open(&config.database_url, config.db_pool_size)
        .await
        .context("cannot open the database")?;
    let listeners = Listeners::bind(&config, &keys, prometheus).await?;
    let started_at_ms = store
        .register_server(&listeners.row)
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
    let hasher =
        Hasher::new(hash_limits(&config)).context("cannot start the password hashing threads")?;
    let server = Server::assemble(&config, store, farm, keys, hasher, started_at_ms, shutdown);
    server.serve(listeners).await;
    server.stop(&config).await;
    Ok(())
}

/// The server's listening sockets, and its row for the registry.
struct Listeners {
    clients: TcpListener,
    peers: TcpListener,
    admin: UnixListener,
    /// `--metrics-listen`'s, with the recorder's handle.
    metrics: Option<(TcpListener, PrometheusHandle)>,
    /// `--web-listen`'s, with its URL.
    web: Option<web::Web>,
    client_addr: SocketAddr,
    peer_addr: SocketAddr,
    row: ServerRow,
}

impl Listeners {
    async fn bind(
        config: &Config,
        keys: &Keys,
        prometheus: Option<PrometheusHandle>,
    ) -> anyhow::Result<Listeners> {
        let clients = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let peers = TcpListener::bind(&config.peer_listen)
            .await
            .with_context(|| format!("cannot listen for peers on {}", config.peer_listen))?;
        let metrics = match (&config.metrics_listen, prometheus) {
            (Some(addr), Some(prometheus)) => Some((monitor::bind(addr).await?, prometheus)),
            _ => None,
        };
        let web = web::bind(config).await?;
        let client_addr = clients.local_addr()?;
        let peer_addr = peers.local_addr()?;
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
            web_url: web.as_ref().map(|web| web.url.clone()),
        };
        if config.admin_socket.is_none() {
            admin::ensure_private_dir(&admin::default_dir())?;
        }
        let admin = admin::bind(&admin::socket_path(config)).await?;
        Ok(Listeners {
            clients,
            peers,
            admin,
            metrics,
            web,
            client_addr,
            peer_addr,
            row,
        })
    }
}

/// A running server: its parts, and the contexts of its tasks.
struct Server {
    parts: Parts,
    links: Arc<LinkContext>,
    sessions: Arc<SessionContext>,
    console: Arc<ConsoleContext>,
    /// One permit per client connection, up to `--max-connections`.
    connections: Arc<Semaphore>,
    max_connections: usize,
    /// Every session, link and dial loop, so that shutdown can wait for them.
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled once the delivery writer has flushed: sessions say goodbye, links close.
    drained: CancellationToken,
    shutdown_grace: Duration,
}

/// What the contexts are made of, each part made once.
struct Parts {
    name: String,
    store: Store,
    farm: Arc<Farm>,
    hub: Arc<Hub>,
    presence: Arc<Presence>,
    links: Arc<Links>,
    members: Arc<Members>,
    revocations: Arc<Revocations>,
    logins: Arc<LoginCounts>,
    delivery: Arc<Delivery>,
}

impl Server {
    /// Makes the server's parts and the context of each kind of task, and starts delivery.
    fn assemble(
        config: &Config,
        store: Store,
        farm: Arc<Farm>,
        keys: Keys,
        hasher: Hasher,
        started_at_ms: i64,
        shutdown: CancellationToken,
    ) -> Server {
        let Keys {
            farm: farm_key,
            cluster,
            link,
        } = keys;
        // Derived before the cluster key goes to the links, its only other use.
        let ticket_key = Arc::new(TicketKey::derive(&cluster));
        let forwarding = Arc::new(ForwardingKey::derive(&cluster));
        let links = Arc::new(Links::new(&config.name, started_at_ms, link, cluster));
        let parts = Parts::new(config, store, farm, links);
        let (drained, tracker) = (CancellationToken::new(), TaskTracker::new());
        let sessions = SessionContext {
            commands: Arc::new(parts.command_context(config, ticket_key, forwarding, hasher)),
            farm_key,
            max_frames_per_sec: config.max_frames_per_sec,
            shutdown: shutdown.clone(),
            drained: drained.clone(),
            shutdown_grace: config.shutdown_timeout(),
            login_timeout: config.login_timeout(),
            write_timeout: config.write_timeout(),
            address_slots: AddressSlots::new(
                usize::try_from(config.max_connections_per_address).unwrap_or(usize::MAX),
            ),
        };
        Server {
            links: Arc::new(parts.link_context(&shutdown, &drained, &tracker)),
            sessions: Arc::new(sessions),
            console: Arc::new(parts.console_context()),
            parts,
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            max_connections: config.max_connections.max(1),
            tracker,
            shutdown,
            drained,
            shutdown_grace: config.shutdown_timeout(),
        }
    }

    /// Starts the heartbeat, the links and the admin console, then serves clients until
    /// shutdown.
    async fn serve(&self, listeners: Listeners) {
        let (tracker, shutdown) = (&self.tracker, &self.shutdown);
        let farm = &self.parts.farm;
        tracker.spawn(farm.clone().run(self.parts.store.clone(), shutdown.clone()));
        tracker.spawn(links::supervise(self.links.clone()));
        let ring_news = self
            .parts
            .hub
            .clone()
            .tell_ring_changes(farm.clone(), shutdown.clone());
        tracker.spawn(ring_news);
        let link_context = self.links.clone();
        let accept_links = accept_loop(
            listeners.peers,
            tracker.clone(),
            shutdown.clone(),
            move |stream, addr| links::accept(link_context.clone(), stream, addr),
        );
        tracker.spawn(accept_links);
        // The console waits on standard input, which cannot be interrupted; it is not tracked.
        tokio::spawn(console::run(self.console.clone()));
        let console = self.console.clone();
        tracker.spawn(admin::serve(listeners.admin, console, shutdown.clone()));
        let metrics_addr = listeners.metrics.map(|(listener, prometheus)| {
            let addr = listener.local_addr().ok();
            // It answers through shutdown (/readyz says so), so it is not tracked.
            tokio::spawn(monitor::serve(listener, self.monitor_context(prometheus)));
            addr.map_or_else(String::new, |addr| format!(" metrics={addr}"))
        });
        let web_url = listeners.web.map(|web| {
            let gateway = web::gateway(
                &self.parts.name,
                &listeners.row.client_addr,
                self.sessions.farm_key.public_key(),
                farm.clone(),
                self.sessions.commands.forwarding.clone(),
            );
            // Its sockets end at shutdown, and their pages move on; it is not tracked.
            tokio::spawn(chat_web::serve(web.listener, gateway, shutdown.clone()));
            format!(" web={}", web.url)
        });

        // Serve clients once linked with every live server, so that routing is complete.
        let peers: Vec<String> = farm
            .view()
            .live_peers()
            .map(|peer| peer.name.clone())
            .collect();
        if !self
            .parts
            .links
            .wait_up(&peers, INITIAL_LINKS_TIMEOUT)
            .await
        {
            tracing::warn!("not every live server is linked yet; serving anyway");
        }
        let (name, client_addr, peer_addr) =
            (&self.parts.name, listeners.client_addr, listeners.peer_addr);
        let metrics_addr = metrics_addr.unwrap_or_default();
        let web_url = web_url.unwrap_or_default();
        tracing::info!(%name, %client_addr, %peer_addr, metrics = metrics_addr.trim(), web = web_url.trim(), "serving clients");
        println!("ready name={name} client={client_addr} peer={peer_addr}{metrics_addr}{web_url}");
        // The peers may send this server's users home now.
        self.parts.links.start_serving();
        let sessions = self.sessions.clone();
        let connections = self.connections.clone();
        accept_loop(
            listeners.clients,
            tracker.clone(),
            shutdown.clone(),
            move |stream, addr| {
                let permit = connections.clone().try_acquire_owned().ok();
                session::serve(stream, addr, sessions.clone(), permit)
            },
        )
        .await;
    }

    fn monitor_context(&self, prometheus: PrometheusHandle) -> Arc<MonitorContext> {
        Arc::new(MonitorContext {
            prometheus,
            farm: self.parts.farm.clone(),
            links: self.parts.links.clone(),
            delivery: self.parts.delivery.clone(),
            connections: self.connections.clone(),
            max_connections: self.max_connections,
            shutdown: self.shutdown.clone(),
        })
    }

    /// Stores what is pending, closes the sessions and links, and leaves the registry.
    async fn stop(&self, config: &Config) {
        tracing::info!("shutting down: no new connections");
        let grace = self.shutdown_grace;
        if timeout(grace, self.parts.delivery.finish()).await.is_err() {
            tracing::error!("pending messages could not be stored before the shutdown timeout");
        }
        self.drained.cancel();
        self.tracker.close();
        if timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("some sessions did not close before the shutdown timeout");
        }
        admin::remove(&admin::socket_path(config));
        if let Err(err) = self.parts.store.mark_server_gone(&config.name).await {
            tracing::warn!(%err, "could not mark this server gone in server_info");
        }
        tracing::info!("stopped");
    }
}

impl Parts {
    /// Makes the hub, presence and the members' cache, and starts delivery.
    fn new(config: &Config, store: Store, farm: Arc<Farm>, links: Arc<Links>) -> Parts {
        let hub = Arc::new(Hub::default());
        let presence = Arc::new(Presence::default());
        let coherent = {
            let (farm, links) = (farm.clone(), links.clone());
            move || links.linked_with_all(&farm.view())
        };
        let members = Arc::new(Members::new(store.clone(), coherent.clone()));
        let revocations = Arc::new(Revocations::new(store.clone(), coherent));
        let routes = Routes {
            hub: hub.clone(),
            presence: presence.clone(),
            links: links.clone(),
        };
        let delivery_config = DeliveryConfig {
            ack_deadline: config.ack_deadline(),
            max_batch: config.max_batch.max(1),
        };
        let delivery = Delivery::start(store.clone(), routes, delivery_config);
        Parts {
            name: config.name.clone(),
            store,
            farm,
            hub,
            presence,
            links,
            members,
            revocations,
            logins: Arc::default(),
            delivery,
        }
    }

    fn link_context(
        &self,
        shutdown: &CancellationToken,
        drained: &CancellationToken,
        tracker: &TaskTracker,
    ) -> LinkContext {
        LinkContext {
            links: self.links.clone(),
            farm: self.farm.clone(),
            store: self.store.clone(),
            hub: self.hub.clone(),
            presence: self.presence.clone(),
            members: self.members.clone(),
            revocations: self.revocations.clone(),
            delivery: self.delivery.clone(),
            shutdown: shutdown.clone(),
            drained: drained.clone(),
            tracker: tracker.clone(),
        }
    }

    fn command_context(
        &self,
        config: &Config,
        ticket_key: Arc<TicketKey>,
        forwarding: Arc<ForwardingKey>,
        hasher: Hasher,
    ) -> CommandContext {
        CommandContext {
            name: self.name.clone(),
            store: self.store.clone(),
            farm: self.farm.clone(),
            hub: self.hub.clone(),
            presence: self.presence.clone(),
            members: self.members.clone(),
            links: self.links.clone(),
            delivery: self.delivery.clone(),
            known_users: KnownUsers::default(),
            login_throttle: LoginThrottle::default(),
            tickets: TicketIssuer {
                key: ticket_key,
                lifetime: config.ticket_lifetime(),
                revocations: self.revocations.clone(),
            },
            forwarding,
            logins: self.logins.clone(),
            registrations: Registrations::new(
                config.max_registrations_per_hour,
                config.registration_burst,
            ),
            hasher,
        }
    }

    fn console_context(&self) -> ConsoleContext {
        ConsoleContext {
            name: self.name.clone(),
            store: self.store.clone(),
            farm: self.farm.clone(),
            hub: self.hub.clone(),
            presence: self.presence.clone(),
            links: self.links.clone(),
            members: self.members.clone(),
            logins: self.logins.clone(),
        }
    }
}

/// The password hashing pool that `config` asks for.
fn hash_limits(config: &Config) -> HashLimits {
    let slots = config
        .hash_threads
        .map_or_else(HashLimits::default_slots, |threads| {
            usize::try_from(threads).unwrap_or(1)
        });
    HashLimits {
        slots,
        max_waiting: config.max_hash_queue,
        max_wait: Duration::from_secs(config.max_hash_wait_secs),
    }
}

/// Delivery, as the links see it.
impl Relayed for Delivery {
    fn deliver_relayed(&self, owner: &str, message: Arc<SharedMessage>, recipients: &[Arc<str>]) {
        Delivery::deliver_relayed(self, owner, message, recipients);
    }

    fn ack_owned(&self, user: &str, ids: &[MessageId]) {
        Delivery::ack_owned(self, user, ids);
    }
}

/// Accepts connections and spawns `serve` for each until shutdown. Accept errors (out of
/// file descriptors, say) back off instead of spinning.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    backoff = Duration::from_millis(10);
                    tracker.spawn(serve(stream, addr));
                }
                Err(err) => {
                    tracing::warn!(%err, "accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
            () = shutdown.cancelled() => return,
        }
    }
}
