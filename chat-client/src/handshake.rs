//! Opening a connection: TCP, the Noise handshake, the check of the server's key, then the
//! hello, encrypted.
//!
//! The client is the initiator of a Noise NX handshake ([`chat_proto::noise`]) with a fresh
//! ephemeral key on every connection, so a key stolen later cannot open what was recorded
//! before (forward secrecy). The server proves that it holds the farm's static key, and the
//! client accepts that key only as [`ServerTrust`] says: equal to the key pinned with
//! `--server-key`, or, without a pin, recorded for that address in the known-servers file, or
//! new there and recorded now (trust on first use, see `known_servers`; a note goes to
//! standard error, never to standard output). Any other key is a [`KeyRefusal`], and nothing
//! is sent to that server after the handshake: not even the hello.
//!
//! After the handshake every frame is encrypted ([`SecureCodec`]). A frame that does not
//! decrypt is a frame error, which ends the connection. The codec rekeys by itself after
//! 2^20 messages, and [`rekey_on_timer`] asks it to rekey every [`REKEY_INTERVAL`] besides.

use crate::connection::ConnectError;
use crate::known_servers::{KnownServers, KnownServersError, Trust};
use chat_proto::noise::{HandshakeBuilder, Pattern, Transport};
use chat_proto::{
    handshake_codec, key_to_hex, ClientFrame, Hello, RekeyHandle, SecureCodec, ServerFrame,
    CLIENT_PROLOGUE, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use rand_core::OsRng;
use std::time::Duration;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::bytes::Bytes;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

/// How often a connection asks for new keys, besides the codec's own rekey after 2^20
/// messages.
pub const REKEY_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// A connection after its hello: encrypted frames from and to the server.
pub type ServerFramed = Framed<TcpStream, SecureCodec<ServerFrame, ClientFrame>>;

/// Which server keys the client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// Only the farm's public key, given with `--server-key`; every server of the farm has it.
    Pinned([u8; 32]),
    /// Trust on first use: a new address's key is recorded in this file, and a recorded key
    /// must not change.
    FirstUse(KnownServers),
}

/// Why the key a server presented was not accepted.
#[derive(Debug, Error)]
pub enum KeyRefusal {
    #[error(
        "the key of {addr} is {presented}, not the farm key {pinned} given with --server-key; \
         someone may be intercepting the connection, or the server belongs to another farm"
    )]
    NotPinned {
        addr: String,
        presented: String,
        pinned: String,
    },
    /// The key changed since it was recorded, or the known-servers file cannot be used.
    #[error(transparent)]
    Known(#[from] KnownServersError),
    #[error("{addr} presented no key")]
    Missing { addr: String },
}

/// Connects to `addr`, makes the handshake, checks the server's key and exchanges hellos.
/// Returns the encrypted connection, retyped for requests, and the server's name. It sets no
/// timeout of its own: callers bound it (see `Connection::connect`).
pub async fn open(addr: &str, trust: &ServerTrust) -> Result<(ServerFramed, String), ConnectError> {
    let io_error = |source| ConnectError::Io {
        addr: addr.to_string(),
        source,
    };
    let socket = TcpStream::connect(addr).await.map_err(io_error)?;
    // Small frames (acks, requests) should leave at once.
    if let Err(err) = socket.set_nodelay(true) {
        tracing::debug!("cannot set TCP_NODELAY: {err}");
    }
    let mut framed = Framed::new(socket, handshake_codec());
    let transport = initiate(addr, &mut framed).await?;
    check_key(addr, transport.remote_static(), trust).await?;
    let mut framed =
        framed.map_codec(|_| SecureCodec::<Hello, Hello>::new(transport, MAX_FRAME_LEN));
    let frame_error = |source| ConnectError::Frame {
        addr: addr.to_string(),
        source,
    };
    framed.send(Hello::new("")).await.map_err(frame_error)?;
    let hello = match framed.next().await {
        Some(Ok(hello)) => hello,
        Some(Err(source)) => return Err(frame_error(source)),
        None => return Err(closed_early(addr)),
    };
    check_hello(addr, &hello)?;
    let framed = framed.map_codec(|codec| codec.retype::<ServerFrame, ClientFrame>());
    Ok((framed, hello.name))
}

