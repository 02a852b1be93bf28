//! A front end's word on where its user really is ([`Request::Forwarded`]).
//!
//! The web gateway runs in a server and reaches the farm over the real protocol from that
//! server's own address, so without this every web user would share one source address, and
//! the limits kept per address (failed logins, registrations) would count them all together:
//! one hostile page could slow every web user's logins. The gateway sends, before the login,
//! the address of the browser it serves and a tag that vouches for it: HMAC-SHA256 of the
//! address under the **forwarding key**, derived from the cluster key, which only the farm's
//! servers hold. A session that shows a good tag counts, for those limits, as coming from
//! that address; a client cannot claim an address the farm did not vouch for.
//!
//! A tag is not a secret worth much: it travels only inside the encrypted protocol, and
//! whoever held one could only be counted as that browser, whose limits it would share.
//!
//! [`Request::Forwarded`]: chat_proto::Request::Forwarded

use chat_proto::Forwarded;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// The HKDF label of the forwarding key: a key for nothing else.
const KEY_LABEL: &[u8] = b"chat-farm forwarded address key v1";

type HmacSha256 = Hmac<Sha256>;

/// The farm-wide key that vouches for the addresses front ends forward.
pub struct ForwardingKey(Zeroizing<[u8; 32]>);

impl ForwardingKey {
    /// The forwarding key of the farm whose cluster key is `cluster`.
    pub fn derive(cluster: &[u8; 32]) -> ForwardingKey {
        ForwardingKey(crate::keys::subkey(cluster, KEY_LABEL))
    }

    fn mac(&self, addr: IpAddr) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(self.0.as_ref()).expect("HMAC takes a key of any length");
        match addr {
            IpAddr::V4(v4) => {
                mac.update(&[4]);
                mac.update(&v4.octets());
            }
            IpAddr::V6(v6) => {
                mac.update(&[6]);
                mac.update(&v6.octets());
            }
        }
        mac
    }

    /// What a front end sends for a user at `addr`.
    pub fn vouch(&self, addr: IpAddr) -> Forwarded {
        Forwarded {
            addr,
            tag: self.mac(addr).finalize().into_bytes().into(),
        }
    }

    /// Whether the farm vouched for `forwarded` (the tag compared in constant time).
    pub fn check(&self, forwarded: &Forwarded) -> bool {
        self.mac(forwarded.addr)
            .verify_slice(&forwarded.tag)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_farms_tags_for_that_address_pass() {
        let key = ForwardingKey::derive(&[7; 32]);
        let browser: IpAddr = "203.0.113.9".parse().unwrap();
        let vouched = key.vouch(browser);
        assert!(key.check(&vouched));
        let elsewhere = Forwarded {
            addr: "203.0.113.10".parse().unwrap(),
            ..vouched.clone()
        };
        assert!(
            !key.check(&elsewhere),
            "a tag vouches for its own address only"
        );
        let v6 = key.vouch("2001:db8::9".parse().unwrap());
        assert!(key.check(&v6));
        assert!(
            !ForwardingKey::derive(&[8; 32]).check(&vouched),
            "another farm's key"
        );
        let mut altered = vouched;
        altered.tag[0] ^= 1;
        assert!(!key.check(&altered));
    }
}
