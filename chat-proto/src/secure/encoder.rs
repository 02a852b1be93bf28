//! [`SecureEncoder`]: serialises frames, gathers those that come together into one batch, and
//! encrypts each transport message.

use super::RekeyHandle;
use super::{BATCH, BATCH_LEN_PREFIX, LAST_PIECE, MORE_PIECES, REKEY, REKEY_AFTER_MESSAGES};
use crate::codec::{FrameError, MAX_FRAME_LEN};
use crate::noise::{CipherState, MAX_MESSAGE_LEN, MAX_PAYLOAD_LEN, TAG_LEN};
use bytes::{BufMut, BytesMut};
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use tokio_util::codec::Encoder;

/// The largest send buffer a connection keeps between frames: room for the usual frame (a
/// message of a few hundred bytes), not for a long one, which an idle connection would
/// otherwise hold on to for good.
const SCRATCH_KEPT: usize = 1024;

/// A frame that a [`SecureEncoder`] sends. Most frames are serialised as they are fed; one
/// that many connections send may hand over the bytes it keeps encoded
/// ([`crate::ServerFrame::Deliver`], whose message keeps them).
pub trait Frame: Serialize {
    /// The frame's `postcard` bytes, if it keeps them encoded.
    fn encoded(&self) -> Option<&[u8]> {
        None
    }
}

impl Frame for crate::ClientFrame {}
impl Frame for crate::PeerFrame {}
impl Frame for crate::Hello {}
impl Frame for crate::LinkHello {}
/// For tests and tools that send text.
impl Frame for String {}

/// Frames to send together, sealed in as few transport messages as fit: what a `Framed`
/// sink takes to batch (`SinkExt::send(Batch(frames))`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<Out>(pub Vec<Out>);

/// The sending direction of a [`super::SecureCodec`]: encodes frames of type `Out`, and
/// rekeys.
pub struct SecureEncoder<Out> {
    sending: CipherState,
    max_len: usize,
    /// The frame being sent, serialised; kept between frames to save allocations.
    scratch: Vec<u8>,
    sent_since_rekey: u64,
    rekey: RekeyHandle,
    /// The transport message being filled at the end of the caller's buffer, not encrypted
    /// yet: the offset of its length prefix, and whether it is a batch already (rather than
    /// one frame).
    open: Option<OpenMessage>,
    _types: PhantomData<fn(Out)>,
}

#[derive(Clone, Copy)]
struct OpenMessage {
    start: usize,
    batch: bool,
}

impl<Out> SecureEncoder<Out> {
    pub(super) fn new(sending: CipherState, max_len: usize) -> Self {
        SecureEncoder {
            sending,
            max_len,
            scratch: Vec::new(),
            sent_since_rekey: 0,
            rekey: RekeyHandle::default(),
            open: None,
            _types: PhantomData,
        }
    }

    /// The same direction, now encoding `Out2`.
    pub(super) fn retype<Out2>(self) -> SecureEncoder<Out2> {
        SecureEncoder {
            sending: self.sending,
            max_len: self.max_len,
            scratch: self.scratch,
            sent_since_rekey: self.sent_since_rekey,
            rekey: self.rekey,
            open: self.open,
            _types: PhantomData,
        }
    }

    /// A handle for asking this encoder to rekey, from another task.
    pub fn rekey_handle(&self) -> RekeyHandle {
        self.rekey.clone()
    }

    /// How many transport messages were sent under the current key.
    #[cfg(test)]
    pub(super) fn sent_since_rekey(&self) -> u64 {
        self.sent_since_rekey
    }

