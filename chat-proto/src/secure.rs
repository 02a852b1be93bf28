//! Frames on an encrypted connection: the handshake's messages, then [`SecureCodec`].
//!
//! Every connection starts with a Noise handshake ([`crate::noise`]), each handshake message
//! on the wire as a 2-byte big-endian length and the message ([`handshake_codec`]). After it,
//! every frame travels as one or more Noise transport messages, each again behind a 2-byte
//! length. The plaintext of each message is one kind byte and data:
//!
//! - `0`: the last (often the only) piece of a frame;
//! - `1`: a piece of a frame, more follow (a frame may be longer than one Noise message);
//! - `2`: no data; the sender rekeys its sending key after this message, so the receiver
//!   rekeys its receiving key.
//!
//! Any message that does not decrypt (forged, altered, replayed, reordered, cut short) is an
//! error, and the caller closes the connection. Counters never repeat: each direction's lives
//! in its own `CipherState`, which a split codec's halves take with them. The sender rekeys after [`REKEY_AFTER_MESSAGES`] messages, or on its next
//! frame once [`RekeyHandle::request`] was called (callers do so on a timer; this crate has no
//! clock).

use crate::codec::{FrameError, MAX_FRAME_LEN};
use crate::noise::{CipherState, Transport, MAX_MESSAGE_LEN, MAX_PAYLOAD_LEN, TAG_LEN};
use bytes::{Buf, BufMut, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;
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

/// The largest send buffer a connection keeps between frames: room for the usual frame (a
/// message of a few hundred bytes), not for a long one, which an idle connection would
/// otherwise hold on to for good.
const SCRATCH_KEPT: usize = 1024;

const LAST_PIECE: u8 = 0;
const MORE_PIECES: u8 = 1;
const REKEY: u8 = 2;

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
/// type `Out` of at most [`MAX_FRAME_LEN`] (or `max_len`, if larger), encrypted with the
/// connection's [`Transport`].
///
/// A connection whose reading and writing are done by different tasks splits it
/// ([`SecureCodec::split`]) into its two directions, each with its own key and counter.
pub struct SecureCodec<In, Out> {
    decoder: SecureDecoder<In>,
    encoder: SecureEncoder<Out>,
    remote_static: Option<[u8; 32]>,
}

/// The receiving direction of a [`SecureCodec`]: decodes frames of type `In`.
pub struct SecureDecoder<In> {
    receiving: CipherState,
    max_len: usize,
    /// The pieces received so far of the frame being received.
    partial: Vec<u8>,
    _types: PhantomData<fn() -> In>,
}

/// The sending direction of a [`SecureCodec`]: encodes frames of type `Out`, and rekeys.
pub struct SecureEncoder<Out> {
    sending: CipherState,
    max_len: usize,
    /// The frame being sent, serialised; kept between frames to save allocations.
    scratch: Vec<u8>,
    sent_since_rekey: u64,
    rekey: RekeyHandle,
    _types: PhantomData<fn(Out)>,
}

impl<In, Out> SecureCodec<In, Out> {
    pub fn new(transport: Transport, max_len: usize) -> Self {
        let remote_static = transport.remote_static();
        let (sending, receiving) = transport.split();
        SecureCodec {
            decoder: SecureDecoder {
                receiving,
                max_len,
                partial: Vec::new(),
                _types: PhantomData,
            },
            encoder: SecureEncoder {
                sending,
                max_len,
                scratch: Vec::new(),
                sent_since_rekey: 0,
                rekey: RekeyHandle::default(),
                _types: PhantomData,
            },
            remote_static,
        }
    }

    /// The same connection, now reading `In2` and writing `Out2` (after the hello).
    pub fn retype<In2, Out2>(self) -> SecureCodec<In2, Out2> {
        SecureCodec {
            decoder: SecureDecoder {
                receiving: self.decoder.receiving,
                max_len: self.decoder.max_len,
                partial: self.decoder.partial,
                _types: PhantomData,
            },
            encoder: SecureEncoder {
                sending: self.encoder.sending,
                max_len: self.encoder.max_len,
                scratch: self.encoder.scratch,
                sent_since_rekey: self.encoder.sent_since_rekey,
                rekey: self.encoder.rekey,
                _types: PhantomData,
            },
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

impl<In, Out: Serialize> Encoder<Out> for SecureCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encoder.encode(item, dst)
    }
}

impl<In: DeserializeOwned> Decoder for SecureDecoder<In> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        loop {
            if src.len() < 2 {
                return Ok(None);
            }
            let len = usize::from(u16::from_be_bytes([src[0], src[1]]));
            if src.len() < 2 + len {
                src.reserve(2 + len - src.len());
                return Ok(None);
            }
            let plain_len = self.receiving.decrypt_in_place(&[], &mut src[2..2 + len])?;
            let plaintext = &src[2..2 + plain_len];
            let outcome = match plaintext.split_first() {
                None => Err(FrameError::Garbled),
                Some((&REKEY, [])) => {
                    self.receiving.rekey();
                    Ok(None)
                }
                Some((&kind, data)) if kind == LAST_PIECE || kind == MORE_PIECES => {
                    if self.partial.len() + data.len() > self.max_len {
                        Err(FrameError::TooLarge { max: self.max_len })
                    } else if kind == MORE_PIECES {
                        self.partial.extend_from_slice(data);
                        Ok(None)
                    } else if self.partial.is_empty() {
                        // The usual case, a frame in one message: no copy.
                        postcard::from_bytes(data).map(Some).map_err(Into::into)
                    } else {
                        self.partial.extend_from_slice(data);
                        let frame = postcard::from_bytes(&self.partial);
                        self.partial = Vec::new();
                        frame.map(Some).map_err(Into::into)
                    }
                }
                Some(_) => Err(FrameError::Garbled),
            };
            src.advance(2 + len);
            if let Some(frame) = outcome? {
                return Ok(Some(frame));
            }
        }
    }
}

