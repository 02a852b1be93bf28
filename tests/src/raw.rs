use crate::EVENT_TIMEOUT;
use chat_proto::{ClientFrame, FrameCodec, Hello, Request, Response, ServerFrame, MAX_FRAME_LEN};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

/// A protocol-level connection, for what the real client would never do.
pub struct RawConn {
    framed: Framed<TcpStream, FrameCodec<ServerFrame, ClientFrame>>,
    next_id: u32,
}

impl RawConn {
    /// Connects and exchanges hellos.
    pub async fn connect(addr: &str) -> RawConn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut framed = Framed::new(stream, FrameCodec::<Hello, Hello>::new(MAX_FRAME_LEN));
        framed.send(Hello::new("")).await.expect("send hello");
        let hello = timeout(EVENT_TIMEOUT, framed.next())
            .await
            .expect("hello in time")
            .expect("hello")
            .expect("readable hello");
        assert!(hello.refusal.is_empty(), "refused: {}", hello.refusal);
        RawConn {
            framed: framed.map_codec(FrameCodec::retype),
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

    /// Logs in as `user` with the password the `Client` harness uses.
    pub async fn login(&mut self, user: &str) {
        let reply = self
            .request(Request::Login {
                user: user.into(),
                password: format!("pw-{user}"),
            })
            .await;
        assert!(matches!(reply, Ok(Response::LoggedIn { .. })), "{reply:?}");
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
