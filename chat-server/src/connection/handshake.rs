//! The Noise handshake that opens a connection, and the reads and sends of the hellos after it.
//!
//! Both sides of a link and the server's side of a client session drive their handshake here:
//! whose turn it is comes from the pattern, and every message of the other side must come
//! within [`HELLO_TIMEOUT`].

use super::{Secured, HELLO_TIMEOUT};
use chat_proto::{handshake_codec, HandshakeState, SecureCodec};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::bytes::Bytes;
use tokio_util::codec::Framed;

/// The buffers of a connection being opened: the handshake's messages and the hellos are a few
/// hundred bytes (a buffer grows for a longer one).
const HANDSHAKE_BUFFER: usize = 512;

/// Runs `noise` to its end over `stream`, and returns the connection, encrypted from now on,
/// for hellos of type `H` from the other side of at most `max_len` bytes. `rejected` says what
/// a message of the other side that fails the handshake means, in errors.
pub async fn handshake<H>(
    stream: TcpStream,
    mut noise: HandshakeState,
    max_len: usize,
    rejected: &str,
) -> Result<Secured<H, H>, String> {
    let _ = stream.set_nodelay(true);
    let mut framed = Framed::with_capacity(stream, handshake_codec(), HANDSHAKE_BUFFER);
    let noise_error = |err| format!("handshake failed: {err}");
    while !noise.is_finished() {
        if noise.is_my_turn() {
            let message = noise.write_message(&[]).map_err(noise_error)?;
            send(&mut framed, Bytes::from(message), "handshake").await?;
        } else {
            let message = read_within(&mut framed, "handshake message").await?;
            noise
                .read_message(&message)
                .map_err(|err| format!("{rejected}: {err}"))?;
        }
    }
    let transport = noise.into_transport().map_err(noise_error)?;
    Ok(framed.map_codec(|_| SecureCodec::new(transport, max_len)))
}

/// The next item of a connection being opened, within [`HELLO_TIMEOUT`]; `what` names it in
/// errors.
pub async fn read_within<S, T, E>(framed: &mut S, what: &str) -> Result<T, String>
where
    S: Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    match timeout(HELLO_TIMEOUT, framed.next()).await {
        Err(_) => Err(format!("no {what} within {HELLO_TIMEOUT:?}")),
        Ok(None) => Err(format!("closed before the {what}")),
        Ok(Some(Err(err))) => Err(format!("unreadable {what}: {err}")),
        Ok(Some(Ok(item))) => Ok(item),
    }
}

/// Sends `item` of a connection being opened; `what` names it in errors.
pub async fn send<S, T>(framed: &mut S, item: T, what: &str) -> Result<(), String>
where
    S: Sink<T> + Unpin,
    S::Error: std::fmt::Display,
{
    framed
        .send(item)
        .await
        .map_err(|err| format!("{what} not sent: {err}"))
}
