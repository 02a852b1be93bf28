//! One connection to a fake server: the handshake, the hello, and the scripted answers.

use super::{messages, OnSend, OnWho, Script};
use chat_proto::codec::MAX_CLIENT_FRAME_LEN;
use chat_proto::noise::{HandshakeBuilder, Pattern};
use chat_proto::{
    handshake_codec, ClientFrame, ErrorCode, ErrorReply, Hello, Recipient, Request, Response,
    RingInfo, SecureCodec, ServerFrame, CLIENT_PROLOGUE,
};
use futures::{SinkExt, StreamExt};
use rand_core::OsRng;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::bytes::Bytes;
use tokio_util::codec::Framed;

/// Where a connection records the frames it gets.
pub(super) struct Recorder {
    pub(super) frames: Arc<Mutex<Vec<ClientFrame>>>,
    pub(super) n_received: Arc<watch::Sender<usize>>,
    pub(super) hellos: Arc<watch::Sender<usize>>,
}

impl Recorder {
    pub(super) fn record(&self, frame: ClientFrame) {
        self.frames.lock().expect("not poisoned").push(frame);
        self.n_received.send_modify(|n_received| *n_received += 1);
    }
}

pub(super) async fn serve(
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

/// Goes down: ends every connection and closes new ones before the handshake.
pub(super) fn crash(script: &Mutex<Script>, crashes: &watch::Sender<u64>) {
    script.lock().expect("not poisoned").down = true;
    crashes.send_modify(|n_crashes| *n_crashes += 1);
}

/// Makes the NX handshake as the responder with the script's key, takes the hello, then
/// answers frames until the client goes.
async fn converse(
    socket: TcpStream,
    name: String,
    record: Recorder,
    script_handle: Arc<Mutex<Script>>,
    crashes: &watch::Sender<u64>,
) {
    let key = script_handle.lock().expect("not poisoned").key.clone();
    let mut framed = Framed::new(socket, handshake_codec());
    let mut noise = HandshakeBuilder::new(Pattern::Nx)
        .prologue(CLIENT_PROLOGUE)
        .local_static(key)
        .build_responder(&mut OsRng)
        .expect("NX takes a responder's static key");
    let Some(Ok(first)) = framed.next().await else {
        return;
    };
    let Ok(_payload) = noise.read_message(&first) else {
        return;
    };
    let second = noise.write_message(&[]).expect("the second message");
    if framed.send(Bytes::from(second)).await.is_err() {
        return;
    }
    let transport = noise.into_transport().expect("the handshake is done");
    let mut framed =
        framed.map_codec(|_| SecureCodec::<Hello, Hello>::new(transport, MAX_CLIENT_FRAME_LEN));
    let Some(Ok(_hello)) = framed.next().await else {
        return;
    };
    record.hellos.send_modify(|n_hellos| *n_hellos += 1);
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
                Request::Who { .. } => current.on_who = OnWho::Answer,
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
                            .send(ServerFrame::Deliver(first.clone().into()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        Ok(Response::LoggedIn {
                            user,
                            registered: true,
                            waiting: Some(3),
                            ticket: chat_proto::IssuedTicket {
                                ticket: chat_proto::Ticket(b"fake".to_vec()),
                                expires_in_ms: 3_600_000,
                            },
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
                Request::Who { .. } => match script.on_who {
                    OnWho::Answer => Ok(Response::Users {
                        users: vec!["alice".into(), "bob".into()],
                        more: false,
                    }),
                    OnWho::Hang => {
                        script_handle.lock().expect("not poisoned").hung = true;
                        continue;
                    }
                    OnWho::Hangup => return,
                    OnWho::Garble => {
                        // A length, then bytes that are no message of this session.
                        let mut garbage = vec![0, 32];
                        garbage.extend([0x5a; 32]);
                        if framed.get_mut().write_all(&garbage).await.is_err() {
                            return;
                        }
                        continue;
                    }
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
