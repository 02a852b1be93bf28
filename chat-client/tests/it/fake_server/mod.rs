//! A scripted stand-in for a chat server; several of them make a fake farm.
//!
//! It speaks the real protocol: the Noise NX handshake as the responder, with the farm's key
//! ([`farm_key`]) unless a test gives it another, then encrypted frames. It answers every
//! request from a fixed script and records every frame the client sends, so that tests can
//! check acknowledgements, confirmations and where the client logged in. Each connection is
//! served on its own task. Tests can also make it misbehave: crash (every connection ends at
//! once), stay down (connections close before the handshake), hang (it reads but never
//! answers), answer a send with a crash or with "shutting down", or present another key.

use chat_client::handshake::ServerTrust;
use chat_proto::noise::Keypair;
use chat_proto::{ChatMessage, ClientFrame, MessageId, Recipient, Request, RingInfo, ServerAddr};
use conversation::{crash, serve, Recorder};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod conversation;

/// The fake farm's key pair, the same for every fake server unless a test changes it.
/// The client's `who`: the first page of everyone online.
pub fn who() -> Request {
    Request::Who {
        after: None,
        max: chat_proto::MAX_PAGE,
    }
}

pub fn farm_key() -> Keypair {
    Keypair::from_secret_bytes([0x42; 32])
}

/// Another key pair, which a server should not present.
pub fn other_key(seed: u8) -> Keypair {
    Keypair::from_secret_bytes([seed; 32])
}

/// Trust in the fake farm's key only, as `--server-key` pins it.
pub fn pinned() -> ServerTrust {
    ServerTrust::Pinned(farm_key().public_key())
}

/// How the fake server answers the first `who`; later ones are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnWho {
    Answer,
    Hangup,
    SayClosing,
    /// Hangs, as [`FakeServer::hang`], leaving the `who` unanswered.
    Hang,
    /// Writes a message that does not decrypt, and goes on serving.
    Garble,
}

/// How the fake server answers the next `send`; later ones are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSend {
    Answer,
    /// Records the send, then goes down without answering.
    Crash,
    /// Refuses it with `ErrorCode::ShuttingDown`, and stays up.
    SayShuttingDown,
}

/// How the fake server answers requests; tests may change it at any time.
#[derive(Debug, Clone)]
struct Script {
    on_who: OnWho,
    on_send: OnSend,
    /// The answer to `Ring`; `None` refuses the request, as an older server would.
    ring: Option<RingInfo>,
    /// Answers every login with a `Redirect` to this server name and address.
    redirect: Option<(String, String)>,
    /// Closes every new connection before the handshake, as a server that is not running.
    down: bool,
    /// Reads and records frames but answers none, as a server that hangs.
    hung: bool,
    /// The static key that new connections' handshakes present.
    key: Keypair,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub name: String,
    /// Every frame the client sent after its hello, over all connections.
    pub received: Arc<Mutex<Vec<ClientFrame>>>,
    script: Arc<Mutex<Script>>,
    /// How many connections are being served.
    open: Arc<watch::Sender<usize>>,
    /// How many connections were accepted, up or down.
    accepted: Arc<watch::Sender<usize>>,
    /// How many hellos the clients sent, after their handshakes.
    hellos: Arc<watch::Sender<usize>>,
    /// Bumped by a crash; every connection ends when it changes.
    crashes: Arc<watch::Sender<u64>>,
    /// How many frames were recorded, to wait on.
    n_received: Arc<watch::Sender<usize>>,
}

/// When the fake's messages were sent (`sent_at_ms` 0), as JSON shows it.
pub const SENT_AT: &str = "1970-01-01T00:00:00.000Z";

/// Three messages with fixed ids: the first is delivered live at login and again in the log.
pub fn messages() -> [ChatMessage; 3] {
    let message = |n: u32, from: &str, to: Recipient, text: &str| ChatMessage {
        id: format!("0191d4f0-0000-7000-8000-00000000000{n}")
            .parse::<MessageId>()
            .expect("a valid id"),
        from: from.into(),
        to,
        text: text.into(),
        sent_at_ms: 0,
    };
    [
        message(1, "bob", Recipient::User("alice".into()), "hello  alice"),
        message(2, "carol", Recipient::Group("ops".into()), "deploy?"),
        message(3, "bob", Recipient::User("alice".into()), "are you there"),
    ]
}

impl FakeServer {
    /// A server called `fake`.
    pub async fn start(on_who: OnWho) -> FakeServer {
        FakeServer::start_named("fake", on_who).await
    }

