//! The specification's `CipherState`: a ChaCha20-Poly1305 key and its 64-bit nonce counter.

use super::{NoiseError, KEY_LEN, MAX_MESSAGE_LEN, TAG_LEN};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::fmt;
use zeroize::Zeroizing;

/// The nonce that Noise reserves for rekeying; no message is ever encrypted under it.
const REKEY_NONCE: u64 = u64::MAX;

/// A key `k` (possibly empty) and a nonce counter `n`.
///
/// Each encryption and each successful decryption uses the next `n`, so a nonce never repeats
/// under one key: at `n = 2^64-1` both refuse with [`NoiseError::NonceExhausted`]. A failed
/// decryption leaves `n` as it was. The key is wiped from memory on drop, and `Debug` does not
/// show it.
#[derive(Default)]
pub struct CipherState {
    key: Option<Zeroizing<[u8; KEY_LEN]>>,
    nonce: u64,
}

impl CipherState {
    /// A state with an empty key, which passes plaintext through unchanged.
    pub fn new() -> CipherState {
        CipherState::default()
    }

    /// `InitializeKey(key)`: a state with this key and `n = 0`.
    pub fn with_key(key: [u8; KEY_LEN]) -> CipherState {
        CipherState {
            key: Some(Zeroizing::new(key)),
            nonce: 0,
        }
    }

    /// `HasKey()`: whether a key is set.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The nonce the next encryption or decryption will use.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// `SetNonce(n)`, for tests of the counter's end only: moving the counter back would repeat
    /// nonces.
    #[cfg(test)]
    pub(crate) fn set_nonce(&mut self, nonce: u64) {
        self.nonce = nonce;
    }

    /// `EncryptWithAd(ad, plaintext)`: the ciphertext with its tag under the next nonce, or the
    /// plaintext itself while the key is empty.
    pub fn encrypt_with_ad(&mut self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let mut message = Vec::with_capacity(plaintext.len() + TAG_LEN);
        message.extend_from_slice(plaintext);
        if let Some(tag) = self.encrypt_in_place(ad, &mut message)? {
            message.extend_from_slice(&tag);
        }
        Ok(message)
    }

    /// `DecryptWithAd(ad, ciphertext)`: the plaintext if the tag is right under the next nonce,
    /// or the ciphertext itself while the key is empty. On failure `n` does not move.
    pub fn decrypt_with_ad(&mut self, ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let mut message = ciphertext.to_vec();
        let len = self.decrypt_in_place(ad, &mut message)?;
        message.truncate(len);
        Ok(message)
    }

