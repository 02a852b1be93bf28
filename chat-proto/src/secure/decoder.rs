//! [`SecureDecoder`]: decrypts transport messages and hands out their frames one at a time.

use super::{BATCH, BATCH_LEN_PREFIX, LAST_PIECE, MORE_PIECES, REKEY};
use crate::codec::FrameError;
use crate::noise::CipherState;
use bytes::{Buf, BytesMut};
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use tokio_util::codec::Decoder;

/// The receiving direction of a [`super::SecureCodec`]: decodes frames of type `In`.
pub struct SecureDecoder<In> {
    receiving: CipherState,
    max_len: usize,
    /// The pieces received so far of the frame being received.
    partial: Vec<u8>,
    /// The batch whose frames are being handed out, if any. It lies decrypted at the front of
    /// the caller's buffer, which it leaves there until its last frame is out.
    batch: Option<OpenBatch>,
    _types: PhantomData<fn() -> In>,
}

/// Where a decrypted batch's frames are, as offsets into the buffer being decoded.
#[derive(Clone, Copy)]
struct OpenBatch {
    /// The length prefix of the next frame.
    next: usize,
    /// The end of the batch's last frame.
    end: usize,
    /// The end of the transport message (its tag included): the bytes consumed once the batch
    /// is done.
    consumed: usize,
}

impl<In> SecureDecoder<In> {
    pub(super) fn new(receiving: CipherState, max_len: usize) -> Self {
        SecureDecoder {
            receiving,
            max_len,
            partial: Vec::new(),
            batch: None,
            _types: PhantomData,
        }
    }

    /// The same direction, now decoding `In2`.
    pub(super) fn retype<In2>(self) -> SecureDecoder<In2> {
        SecureDecoder {
            receiving: self.receiving,
            max_len: self.max_len,
            partial: self.partial,
            batch: self.batch,
            _types: PhantomData,
        }
    }

    /// Checks a batch's frames (the plaintext after its kind byte) before any is handed out:
    /// at least one, none empty or over the limit, and lengths that end exactly at its end.
    fn check_batch(&self, mut frames: &[u8]) -> Result<(), FrameError> {
        if frames.is_empty() {
            return Err(FrameError::BadBatch("no frames"));
        }
        while !frames.is_empty() {
            let Some((prefix, rest)) = frames.split_first_chunk::<BATCH_LEN_PREFIX>() else {
                return Err(FrameError::BadBatch("a length cut short"));
            };
            let len = usize::from(u16::from_be_bytes(*prefix));
            if len == 0 {
                return Err(FrameError::BadBatch("an empty frame"));
            }
            if len > self.max_len {
                return Err(FrameError::TooLarge { max: self.max_len });
            }
            if len > rest.len() {
                return Err(FrameError::BadBatch("a frame cut short"));
            }
            frames = &rest[len..];
        }
        Ok(())
    }
}

impl<In: DeserializeOwned> SecureDecoder<In> {
    /// The next frame of the open batch, which [`SecureDecoder::check_batch`] passed.
    fn next_in_batch(
        &mut self,
        src: &mut BytesMut,
        mut batch: OpenBatch,
    ) -> Result<In, FrameError> {
        let start = batch.next + BATCH_LEN_PREFIX;
        let len = usize::from(u16::from_be_bytes([src[batch.next], src[batch.next + 1]]));
        let frame = postcard::from_bytes(&src[start..start + len]);
        batch.next = start + len;
        if batch.next == batch.end {
            src.advance(batch.consumed);
            self.batch = None;
        } else {
            self.batch = Some(batch);
        }
        frame.map_err(Into::into)
    }
}

impl<In: DeserializeOwned> Decoder for SecureDecoder<In> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        loop {
            if let Some(batch) = self.batch {
                return self.next_in_batch(src, batch).map(Some);
            }
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
                Some((&BATCH, _)) if !self.partial.is_empty() => {
                    Err(FrameError::BadBatch("within the pieces of a frame"))
                }
                Some((&BATCH, frames)) => {
                    self.check_batch(frames)?;
                    let batch = OpenBatch {
                        next: 3,
                        end: 2 + plain_len,
                        consumed: 2 + len,
                    };
                    return self.next_in_batch(src, batch).map(Some);
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
