use crate::EVENT_TIMEOUT;
use chat_proto::{
    handshake_codec, ClientFrame, HandshakeBuilder, Hello, Pattern, Request, Response, SecureCodec,
    ServerFrame, CLIENT_PROLOGUE, MAX_FRAME_LEN,
};
use futures::{SinkExt, StreamExt};
use rand_core::OsRng;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::bytes::Bytes;
use tokio_util::codec::Framed;

/// An encrypted connection after the handshake, before the hellos.
pub type HelloConn = Framed<TcpStream, SecureCodec<Hello, Hello>>;

/// A protocol-level connection, for what the real client would never do.
pub struct RawConn {
    framed: Framed<TcpStream, SecureCodec<ServerFrame, ClientFrame>>,
    next_id: u32,
}

/// Runs the client's Noise NX handshake on `addr`; returns the connection and the server's
/// static key.
pub async fn handshake(addr: &str) -> (HelloConn, [u8; 32]) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let mut framed = Framed::new(stream, handshake_codec());
    let mut noise = HandshakeBuilder::new(Pattern::Nx)
        .prologue(CLIENT_PROLOGUE)
        .build_initiator(&mut OsRng)
        .expect("an NX initiator");
    let first = noise.write_message(&[]).expect("first handshake message");
    framed
        .send(Bytes::from(first))
        .await
        .expect("send handshake");
    let second = timeout(EVENT_TIMEOUT, framed.next())
        .await
        .expect("handshake answer in time")
        .expect("handshake answer")
        .expect("readable handshake answer");
    noise
        .read_message(&second)
        .expect("a valid handshake answer");
    let transport = noise.into_transport().expect("handshake finished");
    let key = transport.remote_static().expect("the server's key");
    (
        framed.map_codec(|_| SecureCodec::new(transport, MAX_FRAME_LEN)),
        key,
    )
}

/// Sends `hello` on a fresh encrypted connection and returns the server's answer.
pub async fn hello_answer(addr: &str, hello: Hello) -> Hello {
    let (mut framed, _) = handshake(addr).await;
    framed.send(hello).await.expect("send hello");
    timeout(EVENT_TIMEOUT, framed.next())
        .await
        .expect("hello in time")
        .expect("hello")
        .expect("readable hello")
}

impl RawConn {
    /// Connects, runs the handshake and exchanges hellos.
    pub async fn connect(addr: &str) -> RawConn {
        let (mut framed, _) = handshake(addr).await;
        framed.send(Hello::new("")).await.expect("send hello");
        let hello = timeout(EVENT_TIMEOUT, framed.next())
            .await
            .expect("hello in time")
            .expect("hello")
            .expect("readable hello");
        assert!(hello.refusal.is_empty(), "refused: {}", hello.refusal);
        RawConn {
            framed: framed.map_codec(SecureCodec::retype),
            next_id: 1,
        }
    }

    /// Sends a request and returns the result of its reply, acknowledging nothing.
    pub async fn request(&mut self, body: Request) -> Result<Response, chat_proto::ErrorReply> {
        let id = self.next_id;
        self.next_id += 1;
        self.framed
            .send(ClientFrame::Request { id, body })
            .await
            .expect("send request");
        loop {
            match self.next_frame().await {
                ServerFrame::Reply {
                    id: reply_id,
                    result,
                } if reply_id == id => return result,
                _ => continue,
            }
        }
    }

    /// Sends every request without waiting, reading replies meanwhile; returns their results
    /// in the order of the requests, once all have come.
    pub async fn requests(
        &mut self,
        bodies: Vec<Request>,
    ) -> Vec<Result<Response, chat_proto::ErrorReply>> {
        let first = self.next_id;
        let count = u32::try_from(bodies.len()).expect("fewer than 2^32 requests");
        self.next_id += count;
        let (mut sink, mut stream) = (&mut self.framed).split();
        let send = async move {
            for (id, body) in (first..).zip(bodies) {
                sink.feed(ClientFrame::Request { id, body })
                    .await
                    .expect("send a request");
            }
            sink.flush().await.expect("flush the requests");
        };
        let receive = async move {
            let mut results: Vec<_> = (0..count).map(|_| None).collect();
            let mut missing = results.len();
            while missing > 0 {
                let frame = timeout(EVENT_TIMEOUT, stream.next())
                    .await
                    .expect("a reply in time")
                    .expect("connection open")
                    .expect("readable frame");
                if let ServerFrame::Reply { id, result } = frame {
                    if let Some(slot) = id
                        .checked_sub(first)
                        .and_then(|i| results.get_mut(i as usize))
                    {
                        missing -= usize::from(slot.is_none());
                        *slot = Some(result);
                    }
                }
            }
            results.into_iter().flatten().collect()
        };
        tokio::join!(send, receive).1
    }

    /// Logs in as `user` with the password the `Client` harness uses.
    pub async fn login(&mut self, user: &str) {
        let reply = self
            .request(Request::password_login(user, format!("pw-{user}")))
            .await;
        assert!(matches!(reply, Ok(Response::LoggedIn { .. })), "{reply:?}");
    }

    /// Sends one frame, whatever it holds.
    pub async fn send_frame(&mut self, frame: ClientFrame) {
        self.framed.send(frame).await.expect("send a frame");
    }

    /// The next frame, or `None` once the connection has ended (closed, reset or unreadable).
    /// Fails the test if nothing comes in time.
    pub async fn try_next_frame(&mut self) -> Option<ServerFrame> {
        match timeout(EVENT_TIMEOUT, self.framed.next()).await {
            Ok(Some(Ok(frame))) => Some(frame),
            Ok(_) => None,
            Err(_) => panic!("the server neither sent a frame nor closed in time"),
        }
    }

    /// Sends every frame as fast as the connection takes them while reading what comes back,
    /// until the server ends the connection; returns what it sent. Fails the test if the
    /// server neither sends nor closes for [`EVENT_TIMEOUT`].
    pub async fn flood(self, frames: Vec<ClientFrame>) -> Vec<ServerFrame> {
        let (mut sink, mut stream) = self.framed.split();
        let send = async move {
            for frame in frames {
                // The server may cut the connection midway.
                if sink.feed(frame).await.is_err() {
                    return;
                }
            }
            let _ = sink.flush().await;
        };
        let receive = async move {
            let mut received = Vec::new();
            loop {
                match timeout(EVENT_TIMEOUT, stream.next()).await {
                    Ok(Some(Ok(frame))) => received.push(frame),
                    Ok(_) => return received,
                    Err(_) => panic!("the server neither sent a frame nor closed in time"),
                }
            }
        };
        tokio::join!(send, receive).1
    }

    pub async fn next_frame(&mut self) -> ServerFrame {
        timeout(EVENT_TIMEOUT, self.framed.next())
            .await
            .expect("a frame in time")
            .expect("connection open")
            .expect("readable frame")
    }
}

impl RawConn {
    /// The underlying socket, for writing bytes the codec would refuse to.
    pub fn into_stream(self) -> TcpStream {
        self.framed.into_inner()
    }
}