fn closed_early(addr: &str) -> ConnectError {
    ConnectError::ClosedEarly {
        addr: addr.to_string(),
    }
}

/// The NX handshake as the initiator: `-> e`, then `<- e, ee, s, es`.
async fn initiate(
    addr: &str,
    framed: &mut Framed<TcpStream, LengthDelimitedCodec>,
) -> Result<Transport, ConnectError> {
    let noise_error = |source| ConnectError::Handshake {
        addr: addr.to_string(),
        source,
    };
    let io_error = |source| ConnectError::Io {
        addr: addr.to_string(),
        source,
    };
    let mut handshake = HandshakeBuilder::new(Pattern::Nx)
        .prologue(CLIENT_PROLOGUE)
        .build_initiator(&mut OsRng)
        .map_err(noise_error)?;
    let first = handshake.write_message(&[]).map_err(noise_error)?;
    framed.send(Bytes::from(first)).await.map_err(io_error)?;
    let second = match framed.next().await {
        Some(Ok(second)) => second,
        Some(Err(source)) => return Err(io_error(source)),
        None => return Err(closed_early(addr)),
    };
    // The server sends no payload; one would be ignored.
    handshake.read_message(&second).map_err(noise_error)?;
    handshake.into_transport().map_err(noise_error)
}

/// Accepts the server's static key as `trust` says, recording it on first use.
async fn check_key(
    addr: &str,
    presented: Option<[u8; 32]>,
    trust: &ServerTrust,
) -> Result<(), KeyRefusal> {
    let Some(presented) = presented else {
        return Err(KeyRefusal::Missing {
            addr: addr.to_string(),
        });
    };
    let known = match trust {
        ServerTrust::Pinned(pinned) if *pinned == presented => return Ok(()),
        ServerTrust::Pinned(pinned) => {
            return Err(KeyRefusal::NotPinned {
                addr: addr.to_string(),
                presented: key_to_hex(&presented),
                pinned: key_to_hex(pinned),
            })
        }
        ServerTrust::FirstUse(known) => known.clone(),
    };
    let path = known.path().display().to_string();
    let owned_addr = addr.to_string();
    let checked = tokio::task::spawn_blocking(move || known.check(&owned_addr, &presented))
        .await
        .unwrap_or_else(|join_error| {
            Err(KnownServersError::Io {
                path: path.clone(),
                source: std::io::Error::other(join_error),
            })
        });
    match checked? {
        Trust::Known => {}
        Trust::FirstUse => eprintln!(
            "trusting the key of {addr} for the first time: {} (recorded in {path})",
            key_to_hex(&presented)
        ),
    }
    Ok(())
}

/// Checks the server's hello, in the order that gives the most useful error.
fn check_hello(addr: &str, hello: &Hello) -> Result<(), ConnectError> {
    let addr = addr.to_string();
    if hello.magic != Hello::MAGIC {
        return Err(ConnectError::NotChatServer { addr });
    }
    if !hello.refusal.is_empty() {
        return Err(ConnectError::Refused {
            addr,
            reason: hello.refusal.clone(),
        });
    }
    if hello.version != PROTOCOL_VERSION {
        return Err(ConnectError::Version {
            addr,
            theirs: hello.version,
            ours: PROTOCOL_VERSION,
        });
    }
    Ok(())
}