    /// Encrypts the open message at the end of `dst`, if there is one: from then on `dst`
    /// holds only whole transport messages, ready to be written.
    pub fn seal(&mut self, dst: &mut BytesMut) -> Result<(), FrameError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let Ok(wire_len) = u16::try_from(dst.len() - open.start - 2 + TAG_LEN) else {
            // Never: a message is filled only as far as it fits. Its plaintext is not sent.
            dst.truncate(open.start);
            return Err(FrameError::TooLarge {
                max: MAX_MESSAGE_LEN,
            });
        };
        dst[open.start..open.start + 2].copy_from_slice(&wire_len.to_be_bytes());
        match self
            .sending
            .encrypt_in_place(&[], &mut dst[open.start + 2..])
        {
            Ok(Some(tag)) => dst.put_slice(&tag),
            Ok(None) => {}
            Err(err) => {
                dst.truncate(open.start);
                return Err(err.into());
            }
        }
        self.sent_since_rekey += 1;
        Ok(())
    }

    /// Adds the serialised frame `payload` to `dst`: to the open message if it fits there,
    /// else in a message of its own, left open for the frames that may follow, or in pieces
    /// if it is longer than one message. Nothing is encrypted but what is complete.
    fn add_payload(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        // `max_len` bounds what the other side may send; what this side sends is bounded by
        // the protocol's largest frame.
        let max_out = MAX_FRAME_LEN.max(self.max_len);
        if payload.len() > max_out {
            return Err(FrameError::TooLarge { max: max_out });
        }
        if self.add_to_open(payload, dst) {
            return Ok(());
        }
        self.seal(dst)?;
        if self.rekey.0.swap(false, Ordering::Relaxed)
            || self.sent_since_rekey >= REKEY_AFTER_MESSAGES
        {
            self.push_message(REKEY, &[], dst)?;
            self.sending.rekey();
            self.sent_since_rekey = 0;
        }
        if !payload.is_empty() && payload.len() < MAX_PAYLOAD_LEN {
            self.open = Some(OpenMessage {
                start: dst.len(),
                batch: false,
            });
            dst.reserve(3 + payload.len() + TAG_LEN);
            dst.put_u16(0);
            dst.put_u8(LAST_PIECE);
            dst.put_slice(payload);
            return Ok(());
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

    /// Appends `payload` to the open message, turning a message of one frame into a batch,
    /// if the result still fits in one transport message. An empty frame never joins a batch.
    fn add_to_open(&mut self, payload: &[u8], dst: &mut BytesMut) -> bool {
        let Some(open) = &mut self.open else {
            return false;
        };
        let plain_len = dst.len() - open.start - 2;
        let grown = plain_len
            + BATCH_LEN_PREFIX
            + payload.len()
            + if open.batch { 0 } else { BATCH_LEN_PREFIX };
        let Ok(payload_len) = u16::try_from(payload.len()) else {
            return false;
        };
        if payload.is_empty() || grown > MAX_PAYLOAD_LEN {
            return false;
        }
        dst.reserve(grown - plain_len + TAG_LEN);
        if !open.batch {
            // One frame so far: its kind becomes a batch's, and it gets its length.
            let first = open.start + 3;
            let first_len = dst.len() - first;
            dst.put_u16(0);
            dst.copy_within(first..first + first_len, first + BATCH_LEN_PREFIX);
            // The first frame fits in a message, so its length fits in two bytes.
            dst[first..first + BATCH_LEN_PREFIX].copy_from_slice(&(first_len as u16).to_be_bytes());
            dst[open.start + 2] = BATCH;
            open.batch = true;
        }
        dst.put_u16(payload_len);
        dst.put_slice(payload);
        true
    }

    /// Appends one transport message to `dst` at once: its length, then `kind` and `data`
    /// encrypted in place, then the tag.
    fn push_message(
        &mut self,
        kind: u8,
        data: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        debug_assert!(self.open.is_none());
        self.open = Some(OpenMessage {
            start: dst.len(),
            batch: false,
        });
        dst.reserve(3 + data.len() + TAG_LEN);
        dst.put_u16(0);
        dst.put_u8(kind);
        dst.put_slice(data);
        self.seal(dst)
    }
}

impl<Out: Frame> SecureEncoder<Out> {
    /// Encodes `item` after what `dst` holds, into the open message if it still fits there:
    /// frames fed one after another travel in one batch until [`SecureEncoder::seal`]. `dst`
    /// must not change between the two (write it out only once sealed).
    pub fn feed(&mut self, item: &Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        if let Some(encoded) = item.encoded() {
            return self.add_payload(encoded, dst);
        }
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        let encoded = postcard::to_extend(item, payload);
        let payload = encoded?;
        let result = self.add_payload(&payload, dst);
        // Keep a small buffer for the next frame, but not the memory of one large reply.
        if payload.capacity() <= SCRATCH_KEPT {
            self.scratch = payload;
        }
        result
    }
}

impl<Out: Frame> Encoder<Out> for SecureEncoder<Out> {
    type Error = FrameError;

    /// One frame, sealed at once.
    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.feed(&item, dst)?;
        self.seal(dst)
    }
}

impl<Out: Frame> Encoder<Batch<Out>> for SecureEncoder<Out> {
    type Error = FrameError;

    /// The frames in as few messages as they fit in, sealed at once.
    fn encode(&mut self, batch: Batch<Out>, dst: &mut BytesMut) -> Result<(), FrameError> {
        for item in &batch.0 {
            self.feed(item, dst)?;
        }
        self.seal(dst)
    }
}
