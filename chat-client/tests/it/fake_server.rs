//! A scripted stand-in for the chat server, good for one connection at a time.
//!
//! It answers every request from a fixed script and records every frame the client sends, so
//! that tests can check acknowledgements and confirmations.

use chat_proto::codec::MAX_CLIENT_FRAME_LEN;
use chat_proto::{
    ChatMessage, ClientFrame, ErrorCode, ErrorReply, FrameCodec, Hello, MessageId, Recipient,
    Request, Response, ServerFrame,
};
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

/// How the fake server ends a connection when the client asks `who`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnWho {
    Answer,
    Hangup,
    SayClosing,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    /// Every frame the client sent after its hello.
    pub received: Arc<Mutex<Vec<ClientFrame>>>,
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
    pub async fn start(on_who: OnWho) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                serve(socket, record.clone(), on_who).await;
            }
        });
        FakeServer { addr, received }
    }

    pub fn received(&self) -> Vec<ClientFrame> {
        self.received.lock().expect("not poisoned").clone()
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
        self.received()
            .into_iter()
            .filter_map(|frame| match frame {
                ClientFrame::Request {
                    body: Request::ConfirmLog { ids },
                    ..
                } => Some(ids),
                _ => None,
            })
            .collect()
    }
}

async fn serve(socket: tokio::net::TcpStream, record: Arc<Mutex<Vec<ClientFrame>>>, on_who: OnWho) {
    let mut framed = Framed::new(
        socket,
        FrameCodec::<Hello, Hello>::new(MAX_CLIENT_FRAME_LEN),
    );
    let Some(Ok(_hello)) = framed.next().await else {
        return;
    };
    if framed.send(Hello::new("fake")).await.is_err() {
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
        let result = match body {
            Request::Login { user, .. } => {
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
            Request::Send { id, to, .. } => match to {
                Recipient::User(name) if name == "nobody" => Err(ErrorReply::new(
                    ErrorCode::NoSuchUser,
                    "no such user \"nobody\"",
                )),
                _ => Ok(Response::Sent { id }),
            },
            Request::ReadLog { .. } => {
                let (messages, more) = log_batches.pop().unwrap_or_default();
                Ok(Response::Log { messages, more })
            }
            Request::ConfirmLog { .. } | Request::Join { .. } | Request::Leave { .. } => {
                Ok(Response::Done)
            }
            Request::Who => match on_who {
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