/// Asks the codec behind `rekey` for new keys every `every`, until `stop` is cancelled (when
/// the connection ends). The request takes effect with the next frame the writer sends.
pub(crate) async fn rekey_on_timer(rekey: RekeyHandle, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => rekey.request(),
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::noise::Keypair;
    use chat_proto::Request;
    use tokio_util::bytes::BytesMut;
    use tokio_util::codec::{Decoder as _, Encoder as _};

    #[track_caller]
    fn check(hello: Hello, expected: Option<&str>) {
        let result = check_hello("h:1", &hello).err().map(|err| err.to_string());
        assert_eq!(result.as_deref(), expected);
    }

    #[test]
    fn hellos() {
        check(Hello::new("s1"), None);
        check(
            Hello {
                magic: *b"HTTP",
                ..Hello::new("s1")
            },
            Some("h:1 is not a chat server"),
        );
        check(
            Hello {
                refusal: "too many clients".into(),
                version: 99,
                ..Hello::new("s1")
            },
            Some("h:1 refused the connection: too many clients"),
        );
        let other_version = format!(
            "h:1 speaks protocol version 99; this client speaks version {PROTOCOL_VERSION}"
        );
        check(
            Hello {
                version: 99,
                ..Hello::new("s1")
            },
            Some(&other_version),
        );
    }

    #[tokio::test]
    async fn a_pinned_key_must_match() {
        let pinned = ServerTrust::Pinned([1; 32]);
        assert!(check_key("h:1", Some([1; 32]), &pinned).await.is_ok());
        let refused = check_key("h:1", Some([2; 32]), &pinned).await;
        let message = refused.err().map(|err| err.to_string()).unwrap_or_default();
        let expected = format!(
            "the key of h:1 is {}, not the farm key {} given with --server-key; ",
            "02".repeat(32),
            "01".repeat(32)
        );
        assert!(message.starts_with(&expected), "{message}");
        let missing = check_key("h:1", None, &pinned).await;
        assert!(matches!(missing, Err(KeyRefusal::Missing { .. })));
    }

    /// A client's and a server's codec after an NX handshake in memory.
    fn codecs() -> (
        SecureCodec<ServerFrame, ClientFrame>,
        SecureCodec<ClientFrame, ServerFrame>,
    ) {
        let server_key = Keypair::from_secret_bytes([9; 32]);
        let mut client = HandshakeBuilder::new(Pattern::Nx)
            .prologue(CLIENT_PROLOGUE)
            .build_initiator(&mut OsRng)
            .unwrap();
        let mut server = HandshakeBuilder::new(Pattern::Nx)
            .prologue(CLIENT_PROLOGUE)
            .local_static(server_key)
            .build_responder(&mut OsRng)
            .unwrap();
        server
            .read_message(&client.write_message(&[]).unwrap())
            .unwrap();
        client
            .read_message(&server.write_message(&[]).unwrap())
            .unwrap();
        (
            SecureCodec::new(client.into_transport().unwrap(), MAX_FRAME_LEN),
            SecureCodec::new(server.into_transport().unwrap(), MAX_FRAME_LEN),
        )
    }

    fn ping() -> ClientFrame {
        ClientFrame::Request {
            id: 1,
            body: Request::Ping,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_rekeys_every_interval_until_stopped() {
        let (mut client, mut server) = codecs();
        let stop = CancellationToken::new();
        let every = Duration::from_secs(600);
        let timer = tokio::spawn(rekey_on_timer(client.rekey_handle(), every, stop.clone()));
        // What one ping costs on the wire, and what it costs with a rekey message first: a
        // length, the kind byte and a tag.
        let mut wire = BytesMut::new();
        let mut sizes = Vec::new();
        let mut send = |client: &mut SecureCodec<_, _>| {
            let before = wire.len();
            client.encode(ping(), &mut wire).unwrap();
            sizes.push(wire.len() - before);
        };
        send(&mut client);
        tokio::time::sleep(every - Duration::from_secs(1)).await;
        send(&mut client);
        tokio::time::sleep(Duration::from_secs(2)).await;
        send(&mut client);
        send(&mut client);
        tokio::time::sleep(every).await;
        send(&mut client);
        stop.cancel();
        timer.await.unwrap();
        tokio::time::sleep(every * 2).await;
        send(&mut client);
        let (plain, rekeyed) = (sizes[0], sizes[0] + 2 + 1 + 16);
        assert_eq!(sizes, [plain, plain, rekeyed, plain, rekeyed, plain]);
        // The server follows every rekey.
        let mut n_decoded = 0;
        while let Some(frame) = server.decode(&mut wire).unwrap() {
            assert_eq!(frame, ping());
            n_decoded += 1;
        }
        assert_eq!(n_decoded, sizes.len());
    }
}
