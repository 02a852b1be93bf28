//! [`IdMap`]: the hash maps keyed by message id, with a fast keyed hasher instead of SipHash.
//!
//! Clients choose message ids, so a map keyed by them must not let a client pick ids that
//! collide: a map whose entries all land in one probe sequence costs a linear scan per lookup.
//! [`IdHasher`] is a folded multiply (as in foldhash and wyhash) under a 128-bit key drawn
//! from the operating system's randomness for every map, which no client sees: no hash value,
//! and no order of these maps' entries, is ever sent anywhere. Without the key, ids that
//! collide cannot be chosen, only guessed, one in 2^64 at a time. What this gives up against
//! SipHash is a cryptographic proof, which a map of at most a few hundred thousand entries of
//! short-lived ids (each client sends within its rate limit) does not need; what it gains is
//! a few multiplications per lookup instead of SipHash's rounds, for the several lookups every
//! message costs.

use chat_proto::MessageId;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A map keyed by message id.
pub type IdMap<V> = HashMap<MessageId, V, IdHashKey>;

/// The random key of one map's [`IdHasher`].
#[derive(Clone)]
pub struct IdHashKey {
    seed: u64,
    multiplier: u64,
}

impl Default for IdHashKey {
    /// A fresh key: the standard library's `RandomState` is seeded from the operating system.
    fn default() -> Self {
        let random = RandomState::new();
        IdHashKey {
            seed: random.hash_one(0x9e37_79b9_7f4a_7c15_u64),
            // Odd, so the multiplication never loses the low bits.
            multiplier: random.hash_one(0x2545_f491_4f6c_dd1d_u64) | 1,
        }
    }
}

impl BuildHasher for IdHashKey {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            state: self.seed,
            key: self.clone(),
        }
    }
}

/// Hashes 8 bytes at a time: each word is mixed into the state by a folded multiply with the
/// key (the full 128-bit product, its halves XORed together).
pub struct IdHasher {
    state: u64,
    key: IdHashKey,
}

fn folded_multiply(left: u64, right: u64) -> u64 {
    let product = u128::from(left) * u128::from(right);
    (product as u64) ^ ((product >> 64) as u64)
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let word: [u8; 8] = word.try_into().unwrap_or_default();
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.state = folded_multiply(self.state ^ word, self.key.multiplier);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }

    fn finish(&self) -> u64 {
        folded_multiply(
            self.state ^ self.key.seed,
            self.key.multiplier ^ self.key.seed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_that_differ_in_one_byte_hash_apart_and_keys_differ() {
        let key = IdHashKey::default();
        let base = MessageId::new();
        let mut hashes = HashSet::new();
        hashes.insert(key.hash_one(base));
        for byte in 0..16 {
            for bit in 0..8 {
                let mut bytes = *base.0.as_bytes();
                bytes[byte] ^= 1 << bit;
                hashes.insert(key.hash_one(MessageId(uuid::Uuid::from_bytes(bytes))));
            }
        }
        assert_eq!(hashes.len(), 1 + 16 * 8);
        assert_ne!(key.hash_one(base), IdHashKey::default().hash_one(base));
    }

    #[test]
    fn a_map_of_many_ids_spreads_them() {
        let key = IdHashKey::default();
        // Ids made in one millisecond share their first bytes: their hashes must not. A map
        // finds buckets by the low bits and tells entries apart by the top ones; 10,000 ids
        // spread evenly over 16,384 buckets fill about 7,490 of them.
        let hashes: Vec<u64> = (0..10_000)
            .map(|_| key.hash_one(MessageId::new()))
            .collect();
        let filled = |bucket: fn(u64) -> u64| {
            hashes
                .iter()
                .map(|&h| bucket(h))
                .collect::<HashSet<_>>()
                .len()
        };
        let (low, high) = (filled(|h| h & 0x3fff), filled(|h| h >> 50));
        assert!(
            low > 7200 && high > 7200,
            "{low} and {high} of 16,384 buckets"
        );
    }
}