    /// [`CipherState::encrypt_with_ad`] without copies: encrypts `buffer` where it is and
    /// returns the tag to put after it, or `None` while the key is empty (the plaintext passes
    /// through).
    pub fn encrypt_in_place(
        &mut self,
        ad: &[u8],
        buffer: &mut [u8],
    ) -> Result<Option<[u8; TAG_LEN]>, NoiseError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let max = MAX_MESSAGE_LEN - TAG_LEN;
        if buffer.len() > max {
            return Err(NoiseError::PayloadTooLong {
                len: buffer.len(),
                max,
            });
        }
        if self.nonce == REKEY_NONCE {
            return Err(NoiseError::NonceExhausted);
        }
        let tag = cipher(key)
            .encrypt_in_place_detached(&nonce_bytes(self.nonce), ad, buffer)
            .map_err(|_| NoiseError::PayloadTooLong {
                len: buffer.len(),
                max,
            })?;
        self.nonce += 1;
        Ok(Some(tag.into()))
    }

    /// [`CipherState::decrypt_with_ad`] without copies: `message` (ciphertext, then the tag)
    /// is decrypted where it is, and the plaintext's length is returned: the plaintext is
    /// `message[..len]`. On failure `message` may hold garbage and the counter stays.
    pub fn decrypt_in_place(&mut self, ad: &[u8], message: &mut [u8]) -> Result<usize, NoiseError> {
        let Some(key) = &self.key else {
            return Ok(message.len());
        };
        if message.len() > MAX_MESSAGE_LEN {
            return Err(NoiseError::MessageTooLong {
                len: message.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        if message.len() < TAG_LEN {
            return Err(NoiseError::MessageTooShort {
                len: message.len(),
                min: TAG_LEN,
            });
        }
        if self.nonce == REKEY_NONCE {
            return Err(NoiseError::NonceExhausted);
        }
        let len = message.len() - TAG_LEN;
        let (ciphertext, tag) = message.split_at_mut(len);
        cipher(key)
            .decrypt_in_place_detached(
                &nonce_bytes(self.nonce),
                ad,
                ciphertext,
                chacha20poly1305::Tag::from_slice(tag),
            )
            .map_err(|_| NoiseError::Decrypt)?;
        self.nonce += 1;
        Ok(len)
    }

    /// `Rekey()`: `k = REKEY(k)`, where `REKEY(k)` is the first 32 bytes of
    /// `ENCRYPT(k, 2^64-1, empty, 32 zero bytes)`. The counter `n` does not change. Without a
    /// key this does nothing.
    pub fn rekey(&mut self) {
        let Some(key) = &mut self.key else {
            return;
        };
        // ChaCha20-Poly1305 puts the tag after the ciphertext, so the first 32 bytes of the
        // encryption are the in-place ciphertext of the zeros; the tag is not needed.
        let mut next = Zeroizing::new([0u8; KEY_LEN]);
        cipher(key)
            .encrypt_in_place_detached(&nonce_bytes(REKEY_NONCE), &[], next.as_mut())
            .expect("32 bytes are far below ChaCha20-Poly1305's limit");
        **key = *next;
    }
}

impl fmt::Debug for CipherState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CipherState")
            .field("has_key", &self.has_key())
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

fn cipher(key: &[u8; KEY_LEN]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(Key::from_slice(key))
}

/// The ChaChaPoly nonce: 32 zero bits, then the counter as 64 bits little-endian.
fn nonce_bytes(counter: u64) -> Nonce {
    let mut nonce = Nonce::default();
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{Aead, Payload};

    const KEY: [u8; KEY_LEN] = [0x42; KEY_LEN];

    #[test]
    fn without_a_key_text_passes_through() {
        let mut state = CipherState::new();
        assert_eq!(state.encrypt_with_ad(b"ad", b"plain").unwrap(), b"plain");
        assert_eq!(state.decrypt_with_ad(b"ad", b"plain").unwrap(), b"plain");
        assert_eq!(state.nonce(), 0);
    }

    #[test]
    fn round_trip_checks_the_associated_data() {
        let (mut sender, mut receiver) = (CipherState::with_key(KEY), CipherState::with_key(KEY));
        let sealed = sender.encrypt_with_ad(b"ad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + TAG_LEN);
        assert_eq!(
            receiver.decrypt_with_ad(b"other", &sealed),
            Err(NoiseError::Decrypt)
        );
        assert_eq!(
            receiver.nonce(),
            0,
            "a failure must not advance the counter"
        );
        assert_eq!(receiver.decrypt_with_ad(b"ad", &sealed).unwrap(), b"hello");
        assert_eq!((sender.nonce(), receiver.nonce()), (1, 1));
    }

    #[test]
    fn nonce_layout_is_32_zero_bits_then_little_endian_counter() {
        let nonce = nonce_bytes(0x0102_0304_0506_0708);
        assert_eq!(&nonce[..], &[0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
        // The same encryption by hand, through the AEAD with that nonce, at counter 5.
        let mut state = CipherState::with_key(KEY);
        state.set_nonce(5);
        let ours = state.encrypt_with_ad(b"ad", b"text").unwrap();
        let mut raw_nonce = [0u8; 12];
        raw_nonce[4] = 5;
        let payload = Payload {
            msg: b"text",
            aad: b"ad",
        };
        let by_hand = cipher(&KEY)
            .encrypt(Nonce::from_slice(&raw_nonce), payload)
            .unwrap();
        assert_eq!(ours, by_hand);
    }

    #[test]
    fn the_last_counter_is_never_used() {
        let mut state = CipherState::with_key(KEY);
        state.set_nonce(u64::MAX - 1);
        state.encrypt_with_ad(b"", b"last").unwrap();
        assert_eq!(state.nonce(), u64::MAX);
        assert_eq!(
            state.encrypt_with_ad(b"", b"one more"),
            Err(NoiseError::NonceExhausted)
        );
        let mut receiver = CipherState::with_key(KEY);
        receiver.set_nonce(u64::MAX);
        assert_eq!(
            receiver.decrypt_with_ad(b"", &[0; 20]),
            Err(NoiseError::NonceExhausted)
        );
    }

    #[test]
    fn rekey_is_the_specifications_rekey() {
        // REKEY(k) = the first 32 bytes of ENCRYPT(k, 2^64-1, empty, 32 zero bytes).
        let mut raw_nonce = [0xffu8; 12];
        raw_nonce[..4].fill(0);
        let payload = Payload {
            msg: &[0u8; 32],
            aad: &[],
        };
        let sealed = cipher(&KEY)
            .encrypt(Nonce::from_slice(&raw_nonce), payload)
            .unwrap();
        let mut state = CipherState::with_key(KEY);
        state.set_nonce(9);
        state.rekey();
        assert_eq!(state.nonce(), 9, "rekeying keeps the counter");
        let mut expected = CipherState::with_key(sealed[..32].try_into().unwrap());
        expected.set_nonce(9);
        assert_eq!(
            state.encrypt_with_ad(b"", b"x").unwrap(),
            expected.encrypt_with_ad(b"", b"x").unwrap()
        );
    }

    #[test]
    fn sizes_are_checked() {
        let mut state = CipherState::with_key(KEY);
        let too_long = vec![0u8; MAX_MESSAGE_LEN - TAG_LEN + 1];
        assert!(matches!(
            state.encrypt_with_ad(b"", &too_long),
            Err(NoiseError::PayloadTooLong { .. })
        ));
        assert!(matches!(
            state.decrypt_with_ad(b"", &[0; TAG_LEN - 1]),
            Err(NoiseError::MessageTooShort { .. })
        ));
        assert!(matches!(
            state.decrypt_with_ad(b"", &vec![0; MAX_MESSAGE_LEN + 1]),
            Err(NoiseError::MessageTooLong { .. })
        ));
        let longest = state
            .encrypt_with_ad(b"", &too_long[1..])
            .expect("the longest payload fits");
        assert_eq!(longest.len(), MAX_MESSAGE_LEN);
    }

    #[test]
    fn debug_hides_the_key() {
        let shown = format!("{:?}", CipherState::with_key(KEY));
        assert!(!shown.contains("42") && !shown.contains("66"), "{shown}");
    }
}
