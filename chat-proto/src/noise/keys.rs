//! X25519 key pairs, and the specification's `DH` function.

use super::KEY_LEN;
use rand_core::{CryptoRng, RngCore};
use std::fmt;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// An X25519 key pair: a static key (a server's identity) or an ephemeral one.
///
/// The secret is wiped from memory when the pair is dropped, and `Debug` shows only the public
/// key.
#[derive(Clone)]
pub struct Keypair {
    secret: StaticSecret,
    public: PublicKey,
}

impl Keypair {
    /// A fresh key pair from `rng`, which must be a cryptographically secure generator.
    pub fn generate<R: CryptoRng + RngCore + ?Sized>(rng: &mut R) -> Keypair {
        Keypair::from_secret(StaticSecret::random_from_rng(rng))
    }

    /// The key pair whose secret key is these 32 bytes (as [`Keypair::secret_bytes`] returned
    /// them). X25519 clamps the bytes when it uses them, so any 32 bytes are a valid secret.
    pub fn from_secret_bytes(secret: [u8; KEY_LEN]) -> Keypair {
        let secret = Zeroizing::new(secret);
        Keypair::from_secret(StaticSecret::from(*secret))
    }

    fn from_secret(secret: StaticSecret) -> Keypair {
        let public = PublicKey::from(&secret);
        Keypair { secret, public }
    }

    /// The public key, which may be shown, stored and sent freely.
    pub fn public_key(&self) -> [u8; KEY_LEN] {
        self.public.to_bytes()
    }

    /// The secret key, to store it. The copy is wiped when it is dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The specification's `DH(key_pair, public_key)`: the X25519 shared secret with `remote`.
    ///
    /// As the specification says for 25519, an invalid (small-order) public key gives all
    /// zeros; it allows signalling an error instead but discourages it, so this does not. Such
    /// a key gains an attacker nothing: a static key is checked by the caller, and a session
    /// keyed by all-zero secrets is one the attacker could have had with any key of its own.
    pub(crate) fn dh(&self, remote: &[u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*remote));
        Zeroizing::new(*shared.as_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &Hex(&self.public_key()))
            .finish_non_exhaustive()
    }
}

/// Shows bytes as lowercase hexadecimal.
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl fmt::Debug for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_round_trip_to_the_same_public_key() {
        let keypair = Keypair::generate(&mut rand_core::OsRng);
        let again = Keypair::from_secret_bytes(*keypair.secret_bytes());
        assert_eq!(again.public_key(), keypair.public_key());
    }

    #[test]
    fn rfc7748_public_key() {
        // RFC 7748, section 6.1: Alice's key pair.
        let secret = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(Keypair::from_secret_bytes(secret).public_key(), public);
    }

    #[test]
    fn debug_shows_the_public_key_only() {
        let secret = [7u8; KEY_LEN];
        let keypair = Keypair::from_secret_bytes(secret);
        let shown = format!("{keypair:?}");
        let public: String = keypair
            .public_key()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(shown.contains(&public), "{shown}");
        assert!(!shown.contains("0707070707"), "{shown}");
    }

    #[test]
    fn dh_agrees_and_gives_zeros_for_small_order_keys() {
        let alice = Keypair::generate(&mut rand_core::OsRng);
        let bob = Keypair::generate(&mut rand_core::OsRng);
        assert_eq!(*alice.dh(&bob.public_key()), *bob.dh(&alice.public_key()));
        assert_ne!(*alice.dh(&bob.public_key()), [0u8; KEY_LEN]);
        // The identity point (0) and a point of small order (u = 1) give all zeros.
        let mut one = [0u8; KEY_LEN];
        one[0] = 1;
        for weak in [[0u8; KEY_LEN], one] {
            assert_eq!(*alice.dh(&weak), [0u8; KEY_LEN]);
        }
    }

    fn hex32(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (idx, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * idx..2 * idx + 2], 16).unwrap();
        }
        out
    }
}
