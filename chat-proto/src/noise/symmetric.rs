//! The specification's `SymmetricState`: the chaining key `ck` and the handshake hash `h`.

use super::{CipherState, NoiseError, HASH_LEN, KEY_LEN};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// A [`CipherState`] with the chaining key and handshake hash that feed it during a handshake.
pub struct SymmetricState {
    cipher: CipherState,
    chaining_key: Zeroizing<[u8; HASH_LEN]>,
    hash: [u8; HASH_LEN],
}

impl SymmetricState {
    /// `InitializeSymmetric(protocol_name)`: `h` is the name padded with zeros when it fits in
    /// 32 bytes and its SHA-256 otherwise, `ck = h`, and the key is empty.
    pub fn new(protocol_name: &str) -> SymmetricState {
        let name = protocol_name.as_bytes();
        let mut hash = [0u8; HASH_LEN];
        if name.len() <= HASH_LEN {
            hash[..name.len()].copy_from_slice(name);
        } else {
            hash = Sha256::digest(name).into();
        }
        SymmetricState {
            cipher: CipherState::new(),
            chaining_key: Zeroizing::new(hash),
            hash,
        }
    }

    /// `MixKey(input_key_material)`: `ck, temp_k = HKDF(ck, ikm, 2)`, then the key is `temp_k`
    /// with `n = 0`.
    pub fn mix_key(&mut self, input_key_material: &[u8]) {
        let output = hkdf::<{ 2 * HASH_LEN }>(&self.chaining_key, input_key_material);
        self.chaining_key.copy_from_slice(&output[..HASH_LEN]);
        self.cipher = CipherState::with_key(key_from(&output[HASH_LEN..]));
    }

    /// `MixHash(data)`: `h = SHA-256(h || data)`.
    pub fn mix_hash(&mut self, data: &[u8]) {
        self.hash = Sha256::new()
            .chain_update(self.hash)
            .chain_update(data)
            .finalize()
            .into();
    }

    /// `MixKeyAndHash(input_key_material)`: `ck, temp_h, temp_k = HKDF(ck, ikm, 3)`, then
    /// `MixHash(temp_h)`, and the key is `temp_k` with `n = 0`. Used for pre-shared keys.
    pub fn mix_key_and_hash(&mut self, input_key_material: &[u8]) {
        let output = hkdf::<{ 3 * HASH_LEN }>(&self.chaining_key, input_key_material);
        self.chaining_key.copy_from_slice(&output[..HASH_LEN]);
        self.mix_hash(&output[HASH_LEN..2 * HASH_LEN]);
        self.cipher = CipherState::with_key(key_from(&output[2 * HASH_LEN..]));
    }

    /// `GetHandshakeHash()`: `h`, which after the last handshake message identifies the session
    /// (for channel binding).
    pub fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.hash
    }

    /// Whether a key is set yet, so whether what is sent now is encrypted.
    pub fn has_key(&self) -> bool {
        self.cipher.has_key()
    }

    /// `EncryptAndHash(plaintext)`: encrypts with `h` as associated data, then mixes the
    /// ciphertext into `h`.
    pub fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let ciphertext = self.cipher.encrypt_with_ad(&self.hash, plaintext)?;
        self.mix_hash(&ciphertext);
        Ok(ciphertext)
    }

    /// `DecryptAndHash(ciphertext)`: decrypts with `h` as associated data, then mixes the
    /// ciphertext into `h`.
    pub fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let plaintext = self.cipher.decrypt_with_ad(&self.hash, ciphertext)?;
        self.mix_hash(ciphertext);
        Ok(plaintext)
    }

    /// `Split()`: `temp_k1, temp_k2 = HKDF(ck, empty, 2)`, as two fresh cipher states: the first
    /// for messages from the initiator, the second for messages from the responder.
    pub fn split(&self) -> (CipherState, CipherState) {
        let output = hkdf::<{ 2 * HASH_LEN }>(&self.chaining_key, &[]);
        (
            CipherState::with_key(key_from(&output[..HASH_LEN])),
            CipherState::with_key(key_from(&output[HASH_LEN..])),
        )
    }
}

