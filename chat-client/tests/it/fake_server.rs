//! A scripted stand-in for a chat server; several of them make a fake farm.
//!
//! It answers every request from a fixed script and records every frame the client sends, so
//! that tests can check acknowledgements, confirmations and where the client logged in. Each
//! connection is served on its own task.

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

/// How the fake server ends a connection when the client asks `who`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnWho {
    Answer,
    Hangup,
    SayClosing,
}

/// How the fake server answers requests; tests may change it before the client connects.
#[derive(Debug, Clone)]
struct Script {
    on_who: OnWho,
    /// The answer to `Ring`; `None` refuses the request, as an older server would.
    ring: Option<RingInfo>,
    /// Answers every login with a `Redirect` to this server name and address.
    redirect: Option<(String, String)>,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub name: String,
    /// Every frame the client sent after its hello, over all connections.
    pub received: Arc<Mutex<Vec<ClientFrame>>>,
    script: Arc<Mutex<Script>>,
    /// How many connections are being served.
    open: Arc<watch::Sender<usize>>,
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
            ring: None,
            redirect: None,
        }));
        let server = FakeServer {
            addr,
            name: name.to_string(),
            received,
            script,
            open: Arc::new(watch::Sender::new(0)),
        };
        let (name, record, script, open) = (
            server.name.clone(),
            server.received.clone(),
            server.script.clone(),
            server.open.clone(),
        );
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                open.send_modify(|n_open| *n_open += 1);
                let served = serve(socket, name.clone(), record.clone(), script.clone());
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

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().expect("not poisoned")
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

    /// Every request the client sent, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.received()
            .into_iter()
            .filter_map(|frame| match frame {
                ClientFrame::Request { body, .. } => Some(body),
                ClientFrame::Ack { .. } => None,
            })
            .collect()
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

async fn serve(
    socket: TcpStream,
    name: String,
    record: Arc<Mutex<Vec<ClientFrame>>>,
    script: Arc<Mutex<Script>>,
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
        record.lock().expect("not poisoned").push(frame.clone());
        let ClientFrame::Request { id, body } = frame else {
            continue;
        };
        let script = script.lock().expect("not poisoned").clone();
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
                Request::Send { id, to, .. } => match to {
                    Recipient::User(recipient) if recipient == "nobody" => Err(ErrorReply::new(
                        ErrorCode::NoSuchUser,
                        "no such user \"nobody\"",
                    )),
                    _ => Ok(Response::Sent { id }),
                },
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
                Request::WhoAmI => Ok(who_am_i(&record, &name, script.ring.as_ref())),
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
