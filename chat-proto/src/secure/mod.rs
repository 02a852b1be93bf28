//! Frames on an encrypted connection: the handshake's messages, then [`SecureCodec`].
//!
//! Every connection starts with a Noise handshake ([`crate::noise`]), each handshake message
//! on the wire as a 2-byte big-endian length and the message ([`handshake_codec`]). After it,
//! every frame travels in a Noise transport message, again behind a 2-byte length. The
//! plaintext of each message is one kind byte and data:
//!
//! - `0`: the last (often the only) piece of a frame;
//! - `1`: a piece of a frame, more follow (a frame may be longer than one Noise message);
//! - `2`: no data; the sender rekeys its sending key after this message, so the receiver
//!   rekeys its receiving key;
//! - `3`: a batch of whole frames, each as a 2-byte big-endian length and the frame: a writer
//!   that has several frames queued seals them in one message, with one tag and one length
//!   prefix, up to the Noise limit of 65,535 bytes. A batch holds at least one frame, every
//!   frame at least one byte, and its lengths add up to exactly the message: an empty batch,
//!   an empty frame, a length past the end or over the receiver's limit is an error. A batch
//!   never falls between the pieces of a frame.
//!
//! Frames are `postcard`. Any message that does not decrypt (forged, altered, replayed,
//! reordered, cut short) is an error, and the caller closes the connection. Counters never
//! repeat: each direction's lives in its own `CipherState`, which a split codec's halves take
//! with them. The sender rekeys after [`REKEY_AFTER_MESSAGES`] messages, or before its next
//! message once [`RekeyHandle::request`] was called (callers do so on a timer; this crate has
//! no clock).
//!
//! - `decoder`: [`SecureDecoder`], which hands out a batch's frames one at a time.
//! - `encoder`: [`SecureEncoder`], which fills a batch with [`SecureEncoder::feed`] until
//!   [`SecureEncoder::seal`]; [`Batch`] asks a `Framed` for the same.

mod decoder;
mod encoder;
#[cfg(test)]
mod tests;

pub use decoder::SecureDecoder;
pub use encoder::{Batch, Frame, SecureEncoder};

use crate::codec::FrameError;
use crate::noise::{Transport, MAX_MESSAGE_LEN};
use bytes::BytesMut;
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The prologue of every client's NX handshake: both sides must agree on it.
pub const CLIENT_PROLOGUE: &[u8] = b"chat-farm client";
/// The prologue of every link's XXpsk3 handshake.
pub const LINK_PROLOGUE: &[u8] = b"chat-farm link";

/// A key as people and files write it: 64 lowercase hex digits.
pub fn key_to_hex(key: &[u8; 32]) -> String {
    key.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Reads a key written by [`key_to_hex`]; surrounding whitespace is ignored.
pub fn key_from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (idx, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * idx..2 * idx + 2], 16).ok()?;
    }
    Some(key)
}

/// How long one sending key is used at most, on connections whose owners keep a clock: they
/// call [`RekeyHandle::request`] this often.
pub const REKEY_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// How many messages one sending key encrypts before it is replaced.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 20;

const LAST_PIECE: u8 = 0;
const MORE_PIECES: u8 = 1;
const REKEY: u8 = 2;
const BATCH: u8 = 3;
/// The length before each frame of a batch.
const BATCH_LEN_PREFIX: usize = 2;

/// The codec of the handshake's messages: a 2-byte length, then the message.
pub fn handshake_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(2)
        .max_frame_length(MAX_MESSAGE_LEN)
        .new_codec()
}

/// Asks a [`SecureCodec`] to rekey its sending direction before its next frame.
#[derive(Clone, Default)]
pub struct RekeyHandle(Arc<AtomicBool>);

impl RekeyHandle {
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Requests a rekey if [`REKEY_EVERY`] has passed since `*last`, and then moves `*last` to
    /// `now`. The caller owns the clock.
    pub fn request_if_due(&self, last: &mut std::time::Instant, now: std::time::Instant) {
        if now.saturating_duration_since(*last) >= REKEY_EVERY {
            self.request();
            *last = now;
        }
    }
}

/// Decodes frames of type `In` of at most `max_len` bytes of plaintext, and encodes frames of
/// type `Out` of at most [`crate::MAX_FRAME_LEN`] (or `max_len`, if larger), encrypted with the
/// connection's [`Transport`].
///
/// A connection whose reading and writing are done by different tasks splits it
/// ([`SecureCodec::split`]) into its two directions, each with its own key and counter.
pub struct SecureCodec<In, Out> {
    decoder: SecureDecoder<In>,
    encoder: SecureEncoder<Out>,
    remote_static: Option<[u8; 32]>,
}

impl<In, Out> SecureCodec<In, Out> {
    pub fn new(transport: Transport, max_len: usize) -> Self {
        let remote_static = transport.remote_static();
        let (sending, receiving) = transport.split();
        SecureCodec {
            decoder: SecureDecoder::new(receiving, max_len),
            encoder: SecureEncoder::new(sending, max_len),
            remote_static,
        }
    }

    /// The same connection, now reading `In2` and writing `Out2` (after the hello). What was
    /// received and not handed out yet (the rest of a batch) is read as `In2`.
    pub fn retype<In2, Out2>(self) -> SecureCodec<In2, Out2> {
        SecureCodec {
            decoder: self.decoder.retype(),
            encoder: self.encoder.retype(),
            remote_static: self.remote_static,
        }
    }

    /// The two directions, for a reading task and a writing task.
    pub fn split(self) -> (SecureDecoder<In>, SecureEncoder<Out>) {
        (self.decoder, self.encoder)
    }

    /// A handle for asking this codec to rekey, from another task.
    pub fn rekey_handle(&self) -> RekeyHandle {
        self.encoder.rekey_handle()
    }

    /// The other side's static key, learned in the handshake.
    pub fn remote_static(&self) -> Option<[u8; 32]> {
        self.remote_static
    }
}

impl<In: DeserializeOwned, Out> Decoder for SecureCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        self.decoder.decode(src)
    }
}

impl<In, Out: Frame> Encoder<Out> for SecureCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encoder.encode(item, dst)
    }
}

impl<In, Out: Frame> Encoder<Batch<Out>> for SecureCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, batch: Batch<Out>, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encoder.encode(batch, dst)
    }
}
