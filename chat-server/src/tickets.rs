//! Resume tickets: what lets a client log in again (after a failover, going home, a redirect)
//! without its password, and so without argon2.
//!
//! A ticket is its claims followed by an HMAC-SHA256 tag over them:
//!
//! ```text
//! version (1) | user length (1) | user | device (16) | issued ms (8) | expires ms (8) | epoch (8) | tag (32)
//! ```
//!
//! The key is the farm's **ticket key**, derived from the cluster key with HKDF-SHA256 under
//! its own label, so every server of the farm can check every ticket while the cluster key
//! itself is never used for anything but the links. Checking a ticket costs one HMAC over about
//! 100 bytes: no argon2 and no database. Whether the ticket was revoked is the caller's
//! question: a ticket names the user's revocation epoch, and `logout` and `passwd` bump it.
//!
//! **Forging is hopeless**: without the key, each guess at a tag for chosen claims is right with
//! probability 2^-256, and tags are compared in constant time, so a wrong guess teaches nothing.
//! That is why refused tickets are not counted against the password throttle.
//!
//! Nothing here reads a clock or does I/O: the time comes in as an argument.

use chat_proto::Ticket;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use zeroize::Zeroizing;

/// The HKDF label of the ticket key: a key for nothing else.
const KEY_LABEL: &[u8] = b"chat-farm resume ticket key v1";
/// The first byte of every ticket of this layout.
const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// The longest ticket there can be (a 255-byte name), checked before anything is computed.
const MAX_LEN: usize = 2 + 255 + 16 + 24 + TAG_LEN;

type HmacSha256 = Hmac<Sha256>;

/// What a ticket says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: String,
    /// Random, chosen at the password login; kept through the renewals that follow it.
    pub device: [u8; 16],
    /// When it was issued and when it stops being valid, in milliseconds since the Unix epoch.
    pub issued_ms: i64,
    pub expires_ms: i64,
    /// The user's revocation epoch when it was issued: valid only while it is still theirs.
    pub epoch: i64,
}

/// Why a ticket was refused. A client is only told that it was, and logs in with its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    /// Not a ticket of this layout.
    Malformed,
    /// Its tag is not the farm's: altered, forged, or made under another key.
    Forged,
    Expired,
}

impl fmt::Display for TicketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TicketError::Malformed => "malformed",
            TicketError::Forged => "not the farm's",
            TicketError::Expired => "expired",
        })
    }
}

/// The farm-wide key that seals and opens tickets.
pub struct TicketKey(Zeroizing<[u8; 32]>);

impl TicketKey {
    /// The ticket key of the farm whose cluster key is `cluster`.
    pub fn derive(cluster: &[u8; 32]) -> TicketKey {
        TicketKey(crate::keys::subkey(cluster, KEY_LABEL))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(self.0.as_ref()).expect("HMAC takes a key of any length")
    }

    /// The ticket for `claims`. A name longer than 255 bytes cannot be sealed (valid names are
    /// at most 32).
    pub fn seal(&self, claims: &Claims) -> Option<Ticket> {
        let name_len = u8::try_from(claims.user.len()).ok()?;
        let mut bytes = Vec::with_capacity(2 + claims.user.len() + 40 + TAG_LEN);
        bytes.push(VERSION);
        bytes.push(name_len);
        bytes.extend_from_slice(claims.user.as_bytes());
        bytes.extend_from_slice(&claims.device);
        bytes.extend_from_slice(&claims.issued_ms.to_be_bytes());
        bytes.extend_from_slice(&claims.expires_ms.to_be_bytes());
        bytes.extend_from_slice(&claims.epoch.to_be_bytes());
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        Some(Ticket(bytes))
    }

    /// The claims of `ticket` if the farm sealed it and it has not expired at `now_ms`.
    pub fn open(&self, ticket: &Ticket, now_ms: i64) -> Result<Claims, TicketError> {
        let bytes = &ticket.0;
        if bytes.len() < 2 + TAG_LEN || bytes.len() > MAX_LEN || bytes[0] != VERSION {
            return Err(TicketError::Malformed);
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let name_len = usize::from(body[1]);
        if body.len() != 2 + name_len + 16 + 24 {
            return Err(TicketError::Malformed);
        }
        let mut mac = self.mac();
        mac.update(body);
        // Constant time: a near miss is not told apart from a far one.
        mac.verify_slice(tag).map_err(|_| TicketError::Forged)?;
        let (user, rest) = body[2..].split_at(name_len);
        let user = std::str::from_utf8(user).map_err(|_| TicketError::Malformed)?;
        let (device, rest) = rest.split_at(16);
        let number = |idx: usize| {
            let mut field = [0u8; 8];
            field.copy_from_slice(&rest[idx * 8..idx * 8 + 8]);
            i64::from_be_bytes(field)
        };
        let claims = Claims {
            user: user.to_owned(),
            device: device.try_into().map_err(|_| TicketError::Malformed)?,
            issued_ms: number(0),
            expires_ms: number(1),
            epoch: number(2),
        };
        if now_ms >= claims.expires_ms {
            return Err(TicketError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn key(byte: u8) -> TicketKey {
        TicketKey::derive(&[byte; 32])
    }

    fn claims() -> Claims {
        Claims {
            user: "alice".into(),
            device: [7; 16],
            issued_ms: NOW,
            expires_ms: NOW + 3_600_000,
            epoch: 3,
        }
    }

    #[track_caller]
    fn check(ticket: &Ticket, now_ms: i64, expected: Result<Claims, TicketError>) {
        assert_eq!(key(1).open(ticket, now_ms), expected);
    }

    #[test]
    fn a_sealed_ticket_opens_to_its_claims_until_it_expires() {
        let ticket = key(1).seal(&claims()).unwrap();
        check(&ticket, NOW, Ok(claims()));
        check(&ticket, NOW + 3_599_999, Ok(claims()));
        check(&ticket, NOW + 3_600_000, Err(TicketError::Expired));
    }

    #[test]
    fn any_altered_byte_or_another_key_is_refused() {
        let ticket = key(1).seal(&claims()).unwrap();
        for idx in 0..ticket.0.len() {
            let mut altered = ticket.clone();
            altered.0[idx] ^= 0x01;
            let refused = key(1).open(&altered, NOW).unwrap_err();
            assert!(
                matches!(refused, TicketError::Forged | TicketError::Malformed),
                "byte {idx}: {refused:?}"
            );
        }
        let other_farm = key(2).seal(&claims()).unwrap();
        check(&other_farm, NOW, Err(TicketError::Forged));
    }

    #[test]
    fn a_ticket_of_the_wrong_shape_is_malformed_not_a_panic() {
        for bytes in [vec![], vec![VERSION], vec![VERSION; 200], vec![0; 400]] {
            check(&Ticket(bytes), NOW, Err(TicketError::Malformed));
        }
        let mut truncated = key(1).seal(&claims()).unwrap();
        truncated.0.truncate(truncated.0.len() - 1);
        check(&truncated, NOW, Err(TicketError::Malformed));
    }

    #[test]
    fn the_ticket_key_is_not_the_cluster_key() {
        let cluster = [9u8; 32];
        assert_ne!(*TicketKey::derive(&cluster).0, cluster);
    }
}