impl<Out> SecureEncoder<Out> {
    /// A handle for asking this encoder to rekey, from another task.
    pub fn rekey_handle(&self) -> RekeyHandle {
        self.rekey.clone()
    }

    fn encode_payload(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        // `max_len` bounds what the other side may send; what this side sends is bounded by
        // the protocol's largest frame.
        let max_out = MAX_FRAME_LEN.max(self.max_len);
        if payload.len() > max_out {
            return Err(FrameError::TooLarge { max: max_out });
        }
        if self.rekey.0.swap(false, Ordering::Relaxed)
            || self.sent_since_rekey >= REKEY_AFTER_MESSAGES
        {
            self.push_message(REKEY, &[], dst)?;
            self.sending.rekey();
            self.sent_since_rekey = 0;
        }
        let mut pieces = payload.chunks(MAX_PAYLOAD_LEN - 1).peekable();
        if pieces.peek().is_none() {
            return self.push_message(LAST_PIECE, &[], dst);
        }
        while let Some(piece) = pieces.next() {
            let kind = if pieces.peek().is_some() {
                MORE_PIECES
            } else {
                LAST_PIECE
            };
            self.push_message(kind, piece, dst)?;
        }
        Ok(())
    }

    /// Appends one transport message to `dst`: its length, then `kind` and `data` encrypted
    /// in place, then the tag.
    fn push_message(
        &mut self,
        kind: u8,
        data: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let len = 1 + data.len() + TAG_LEN;
        let wire_len = u16::try_from(len).map_err(|_| FrameError::TooLarge {
            max: MAX_MESSAGE_LEN,
        })?;
        dst.reserve(2 + len);
        dst.put_u16(wire_len);
        let start = dst.len();
        dst.put_u8(kind);
        dst.put_slice(data);
        match self.sending.encrypt_in_place(&[], &mut dst[start..]) {
            Ok(Some(tag)) => dst.put_slice(&tag),
            Ok(None) => {}
            Err(err) => {
                dst.truncate(start - 2);
                return Err(err.into());
            }
        }
        self.sent_since_rekey += 1;
        Ok(())
    }
}

