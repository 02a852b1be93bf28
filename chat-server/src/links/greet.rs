//! The hellos that open a link. The dialer speaks first; the acceptor checks the dialer's name,
//! version and start time before it answers.

use super::Links;
use chat_proto::{
    validate_user, FrameCodec, LinkHello, PeerFrame, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

/// How long each side waits for the other's hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

pub type PeerFramed = Framed<TcpStream, FrameCodec<PeerFrame, PeerFrame>>;
type HelloFramed = Framed<TcpStream, FrameCodec<LinkHello, LinkHello>>;

impl Links {
    fn hello(&self) -> LinkHello {
        LinkHello::new(&self.me, self.started_at_ms)
    }

    /// Opens a link to `peer` over `stream`.
    pub(super) async fn greet_as_dialer(
        &self,
        stream: TcpStream,
        peer: &str,
    ) -> Result<PeerFramed, String> {
        let mut framed = framed(stream);
        framed
            .send(self.hello())
            .await
            .map_err(|err| format!("hello not sent: {err}"))?;
        let hello = read_hello(&mut framed).await?;
        if !hello.refusal.is_empty() {
            return Err(format!("refused: {}", hello.refusal));
        }
        check_hello(&hello)?;
        if hello.name != peer {
            return Err(format!("expected {peer}, but {} answered", hello.name));
        }
        Ok(framed.map_codec(FrameCodec::retype))
    }

    /// Accepts a link over `stream`; returns it with the dialer's name.
    pub(super) async fn greet_as_acceptor(
        &self,
        stream: TcpStream,
    ) -> Result<(PeerFramed, String), String> {
        let mut framed = framed(stream);
        let hello = read_hello(&mut framed).await?;
        let refusal = match check_hello(&hello) {
            Err(refusal) => refusal,
            Ok(()) if hello.name == self.me => format!("{} is this server's own name", self.me),
            Ok(()) if self.dials(&hello.name, hello.started_at_ms) => format!(
                "{} registered after {}, so {} dials",
                self.me, hello.name, self.me
            ),
            Ok(()) => {
                framed
                    .send(self.hello())
                    .await
                    .map_err(|err| format!("hello not sent: {err}"))?;
                return Ok((framed.map_codec(FrameCodec::retype), hello.name));
            }
        };
        let reply = LinkHello {
            refusal: refusal.clone(),
            ..self.hello()
        };
        let _ = timeout(HELLO_TIMEOUT, framed.send(reply)).await;
        Err(refusal)
    }
}

fn framed(stream: TcpStream) -> HelloFramed {
    let _ = stream.set_nodelay(true);
    Framed::new(stream, FrameCodec::new(MAX_FRAME_LEN))
}

async fn read_hello(framed: &mut HelloFramed) -> Result<LinkHello, String> {
    match timeout(HELLO_TIMEOUT, framed.next()).await {
        Err(_) => Err(format!("no hello within {HELLO_TIMEOUT:?}")),
        Ok(None) => Err("closed before hello".into()),
        Ok(Some(Err(err))) => Err(format!("unreadable hello: {err}")),
        Ok(Some(Ok(hello))) => Ok(hello),
    }
}

fn check_hello(hello: &LinkHello) -> Result<(), String> {
    if hello.magic != LinkHello::MAGIC {
        return Err("not a chat server link".into());
    }
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} is not supported; this server speaks version {PROTOCOL_VERSION}",
            hello.version
        ));
    }
    validate_user(&hello.name).map_err(|err| format!("bad server name: {err}"))
}
