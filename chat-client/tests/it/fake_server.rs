//! A scripted stand-in for a chat server; several of them make a fake farm.
//!
//! It answers every request from a fixed script and records every frame the client sends, so
//! that tests can check acknowledgements, confirmations and where the client logged in. Each
//! connection is served on its own task. Tests can also make it misbehave: crash (every
//! connection ends at once), stay down (connections close before the hello), hang (it reads
//! but never answers), or answer a send with a crash or with "shutting down".

use chat_proto::codec::MAX_CLIENT_FRAME_LEN;
use chat_proto::{
    ChatMessage, ClientFrame, ErrorCode, ErrorReply, FrameCodec, Hello, MessageId, Recipient,
    Request, Response, RingInfo, ServerAddr, ServerFrame,
};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::Framed;

/// How the fake server answers the first `who`; later ones are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnWho {
    Answer,
    Hangup,
    SayClosing,
    /// Hangs, as [`FakeServer::hang`], leaving the `who` unanswered.
    Hang,
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
    /// Closes every new connection before the hello, as a server that is not running.
    down: bool,
    /// Reads and records frames but answers none, as a server that hangs.
    hung: bool,
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
    /// Bumped by a crash; every connection ends when it changes.
    crashes: Arc<watch::Sender<u64>>,
    /// How many frames were recorded, to wait on.
    n_received: Arc<watch::Sender<usize>>,
}

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
        }));
        let server = FakeServer {
            addr,
            name: name.to_string(),
            received,
            script,
            open: Arc::new(watch::Sender::new(0)),
            accepted: Arc::new(watch::Sender::new(0)),
            crashes: Arc::new(watch::Sender::new(0)),
            n_received: Arc::new(watch::Sender::new(0)),
        };
        let (name, record, script, open, accepted, crashes, n_received) = (
            server.name.clone(),
            server.received.clone(),
            server.script.clone(),
            server.open.clone(),
            server.accepted.clone(),
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

    /// Goes down: every connection ends at once, and new ones close before the hello.
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

    /// The ids of every `send`, in order.
    pub fn sends(&self) -> Vec<MessageId> {
        self.requests()
            .into_iter()
            .filter_map(|request| match request {
                Request::Send { id, .. } => Some(id),
                _ => None,
            })
            .collect()
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
        self.requests()
            .into_iter()
            .filter_map(|request| match request {
                Request::Login { user, .. } => Some(user),
                _ => None,
            })
            .collect()
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
        self.requests()
            .into_iter()
            .filter_map(|request| match request {
                Request::ConfirmLog { ids } => Some(ids),
                _ => None,
            })
            .collect()
    }
}

/// Where a connection records the frames it gets.
struct Recorder {
    frames: Arc<Mutex<Vec<ClientFrame>>>,
    n_received: Arc<watch::Sender<usize>>,
}

impl Recorder {
    fn record(&self, frame: ClientFrame) {
        self.frames.lock().expect("not poisoned").push(frame);
        self.n_received.send_modify(|n_received| *n_received += 1);
    }
}

async fn serve(
    socket: TcpStream,
    name: String,
    record: Recorder,
    script: Arc<Mutex<Script>>,
    crashes: Arc<watch::Sender<u64>>,
) {
    let mut crashed = crashes.subscribe();
    tokio::select! {
        () = converse(socket, name, record, script, &crashes) => {}
        _ = crashed.changed() => {}
    }
}

/// Goes down: ends every connection and closes new ones before the hello.
fn crash(script: &Mutex<Script>, crashes: &watch::Sender<u64>) {
    script.lock().expect("not poisoned").down = true;
    crashes.send_modify(|n_crashes| *n_crashes += 1);
}