    pub async fn start_named(name: &str, on_who: OnWho) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Script {
            on_who,
            on_send: OnSend::Answer,
            ring: None,
            redirect: None,
            down: false,
            hung: false,
            key: farm_key(),
        }));
        let server = FakeServer {
            addr,
            name: name.to_string(),
            received,
            script,
            open: Arc::new(watch::Sender::new(0)),
            accepted: Arc::new(watch::Sender::new(0)),
            hellos: Arc::new(watch::Sender::new(0)),
            crashes: Arc::new(watch::Sender::new(0)),
            n_received: Arc::new(watch::Sender::new(0)),
        };
        let (name, record, script, open, accepted, hellos, crashes, n_received) = (
            server.name.clone(),
            server.received.clone(),
            server.script.clone(),
            server.open.clone(),
            server.accepted.clone(),
            server.hellos.clone(),
            server.crashes.clone(),
            server.n_received.clone(),
        );
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                accepted.send_modify(|n_accepted| *n_accepted += 1);
                if script.lock().expect("not poisoned").down {
                    drop(socket);
                    continue;
                }
                open.send_modify(|n_open| *n_open += 1);
                let served = serve(
                    socket,
                    name.clone(),
                    Recorder {
                        frames: record.clone(),
                        n_received: n_received.clone(),
                        hellos: hellos.clone(),
                    },
                    script.clone(),
                    crashes.clone(),
                );
                let open = open.clone();
                tokio::spawn(async move {
                    served.await;
                    open.send_modify(|n_open| *n_open -= 1);
                });
            }
        });
        server
    }

    /// Waits until every connection made so far has ended, so that everything the client sent
    /// has been recorded.
    pub async fn until_closed(&self) {
        let mut open = self.open.subscribe();
        let all_closed = open.wait_for(|n_open| *n_open == 0);
        tokio::time::timeout(Duration::from_secs(10), all_closed)
            .await
            .expect("the client closes its connections")
            .expect("the server is still there");
    }

    /// Waits until the frames the client sent satisfy `done`.
    pub async fn until_received(&self, done: impl Fn(&[ClientFrame]) -> bool) {
        let mut n_received = self.n_received.subscribe();
        let reached = async {
            while !done(&self.received()) {
                n_received
                    .changed()
                    .await
                    .expect("the server is still there");
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reached)
            .await
            .expect("the client sends it in time");
    }

    /// Waits until this server has accepted at least `n` connections in all.
    pub async fn until_accepted(&self, n: usize) {
        let mut accepted = self.accepted.subscribe();
        let reached = accepted.wait_for(|n_accepted| *n_accepted >= n);
        tokio::time::timeout(Duration::from_secs(10), reached)
            .await
            .expect("the client connects in time")
            .expect("the server is still there");
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().expect("not poisoned")
    }

    /// How many hellos clients sent here: a client sends none to a server whose key it refuses.
    pub fn hellos(&self) -> usize {
        *self.hellos.borrow()
    }

    /// How many connections this server accepted, up or down.
    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Presents `key` in the handshakes of new connections.
    pub fn set_key(&self, key: Keypair) {
        self.script().key = key;
    }

    /// Goes down: every connection ends at once, and new ones close before the handshake.
    pub fn crash(&self) {
        crash(&self.script, &self.crashes);
    }

    /// Stays down from the start, or after a crash, until [`FakeServer::come_back`].
    pub fn go_down(&self) {
        self.script().down = true;
    }

    pub fn come_back(&self) {
        self.script().down = false;
    }

    /// Stops answering anything, on open connections and new ones (which still get a hello).
    pub fn hang(&self) {
        self.script().hung = true;
    }

    /// How to answer the next `send`.
    pub fn on_send(&self, on_send: OnSend) {
        self.script().on_send = on_send;
    }

    /// Answers `Ring` with these servers, given as name and address.
    pub fn set_ring(&self, servers: &[(&str, &str)]) {
        let servers = servers
            .iter()
            .map(|(name, addr)| ServerAddr {
                name: name.to_string(),
                addr: addr.to_string(),
            })
            .collect();
        self.script().ring = Some(RingInfo {
            vnodes: chat_proto::ring::DEFAULT_VNODES,
            servers,
        });
    }

    /// Answers every login with a redirect to `server` at `addr`.
    pub fn redirect_logins(&self, server: &str, addr: &str) {
        self.script().redirect = Some((server.to_string(), addr.to_string()));
    }

    pub fn received(&self) -> Vec<ClientFrame> {
        self.received.lock().expect("not poisoned").clone()
    }

    /// Every request the client sent, in order, except the heartbeat's pings.
    pub fn requests(&self) -> Vec<Request> {
        self.received()
            .into_iter()
            .filter_map(|frame| match frame {
                ClientFrame::Request {
                    body: Request::Ping,
                    ..
                } => None,
                ClientFrame::Request { body, .. } => Some(body),
                ClientFrame::Ack { .. } => None,
            })
            .collect()
    }

    /// What `pick` takes from each request the client sent, in order, skipping those it
    /// takes nothing from.
    fn picked<T>(&self, pick: impl Fn(Request) -> Option<T>) -> Vec<T> {
        self.requests().into_iter().filter_map(pick).collect()
    }

    /// The ids of every `send`, in order.
    pub fn sends(&self) -> Vec<MessageId> {
        self.picked(|request| match request {
            Request::Send { id, .. } => Some(id),
            _ => None,
        })
    }

    /// How many frames the client sent before its first `request`.
    pub fn frames_before(&self, request: &Request) -> usize {
        self.received()
            .iter()
            .position(|frame| matches!(frame, ClientFrame::Request { body, .. } if body == request))
            .expect("the client sent that request")
    }

    /// How many pings the client sent after the first `after` frames.
    pub fn pings_after(&self, after: usize) -> usize {
        self.received()
            .iter()
            .skip(after)
            .filter(|frame| {
                matches!(
                    frame,
                    ClientFrame::Request {
                        body: Request::Ping,
                        ..
                    }
                )
            })
            .count()
    }

    /// The user of every login request, redirected or not, in order.
    pub fn logins(&self) -> Vec<String> {
        self.picked(|request| match request {
            Request::Login { user, .. } => Some(user),
            _ => None,
        })
    }

    /// Every id the client acknowledged, in order.
    pub fn acked(&self) -> Vec<MessageId> {
        self.received()
            .into_iter()
            .flat_map(|frame| match frame {
                ClientFrame::Ack { ids } => ids,
                ClientFrame::Request { .. } => Vec::new(),
            })
            .collect()
    }

    /// The ids of each `ConfirmLog`, in order.
    pub fn confirmed(&self) -> Vec<Vec<MessageId>> {
        self.picked(|request| match request {
            Request::ConfirmLog { ids } => Some(ids),
            _ => None,
        })
    }
}
