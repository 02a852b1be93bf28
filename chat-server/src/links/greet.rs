//! The handshake and the hellos that open a link.
//!
//! First the Noise XXpsk3 handshake, the dialer as initiator: both sides prove they hold the
//! farm's cluster key (the psk) and show their link keys, and from then on everything is
//! encrypted. Then the hellos, the dialer first; the acceptor checks the dialer's name,
//! version, start time and link key (against the registry, in `accept`) before it answers.

use super::Links;
use crate::connection::{handshake, read_within, send, Secured, HELLO_TIMEOUT};
use chat_proto::{
    key_to_hex, validate_user, HandshakeBuilder, LinkHello, Pattern, PeerFrame, SecureCodec,
    LINK_PROLOGUE, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use rand_core::OsRng;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::time::timeout;

pub type PeerFramed = Secured<PeerFrame, PeerFrame>;
type HelloFramed = Secured<LinkHello, LinkHello>;

impl Links {
    fn hello(&self) -> LinkHello {
        LinkHello::new(&self.me, self.started_at_ms)
    }

    /// Runs the XXpsk3 handshake over `stream`; returns the encrypted connection, the other
    /// side's link key (hex), and how long the handshake took: a network round trip and the
    /// key exchanges' computation, on either side.
    async fn handshake(
        &self,
        stream: TcpStream,
        initiator: bool,
    ) -> Result<(HelloFramed, String, Duration), String> {
        let started = Instant::now();
        let builder = HandshakeBuilder::new(Pattern::XxPsk3)
            .prologue(LINK_PROLOGUE)
            .local_static(self.link_key.clone())
            .psk(*self.cluster_key);
        let noise = if initiator {
            builder.build_initiator(&mut OsRng)
        } else {
            builder.build_responder(&mut OsRng)
        }
        .map_err(|err| format!("handshake failed: {err}"))?;
        let rejected = "handshake failed (is the cluster key the farm's?)";
        let framed = handshake(stream, noise, MAX_FRAME_LEN, rejected).await?;
        let remote = framed
            .codec()
            .remote_static()
            .map(|key| key_to_hex(&key))
            .ok_or("the handshake gave no link key")?;
        Ok((framed, remote, started.elapsed()))
    }

    /// Opens a link over `stream` to `peer`, registered at `started_at_ms` with `link_key`.
    pub(super) async fn greet_as_dialer(
        &self,
        stream: TcpStream,
        peer: &str,
        started_at_ms: i64,
        link_key: &str,
    ) -> Result<PeerFramed, String> {
        let (mut framed, remote_key, took) = self.handshake(stream, true).await?;
        if remote_key != link_key {
            return Err(format!(
                "{peer} presented a link key that is not the one in server_info"
            ));
        }
        send(&mut framed, self.hello(), "hello").await?;
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
        self.stats_of(peer).record_handshake(took);
        Ok(framed.map_codec(SecureCodec::retype))
    }

    /// Runs the handshake, reads a dialer's hello and checks it. A dialer that fails the checks
    /// after the handshake is told why.
    pub(super) async fn hear_dialer(&self, stream: TcpStream) -> Result<Dialer, String> {
        let (mut framed, link_key, handshake) = self.handshake(stream, false).await?;
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
                    handshake,
                })
            }
        };
        let dialer = Dialer {
            framed,
            hello,
            link_key,
            handshake,
        };
        self.refuse(dialer, refusal.clone()).await;
        Err(refusal)
    }

    /// Answers the dialer's hello: the link is up.
    pub(super) async fn accept(&self, dialer: Dialer) -> Result<PeerFramed, String> {
        let mut framed = dialer.framed;
        send(&mut framed, self.hello(), "hello").await?;
        self.stats_of(&dialer.hello.name)
            .record_handshake(dialer.handshake);
        Ok(framed.map_codec(SecureCodec::retype))
    }

    /// Tells the dialer why there will be no link.
    pub(super) async fn refuse(&self, dialer: Dialer, refusal: String) {
        let mut framed = dialer.framed;
        let reply = LinkHello {
            refusal,
            ..self.hello()
        };
        let _ = timeout(HELLO_TIMEOUT, send(&mut framed, reply, "refusal")).await;
    }
}

/// A dialer whose hello passed the checks, waiting for the answer.
pub struct Dialer {
    framed: HelloFramed,
    pub hello: LinkHello,
    /// The link key it showed in the handshake (hex).
    pub link_key: String,
    /// How long the handshake took.
    handshake: Duration,
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