/// Takes the hello, then answers frames until the client goes.
async fn converse(
    socket: TcpStream,
    name: String,
    record: Recorder,
    script_handle: Arc<Mutex<Script>>,
    crashes: &watch::Sender<u64>,
) {
    let mut framed = Framed::new(
        socket,
        FrameCodec::<Hello, Hello>::new(MAX_CLIENT_FRAME_LEN),
    );
    let Some(Ok(_hello)) = framed.next().await else {
        return;
    };
    if framed.send(Hello::new(name.as_str())).await.is_err() {
        return;
    }
    let mut framed = framed.map_codec(|codec| codec.retype::<ClientFrame, ServerFrame>());
    let [first, second, third] = messages();
    let mut log_batches = vec![(vec![third], false), (vec![first.clone(), second], true)];
    while let Some(Ok(frame)) = framed.next().await {
        record.record(frame.clone());
        let ClientFrame::Request { id, body } = frame else {
            continue;
        };
        let script = {
            let mut current = script_handle.lock().expect("not poisoned");
            let now = current.clone();
            // Misbehaving is for the first request of its kind only.
            match body {
                Request::Who => current.on_who = OnWho::Answer,
                Request::Send { .. } => current.on_send = OnSend::Answer,
                _ => {}
            }
            now
        };
        if script.hung {
            continue;
        }
        let result =
            match body {
                Request::Ring => script.ring.clone().map(Response::Ring).ok_or_else(|| {
                    ErrorReply::new(ErrorCode::Invalid, "the fake server has no ring")
                }),
                Request::Login { user, .. } => match script.redirect {
                    Some((server, addr)) => Ok(Response::Redirect { server, addr }),
                    None => {
                        // A live delivery that arrives before the reply must be shown before it.
                        if framed
                            .send(ServerFrame::Deliver(first.clone()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        Ok(Response::LoggedIn {
                            user,
                            registered: true,
                            waiting: 3,
                        })
                    }
                },
                Request::Send { id, to, .. } => match (script.on_send, to) {
                    (OnSend::Crash, _) => {
                        // The server dies with the message received but not answered.
                        crash(&script_handle, crashes);
                        return;
                    }
                    (OnSend::SayShuttingDown, _) => Err(ErrorReply::new(
                        ErrorCode::ShuttingDown,
                        "the server is shutting down; send again in a moment",
                    )),
                    (OnSend::Answer, Recipient::User(recipient)) if recipient == "nobody" => Err(
                        ErrorReply::new(ErrorCode::NoSuchUser, "no such user \"nobody\""),
                    ),
                    (OnSend::Answer, _) => Ok(Response::Sent { id }),
                },
                Request::Ping => Ok(Response::Pong),
                Request::ReadLog { .. } => {
                    let (messages, more) = log_batches.pop().unwrap_or_default();
                    Ok(Response::Log { messages, more })
                }
                Request::ConfirmLog { .. }
                | Request::Join { .. }
                | Request::Leave { .. }
                | Request::Logout => Ok(Response::Done),
                Request::Who => match script.on_who {
                    OnWho::Answer => Ok(Response::Users(vec!["alice".into(), "bob".into()])),
                    OnWho::Hang => {
                        script_handle.lock().expect("not poisoned").hung = true;
                        continue;
                    }
                    OnWho::Hangup => return,
                    OnWho::SayClosing => {
                        let closing = ServerFrame::Closing {
                            reason: "the server is shutting down".into(),
                        };
                        let _ = framed.send(closing).await;
                        return;
                    }
                },
                // Bob is online on s2; everyone else is offline on a farm of one server, s1.
                Request::WhoIs { user } if user == "bob" => Ok(Response::WhoIs {
                    user,
                    online: true,
                    server: Some("s2".into()),
                    home: "s2".into(),
                    backup: Some("s3".into()),
                }),
                Request::WhoIs { user } => Ok(Response::WhoIs {
                    user,
                    online: false,
                    server: None,
                    home: "s1".into(),
                    backup: None,
                }),
                Request::WhoAmI => Ok(who_am_i(&record.frames, &name, script.ring.as_ref())),
                other => Err(ErrorReply::new(
                    ErrorCode::Invalid,
                    format!("the fake server does not do {other:?}"),
                )),
            };
        if framed
            .send(ServerFrame::Reply { id, result })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The last user that logged in here, this server, and their placement on the ring when the
/// server has one (otherwise this server is their home, with no backup).
fn who_am_i(record: &Mutex<Vec<ClientFrame>>, name: &str, ring: Option<&RingInfo>) -> Response {
    let user = record
        .lock()
        .expect("not poisoned")
        .iter()
        .filter_map(|frame| match frame {
            ClientFrame::Request {
                body: Request::Login { user, .. },
                ..
            } => Some(user.clone()),
            _ => None,
        })
        .next_back()
        .unwrap_or_default();
    let ring = ring.map(RingInfo::ring);
    let home = ring.as_ref().and_then(|ring| ring.home(&user));
    let backup = ring.as_ref().and_then(|ring| ring.backup(&user));
    Response::WhoAmI {
        server: name.to_string(),
        home: home.unwrap_or(name).to_string(),
        backup: backup.map(String::from),
        user,
    }
}
