//! The language that chat clients and chat servers speak.
//!
//! This crate holds everything both sides must agree on, and nothing else:
//!
//! - `message`: the client's frames (`Hello`, `ClientFrame`, `ServerFrame`) and what they carry.
//! - `peer`: the frames between servers (`LinkHello`, `PeerFrame`).
//! - `shared`: `SharedMessage`, a message shared by the frames that carry it, its `Deliver`
//!   frame encoded once for every session it is pushed to.
//! - `codec`: length-delimited frames with a hard size limit, each a `postcard` payload.
//! - `names`: the rules for user names, group names and message text.
//! - `ring`: the SHA-256 consistent-hashing ring that places users on servers.
//! - `secure`: frames on an encrypted connection (pieces, batches, rekeying) and the
//!   handshake's codec.
//! - `noise`: the Noise Protocol Framework's handshakes (NX from clients, XXpsk3 between
//!   servers) and transport encryption, with `Keypair` for the keys.
//!
//! **This crate does no I/O.** It has no sockets, no clock and no database, so every rule in it
//! is tested on bytes. The codec implements tokio-util's `Decoder` and `Encoder`, which only turn
//! bytes into values and back; the caller owns the socket. The handshakes take their randomness
//! from the caller.

pub mod codec;
pub mod message;
pub mod names;
pub mod noise;
pub mod peer;
pub mod ring;
pub mod secure;
pub mod shared;

pub use codec::{
    fits_in_frame, FrameCodec, FrameError, MAX_ACK_IDS, MAX_CLIENT_FRAME_LEN, MAX_FRAME_LEN,
    MAX_LOG_BATCH, MAX_PAGE,
};
pub use message::*;
pub use names::{validate_group, validate_text, validate_user, NameError};
pub use noise::{HandshakeBuilder, HandshakeState, Keypair, NoiseError, Pattern, Role, Transport};
pub use peer::{LinkHello, PeerFrame, UserAcks};
pub use ring::Ring;
pub use secure::{
    handshake_codec, key_from_hex, key_to_hex, Batch, Frame, RekeyHandle, SecureCodec,
    SecureDecoder, SecureEncoder, CLIENT_PROLOGUE, LINK_PROLOGUE, REKEY_EVERY,
};
pub use shared::SharedMessage;

/// The protocol version spoken by this build, by clients and servers alike. Both sides send it
/// in their `Hello` (and servers in their `LinkHello`); version 4 added
/// `PeerFrame::GroupChanged`; version 5 pages `Who` and `Groups` (a cursor and a page size in
/// the request, `more` in the reply), bounds `Ack` to `MAX_ACK_IDS` ids, added
/// `ErrorCode::TooLarge`, and added resume tickets (`Credential`, `Request::Passwd`,
/// `Request::RenewTicket`, `Response::Ticket`, `ErrorCode::BadTicket`, `PeerFrame::Revoked`), and
/// `ServerFrame::GoHome`, `ServerFrame::RingChanged` and `PeerFrame::Serving`, and batches of
/// frames in one encrypted message (`secure`); version 6 added `Request::Members`, the echoes
/// of a user's own messages on their other sessions (`ServerFrame::Echo`, `PeerFrame::Echo`)
/// and the notices of joins and leaves (`GroupNotice`, `ServerFrame::Notice`,
/// `PeerFrame::Notice`). Another version is refused at the hello, by clients and servers alike.
pub const PROTOCOL_VERSION: u16 = 6;
