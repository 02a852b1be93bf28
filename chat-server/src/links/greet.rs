//! The handshake and the hellos that open a link.
//!
//! First the Noise XXpsk3 handshake, the dialer as initiator: both sides prove they hold the
//! farm's cluster key (the psk) and show their link keys, and from then on everything is
//! encrypted. Then the hellos, the dialer first; the acceptor checks the dialer's name,
//! version, start time and link key (against the registry, in `accept`) before it answers.

use super::Links;
use chat_proto::{
    handshake_codec, key_to_hex, validate_user, HandshakeBuilder, LinkHello, Pattern, PeerFrame,
    SecureCodec, LINK_PROLOGUE, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use rand_core::OsRng;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::bytes::Bytes;
use tokio_util::codec::Framed;

/// How long each side waits for each handshake message and hello of the other.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

pub type PeerFramed = Framed<TcpStream, SecureCodec<PeerFrame, PeerFrame>>;
type HelloFramed = Framed<TcpStream, SecureCodec<LinkHello, LinkHello>>;

impl Links {
    fn hello(&self) -> LinkHello {
        LinkHello::new(&self.me, self.started_at_ms)
    }

    /// Runs the XXpsk3 handshake over `stream`; returns the encrypted connection and the
    /// other side's link key (hex).
    async fn handshake(
        &self,
        stream: TcpStream,
        initiator: bool,
    ) -> Result<(HelloFramed, String), String> {
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, handshake_codec());
        let builder = HandshakeBuilder::new(Pattern::XxPsk3)
            .prologue(LINK_PROLOGUE)
            .local_static(self.link_key.clone())
            .psk(*self.cluster_key);
        let noise_error = |err| format!("handshake failed: {err}");
        let mut noise = if initiator {
            builder.build_initiator(&mut OsRng)
        } else {
            builder.build_responder(&mut OsRng)
        }
        .map_err(noise_error)?;
        while !noise.is_finished() {
            if noise.is_my_turn() {
                let message = noise.write_message(&[]).map_err(noise_error)?;
                framed
                    .send(Bytes::from(message))
                    .await
                    .map_err(|err| format!("handshake not sent: {err}"))?;
            } else {
                let message = read_within(&mut framed, "handshake message").await?;
                noise.read_message(&message).map_err(|err| {
                    format!("handshake failed (is the cluster key the farm's?): {err}")
                })?;
            }
        }
        let transport = noise.into_transport().map_err(noise_error)?;
        let remote = transport
            .remote_static()
            .map(|key| key_to_hex(&key))
            .ok_or("the handshake gave no link key")?;
        let framed = framed.map_codec(|_| SecureCodec::new(transport, MAX_FRAME_LEN));
        Ok((framed, remote))
    }

    /// Opens a link over `stream` to `peer`, registered at `started_at_ms` with `link_key`.
    pub(super) async fn greet_as_dialer(
        &self,
        stream: TcpStream,
        peer: &str,
        started_at_ms: i64,
        link_key: &str,
    ) -> Result<PeerFramed, String> {
        let (mut framed, remote_key) = self.handshake(stream, true).await?;
        if remote_key != link_key {
            return Err(format!(
                "{peer} presented a link key that is not the one in server_info"
            ));
        }
        framed
            .send(self.hello())
            .await
            .map_err(|err| format!("hello not sent: {err}"))?;
        let hello: LinkHello = read_within(&mut framed, "hello").await?;
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
        Ok(framed.map_codec(SecureCodec::retype))
    }

    /// Runs the handshake, reads a dialer's hello and checks it. A dialer that fails the checks
    /// after the handshake is told why.
    pub(super) async fn hear_dialer(&self, stream: TcpStream) -> Result<Dialer, String> {
        let (mut framed, link_key) = self.handshake(stream, false).await?;
        let hello: LinkHello = read_within(&mut framed, "hello").await?;
        let refusal = match check_hello(&hello) {
            Err(refusal) => refusal,
            Ok(()) if hello.name == self.me => format!("{} is this server's own name", self.me),
            Ok(()) if self.dials(&hello.name, hello.started_at_ms) => format!(
                "{} registered after {}, so {} dials",
                self.me, hello.name, self.me
            ),
            Ok(()) => {
                return Ok(Dialer {
                    framed,
                    hello,
                    link_key,
                })
            }
        };
        let dialer = Dialer {
            framed,
            hello,
            link_key,
        };
        self.refuse(dialer, refusal.clone()).await;
        Err(refusal)
    }

    /// Answers the dialer's hello: the link is up.
    pub(super) async fn accept(&self, dialer: Dialer) -> Result<PeerFramed, String> {
        let mut framed = dialer.framed;
        framed
            .send(self.hello())
            .await
            .map_err(|err| format!("hello not sent: {err}"))?;
        Ok(framed.map_codec(SecureCodec::retype))
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
    /// The link key it showed in the handshake (hex).
    pub link_key: String,
}

/// The next item of a link being opened, within [`HELLO_TIMEOUT`]; `what` names it in errors.
async fn read_within<S, T, E>(framed: &mut S, what: &str) -> Result<T, String>
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    match timeout(HELLO_TIMEOUT, framed.next()).await {
        Err(_) => Err(format!("no {what} within {HELLO_TIMEOUT:?}")),
        Ok(None) => Err(format!("closed before the {what}")),
        Ok(Some(Err(err))) => Err(format!("unreadable {what}: {err}")),
        Ok(Some(Ok(item))) => Ok(item),
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