impl<Out: Serialize> Encoder<Out> for SecureEncoder<Out> {
    type Error = FrameError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        let encoded = postcard::to_extend(&item, payload);
        let payload = encoded?;
        let result = self.encode_payload(&payload, dst);
        // Keep a small buffer for the next frame, but not the memory of one large reply.
        if payload.capacity() <= SCRATCH_KEPT {
            self.scratch = payload;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::{HandshakeBuilder, Keypair, Pattern};
    use crate::{ChatMessage, MessageId, Recipient, ServerFrame};
    use proptest::prelude::*;
    use rand_core::OsRng;

    /// A client and a server transport after an NX handshake.
    fn pair() -> (Transport, Transport) {
        let server_key = Keypair::generate(&mut OsRng);
        let mut client = HandshakeBuilder::new(Pattern::Nx)
            .build_initiator(&mut OsRng)
            .unwrap();
        let mut server = HandshakeBuilder::new(Pattern::Nx)
            .local_static(server_key)
            .build_responder(&mut OsRng)
            .unwrap();
        let first = client.write_message(&[]).unwrap();
        server.read_message(&first).unwrap();
        let second = server.write_message(&[]).unwrap();
        client.read_message(&second).unwrap();
        (
            client.into_transport().unwrap(),
            server.into_transport().unwrap(),
        )
    }

    type Sender = SecureCodec<ServerFrame, ServerFrame>;

    fn message(text: String) -> ServerFrame {
        ServerFrame::Deliver(std::sync::Arc::new(ChatMessage {
            id: MessageId::new(),
            from: "alice".into(),
            to: Recipient::User("bob".into()),
            text,
            sent_at_ms: 1,
        }))
    }

    fn codecs() -> (Sender, Sender) {
        let (client, server) = pair();
        (
            SecureCodec::new(server, 1 << 20),
            SecureCodec::new(client, 1 << 20),
        )
    }

    #[test]
    fn keys_in_hex_round_trip_and_bad_text_is_refused() {
        let key: [u8; 32] = std::array::from_fn(|idx| idx as u8 * 7);
        let text = key_to_hex(&key);
        assert_eq!(text.len(), 64);
        assert_eq!(key_from_hex(&format!(" {text}\n")), Some(key));
        assert_eq!(key_from_hex(&text[1..]), None);
        assert_eq!(key_from_hex(&text.replace('0', "g")), None);
        assert_eq!(key_from_hex("é".repeat(32).as_str()), None);
    }

    #[test]
    fn frames_longer_than_a_noise_message_cross_in_pieces() {
        let (mut tx, mut rx) = codecs();
        let big = message("x".repeat(200_000));
        let mut wire = BytesMut::new();
        tx.encode(big.clone(), &mut wire).unwrap();
        assert!(wire.len() > 3 * MAX_MESSAGE_LEN);
        // Fed a byte at a time, it still decodes once, at the end.
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in wire {
            buf.put_u8(byte);
            if let Some(frame) = rx.decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, [big]);
    }

    #[test]
    fn a_replayed_or_reordered_message_is_refused() {
        let (mut tx, mut rx) = codecs();
        let (mut first, mut second) = (BytesMut::new(), BytesMut::new());
        tx.encode(message("one".into()), &mut first).unwrap();
        tx.encode(message("two".into()), &mut second).unwrap();
        let mut reordered = second.clone();
        assert!(matches!(
            rx.decode(&mut reordered),
            Err(FrameError::Noise(_))
        ));
        let mut in_order = first.clone();
        assert!(rx.decode(&mut in_order).unwrap().is_some());
        let mut replayed = first;
        assert!(matches!(
            rx.decode(&mut replayed),
            Err(FrameError::Noise(_))
        ));
    }

    #[test]
    fn split_halves_speak_with_a_whole_codec() {
        let (tx, mut rx) = codecs();
        let (mut decoder, mut encoder) = tx.split();
        let [out, rekeyed, back] = ["out", "rekeyed", "back"].map(|text| message(text.into()));
        let mut wire = BytesMut::new();
        encoder.encode(out.clone(), &mut wire).unwrap();
        encoder.rekey_handle().request();
        encoder.encode(rekeyed.clone(), &mut wire).unwrap();
        assert_eq!(rx.decode(&mut wire).unwrap(), Some(out));
        assert_eq!(rx.decode(&mut wire).unwrap(), Some(rekeyed));
        rx.encode(back.clone(), &mut wire).unwrap();
        assert_eq!(decoder.decode(&mut wire).unwrap(), Some(back));
    }

    #[test]
    fn a_requested_rekey_changes_the_keys_on_both_sides() {
        let (mut tx, mut rx) = codecs();
        let mut wire = BytesMut::new();
        tx.encode(message("before".into()), &mut wire).unwrap();
        tx.rekey_handle().request();
        tx.encode(message("after".into()), &mut wire).unwrap();
        let mut got = Vec::new();
        while let Some(frame) = rx.decode(&mut wire).unwrap() {
            got.push(frame);
        }
        assert_eq!(got.len(), 2);
        assert_eq!(tx.encoder.sent_since_rekey, 1);
    }

    #[test]
    fn a_flipped_bit_is_refused() {
        let (mut tx, mut rx) = codecs();
        let mut wire = BytesMut::new();
        tx.encode(message("secret".into()), &mut wire).unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert!(matches!(rx.decode(&mut wire), Err(FrameError::Noise(_))));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn frames_round_trip(texts in prop::collection::vec(".{0,300}", 1..8)) {
            let (mut tx, mut rx) = codecs();
            let frames: Vec<ServerFrame> = texts.into_iter().map(message).collect();
            let mut wire = BytesMut::new();
            for frame in &frames {
                tx.encode(frame.clone(), &mut wire).unwrap();
            }
            let mut got = Vec::new();
            while let Some(frame) = rx.decode(&mut wire).unwrap() {
                got.push(frame);
            }
            prop_assert_eq!(got, frames);
        }
    }
}
