//! The Noise Protocol Framework (revision 34), sans-I/O, for the two handshakes the farm uses.
//!
//! The suite is fixed: `25519` (X25519 from `x25519-dalek`), `ChaChaPoly` (ChaCha20-Poly1305
//! from `chacha20poly1305`, whose 96-bit nonce is 32 zero bits then the 64-bit counter in
//! little-endian) and `SHA256` (with the specification's HKDF, which is RFC 5869 HKDF with the
//! chaining key as salt and empty info). The layers follow the specification's names:
//!
//! - `keys`: [`Keypair`], an X25519 key pair whose secret is wiped on drop and never printed.
//! - `cipher`: [`CipherState`], one key and its nonce counter.
//! - `symmetric`: [`SymmetricState`], the chaining key and the handshake hash.
//! - `pattern`: [`Pattern`], the two handshake patterns: **NX** (client to server; the client
//!   learns the server's static key and must check it) and **XXpsk3** (server to server; both
//!   static keys travel, and a pre-shared cluster key is mixed in).
//! - `builder`: [`HandshakeBuilder`], which checks the keys against the pattern and role.
//! - `handshake`: [`HandshakeState`], which writes and reads the handshake messages in pattern
//!   order.
//! - `transport`: [`Transport`], one [`CipherState`] per direction once the handshake is done.
//!
//! **Nothing here does I/O or reads a clock.** Messages go in and out as bytes, and the caller
//! passes the randomness for ephemeral keys. A Noise message is at most [`MAX_MESSAGE_LEN`]
//! bytes, so a transport message carries at most [`MAX_PAYLOAD_LEN`] bytes of plaintext: callers
//! split larger frames, and frame each message on the wire themselves.
//!
//! Any error from a handshake ends it: the caller closes the connection. A transport message
//! that fails to decrypt leaves the receiving counter where it was, so a replayed, reordered,
//! truncated or forged message never decrypts, and the caller closes the connection too.

mod builder;
mod cipher;
mod handshake;
mod keys;
mod pattern;
mod symmetric;
mod transport;

pub use builder::HandshakeBuilder;
pub use cipher::CipherState;
pub use handshake::HandshakeState;
pub use keys::Keypair;
pub use pattern::{Pattern, Role};
pub use symmetric::SymmetricState;
pub use transport::Transport;

use thiserror::Error;

/// The length of an X25519 key, public or secret (the specification's `DHLEN`).
pub const KEY_LEN: usize = 32;
/// The length of a SHA-256 digest, and so of the handshake hash (the specification's `HASHLEN`).
pub const HASH_LEN: usize = 32;
/// The length of a pre-shared key.
pub const PSK_LEN: usize = 32;
/// The length of the authentication tag that encryption adds.
pub const TAG_LEN: usize = 16;
/// The longest Noise message, handshake or transport, in bytes.
pub const MAX_MESSAGE_LEN: usize = 65535;
/// The longest plaintext that fits in one transport message.
pub const MAX_PAYLOAD_LEN: usize = MAX_MESSAGE_LEN - TAG_LEN;

/// Why a Noise operation failed.
///
/// During a handshake, every error but a call out of turn, a message of the wrong size, or a
/// refused setup ends the handshake for good.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoiseError {
    /// The pattern gives this role a static key, and none was given.
    #[error("the {role} of {pattern} needs a static key")]
    MissingStaticKey {
        /// The handshake pattern.
        pattern: Pattern,
        /// The side that lacks the key.
        role: Role,
    },
    /// The pattern gives this role no static key, and one was given.
    #[error("the {role} of {pattern} has no static key, but one was given")]
    UnusedStaticKey {
        /// The handshake pattern.
        pattern: Pattern,
        /// The side that was given the key.
        role: Role,
    },
    /// The pattern mixes in a pre-shared key, and none was given.
    #[error("{pattern} needs a pre-shared key")]
    MissingPsk {
        /// The handshake pattern.
        pattern: Pattern,
    },
    /// The pattern has no pre-shared key, and one was given.
    #[error("{pattern} uses no pre-shared key, but one was given")]
    UnusedPsk {
        /// The handshake pattern.
        pattern: Pattern,
    },
    /// `write_message` was called when the other side should write.
    #[error("it is the other side's turn to write a handshake message")]
    WriteOutOfTurn,
    /// `read_message` was called when this side should write.
    #[error("it is this side's turn to write a handshake message, not to read one")]
    ReadOutOfTurn,
    /// The handshake is over: use the [`Transport`].
    #[error("the handshake is already finished")]
    HandshakeFinished,
    /// `into_transport` was called before the last handshake message.
    #[error("the handshake is not finished yet")]
    HandshakeNotFinished,
    /// An earlier step of this handshake failed, so it cannot go on.
    #[error("the handshake failed earlier and cannot go on")]
    HandshakeFailed,
    /// A message to write would be longer than a Noise message may be.
    #[error(
        "the payload of {len} bytes does not fit in one Noise message; at most {max} bytes fit"
    )]
    PayloadTooLong {
        /// The payload's length.
        len: usize,
        /// The longest payload that fits.
        max: usize,
    },
    /// A received message is longer than a Noise message may be.
    #[error("the message of {len} bytes is longer than the Noise limit of {max} bytes")]
    MessageTooLong {
        /// The message's length.
        len: usize,
        /// The longest Noise message.
        max: usize,
    },
    /// A received message is shorter than its pattern or its tag requires.
    #[error("the message of {len} bytes is too short; it needs at least {min} bytes")]
    MessageTooShort {
        /// The message's length.
        len: usize,
        /// The shortest message that could be valid here.
        min: usize,
    },
    /// Authentication failed: the message was forged, altered, replayed, reordered, or sent with
    /// another key (such as a different pre-shared key or prologue).
    #[error("decryption failed: the message is forged, altered, replayed or out of order")]
    Decrypt,
    /// The counter reached 2^64-1, which Noise reserves; the session must end.
    #[error("the nonce counter is exhausted; this session must end")]
    NonceExhausted,
}
