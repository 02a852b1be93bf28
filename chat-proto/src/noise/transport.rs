//! Transport messages after the handshake: one [`CipherState`] per direction.

use super::keys::Hex;
use super::{
    CipherState, NoiseError, Role, HASH_LEN, KEY_LEN, MAX_MESSAGE_LEN, MAX_PAYLOAD_LEN, TAG_LEN,
};
use std::fmt;

/// Encrypts outgoing and decrypts incoming transport messages, each with its own key and
/// counter.
///
/// Messages must be decrypted in the order they were encrypted, each exactly once: a replayed,
/// reordered, truncated or altered message fails with [`NoiseError::Decrypt`] and leaves the
/// receiving counter where it was. A transport message is at most [`MAX_MESSAGE_LEN`] bytes, so
/// it carries at most [`MAX_PAYLOAD_LEN`] bytes of plaintext: callers split larger frames, and
/// frame each message on the wire themselves (Noise messages carry no length).
///
/// Rekeying is the caller's to schedule: both sides must call [`Transport::rekey_outgoing`]
/// and the peer's [`Transport::rekey_incoming`] at the same point in the message stream.
pub struct Transport {
    role: Role,
    sending: CipherState,
    receiving: CipherState,
    handshake_hash: [u8; HASH_LEN],
    remote_static: Option<[u8; KEY_LEN]>,
}

impl Transport {
    pub(crate) fn new(
        role: Role,
        sending: CipherState,
        receiving: CipherState,
        handshake_hash: [u8; HASH_LEN],
        remote_static: Option<[u8; KEY_LEN]>,
    ) -> Transport {
        Transport {
            role,
            sending,
            receiving,
            handshake_hash,
            remote_static,
        }
    }

    /// The transport message for `plaintext`: the ciphertext and its 16-byte tag, under the
    /// next sending nonce.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if plaintext.len() > MAX_PAYLOAD_LEN {
            return Err(NoiseError::PayloadTooLong {
                len: plaintext.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        self.sending.encrypt_with_ad(&[], plaintext)
    }

    /// The plaintext of the next incoming transport message.
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, NoiseError> {
        if message.len() > MAX_MESSAGE_LEN {
            return Err(NoiseError::MessageTooLong {
                len: message.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        self.receiving.decrypt_with_ad(&[], message)
    }

    /// [`Transport::encrypt`] without copies: `buffer` is encrypted where it is; the returned
    /// tag, if any (a key is always set once the handshake is done), must follow it.
    pub fn encrypt_in_place(
        &mut self,
        buffer: &mut [u8],
    ) -> Result<Option<[u8; TAG_LEN]>, NoiseError> {
        if buffer.len() > MAX_PAYLOAD_LEN {
            return Err(NoiseError::PayloadTooLong {
                len: buffer.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        self.sending.encrypt_in_place(&[], buffer)
    }

    /// [`Transport::decrypt`] without copies: returns the length of the plaintext, which is
    /// then the start of `message`.
    pub fn decrypt_in_place(&mut self, message: &mut [u8]) -> Result<usize, NoiseError> {
        self.receiving.decrypt_in_place(&[], message)
    }

    /// Replaces the sending key with `REKEY(k)`; the peer must call
    /// [`Transport::rekey_incoming`] before it reads the next message.
    pub fn rekey_outgoing(&mut self) {
        self.sending.rekey();
    }

    /// Replaces the receiving key with `REKEY(k)`, to follow the peer's
    /// [`Transport::rekey_outgoing`].
    pub fn rekey_incoming(&mut self) {
        self.receiving.rekey();
    }

    /// The two directions apart, the sending and then the receiving [`CipherState`], for a
    /// connection that reads and writes from different tasks. Each keeps its own counter, so
    /// nothing is shared between them.
    pub fn split(self) -> (CipherState, CipherState) {
        (self.sending, self.receiving)
    }

    /// How many messages this side has encrypted, which is the next sending nonce.
    pub fn sending_nonce(&self) -> u64 {
        self.sending.nonce()
    }

    /// How many messages this side has decrypted, which is the next receiving nonce.
    pub fn receiving_nonce(&self) -> u64 {
        self.receiving.nonce()
    }

    /// The final handshake hash, the same on both sides: it names this session.
    pub fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.handshake_hash
    }

    /// The other side's static public key, if the pattern sent one.
    pub fn remote_static(&self) -> Option<[u8; KEY_LEN]> {
        self.remote_static
    }

    /// This side's role in the handshake.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("role", &self.role)
            .field("sending_nonce", &self.sending_nonce())
            .field("receiving_nonce", &self.receiving_nonce())
            .field(
                "remote_static",
                &self.remote_static.as_ref().map(|key| Hex(key)),
            )
            .finish_non_exhaustive()
    }
}
