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

    /// Opens a link over `stream` to `peer`, registered at `started_at_ms`.
    pub(super) async fn greet_as_dialer(
        &self,
        stream: TcpStream,
        peer: &str,
        started_at_ms: i64,
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
        if hello.started_at_ms != started_at_ms {
            return Err(format!("{peer} has restarted since the registry was read"));
        }
        Ok(framed.map_codec(FrameCodec::retype))
    }

    /// Reads a dialer's hello and checks it. A dialer that fails the checks is told why.
    pub(super) async fn hear_dialer(&self, stream: TcpStream) -> Result<Dialer, String> {
        let mut framed = framed(stream);
        let hello = read_hello(&mut framed).await?;
        let refusal = match check_hello(&hello) {
            Err(refusal) => refusal,
            Ok(()) if hello.name == self.me => format!("{} is this server's own name", self.me),
            Ok(()) if self.dials(&hello.name, hello.started_at_ms) => format!(
                "{} registered after {}, so {} dials",
                self.me, hello.name, self.me
            ),
            Ok(()) => return Ok(Dialer { framed, hello }),
        };
        self.refuse(Dialer { framed, hello }, refusal.clone()).await;
        Err(refusal)
    }

    /// Answers the dialer's hello: the link is up.
    pub(super) async fn accept(&self, dialer: Dialer) -> Result<PeerFramed, String> {
        let mut framed = dialer.framed;
        framed
            .send(self.hello())
            .await
            .map_err(|err| format!("hello not sent: {err}"))?;
        Ok(framed.map_codec(FrameCodec::retype))
    }

    /// Tells the dialer why there will be no link.
    pub(super) async fn refuse(&self, dialer: Dialer, refusal: String) {
        let mut framed = dialer.framed;
        let reply = LinkHello {
            refusal,
            ..self.hello()
        };
        let _ = timeout(HELLO_TIMEOUT, framed.send(reply)).await;
    }
}

/// A dialer whose hello passed the checks, waiting for the answer.
pub struct Dialer {
    framed: HelloFramed,
    pub hello: LinkHello,
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