impl fmt::Debug for SymmetricState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SymmetricState")
            .field("cipher", &self.cipher)
            .finish_non_exhaustive()
    }
}

/// The specification's `HKDF(chaining_key, input_key_material, N / HASHLEN)` with
/// HMAC-SHA256: RFC 5869's extract with the chaining key as salt, then expand with empty info.
fn hkdf<const N: usize>(chaining_key: &[u8; HASH_LEN], ikm: &[u8]) -> Zeroizing<[u8; N]> {
    let mut output = Zeroizing::new([0u8; N]);
    Hkdf::<Sha256>::new(Some(chaining_key), ikm)
        .expand(&[], output.as_mut())
        .expect("two or three hash lengths are far below HKDF's limit");
    output
}

/// The first 32 bytes of an HKDF output as a cipher key (`HASHLEN` is already 32, so nothing
/// is truncated).
fn key_from(bytes: &[u8]) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&bytes[..KEY_LEN]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use hkdf::hmac::{Hmac, Mac};

    #[test]
    fn short_names_are_padded_and_long_ones_hashed() {
        let exact = "Noise_NX_25519_ChaChaPoly_SHA256";
        assert_eq!(exact.len(), HASH_LEN);
        assert_eq!(
            SymmetricState::new(exact).handshake_hash(),
            *b"Noise_NX_25519_ChaChaPoly_SHA256"
        );
        let mut padded = [0u8; HASH_LEN];
        padded[..5].copy_from_slice(b"Noise");
        assert_eq!(SymmetricState::new("Noise").handshake_hash(), padded);
        let long = "Noise_XXpsk3_25519_ChaChaPoly_SHA256";
        let hashed: [u8; HASH_LEN] = Sha256::digest(long.as_bytes()).into();
        assert_eq!(SymmetricState::new(long).handshake_hash(), hashed);
    }

    #[test]
    fn hkdf_is_the_specifications_hmac_chain() {
        // The specification defines HKDF by HMAC directly; check the RFC 5869 form against it.
        let hmac = |key: &[u8], data: &[&[u8]]| -> [u8; HASH_LEN] {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
            data.iter().for_each(|part| mac.update(part));
            mac.finalize().into_bytes().into()
        };
        let chaining_key = [3u8; HASH_LEN];
        let ikm = b"input key material";
        let temp_key = hmac(&chaining_key, &[ikm]);
        let output1 = hmac(&temp_key, &[&[1]]);
        let output2 = hmac(&temp_key, &[&output1, &[2]]);
        let output3 = hmac(&temp_key, &[&output2, &[3]]);
        let ours = hkdf::<96>(&chaining_key, ikm);
        assert_eq!(ours[..32], output1);
        assert_eq!(ours[32..64], output2);
        assert_eq!(ours[64..], output3);
    }

    #[test]
    fn both_sides_agree_and_split_into_two_directions() {
        let mut alice = SymmetricState::new("Noise_test");
        let mut bob = SymmetricState::new("Noise_test");
        for side in [&mut alice, &mut bob] {
            side.mix_hash(b"prologue");
            assert!(!side.has_key());
            side.mix_key(b"shared secret");
            assert!(side.has_key());
        }
        let sealed = alice.encrypt_and_hash(b"payload").unwrap();
        assert_eq!(bob.decrypt_and_hash(&sealed).unwrap(), b"payload");
        assert_eq!(alice.handshake_hash(), bob.handshake_hash());
        let (mut alice_out, mut alice_in) = alice.split();
        let (mut bob_in, mut bob_out) = bob.split();
        let one_way = alice_out.encrypt_with_ad(b"", b"ping").unwrap();
        assert_eq!(bob_in.decrypt_with_ad(b"", &one_way).unwrap(), b"ping");
        let other_way = bob_out.encrypt_with_ad(b"", b"ping").unwrap();
        assert_eq!(alice_in.decrypt_with_ad(b"", &other_way).unwrap(), b"ping");
        assert_ne!(one_way, other_way, "the directions have different keys");
    }
}
