//! What client sessions and links have in common about their connections: the Noise handshake
//! that opens them, the one task that writes to their sockets, and the timeouts of both.
//!
//! - `handshake`: runs a Noise handshake to its end, and reads and sends the hellos after it.
//! - `halves`: [`FrameReader`] and the writer's half, each with its own buffer, which an idle
//!   connection lets go of.
//! - `writer`: [`Writer`], the only task that writes to a connection's socket.
//!
//! Nothing here knows what the frames mean: the session and the link say that.

mod halves;
mod handshake;
mod writer;

pub use halves::FrameReader;
pub use handshake::{handshake, read_within, send};
pub use writer::Writer;

use chat_proto::SecureCodec;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long the other side has for each message of the handshake and for its hello. A client
/// has this long for all of them together.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection that closes may take to write what is still queued, and its last
/// frame.
pub const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection's writer may take to hand one batch of frames to the other side
/// (links, and sessions unless `--write-timeout-secs` says otherwise): a peer that reads
/// nothing for so long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection after its handshake: it reads `In` frames and writes `Out` frames, encrypted.
/// Once the hellos are done, [`Writer::split`] cuts it in two halves.
pub type Secured<In, Out> = Framed<TcpStream, SecureCodec<In, Out>>;
