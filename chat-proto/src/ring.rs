//! The consistent-hashing ring that places each user on a home server and a backup server.
//!
//! The algorithm is a public specification, so that any client can compute it:
//!
//! - A user's position is SHA-256 of the UTF-8 user name, read as a 256-bit big-endian
//!   unsigned integer.
//! - Each live server has `V` positions: position 0 is SHA-256 of its name, position `i > 0` is
//!   SHA-256 of `name + "#" + i` (with `i` in decimal). With `V = 1` this is the classic scheme
//!   of one point per server.
//! - Home: the owner of the first position strictly greater than the user's position, wrapping
//!   around to the smallest.
//! - Backup: the owner of the next position after that which belongs to a different server.
//!   With one server there is no backup.
//!
//! Two positions that are equal (which SHA-256 makes practically impossible) are ordered by
//! server name, so every computation of the same ring agrees.

use num_bigint::BigUint;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex, PoisonError};

/// The default number of positions per server: with 64, the load over 3 to 10 servers stays
/// within the bound that the tests below state.
pub const DEFAULT_VNODES: u32 = 64;

/// SHA-256 of `bytes` as a 256-bit big-endian unsigned integer.
pub fn position(bytes: &[u8]) -> BigUint {
    BigUint::from_bytes_be(&Sha256::digest(bytes))
}

/// The ring of a set of servers.
#[derive(Debug, Clone)]
pub struct Ring {
    /// Server names, sorted.
    servers: Vec<String>,
    /// Every position with the index of its server in `servers`, sorted by position.
    points: Vec<(BigUint, usize)>,
    vnodes: u32,
}

impl Ring {
    /// The ring of `servers` with `vnodes` positions each (at least one). Duplicate names count
    /// once.
    pub fn new<S: AsRef<str>>(servers: impl IntoIterator<Item = S>, vnodes: u32) -> Ring {
        let vnodes = vnodes.max(1);
        let mut names: Vec<String> = servers.into_iter().map(|s| s.as_ref().to_owned()).collect();
        names.sort();
        names.dedup();
        let mut points = Vec::with_capacity(names.len() * vnodes as usize);
        for (idx, name) in names.iter().enumerate() {
            points.push((position(name.as_bytes()), idx));
            for vnode in 1..vnodes {
                points.push((position(format!("{name}#{vnode}").as_bytes()), idx));
            }
        }
        // Server indexes follow sorted names, so ties order by name.
        points.sort();
        Ring {
            servers: names,
            points,
            vnodes,
        }
    }

    /// The same ring as [`Ring::new`], shared: the last ring asked for in this process is
    /// kept, and asking again for the same servers and `vnodes` returns it without hashing
    /// anything. A client asks for its ring at every login and every move, and a load
    /// generator holds thousands of clients that all ask for the same one.
    pub fn shared<S: AsRef<str>>(servers: impl IntoIterator<Item = S>, vnodes: u32) -> Arc<Ring> {
        static LAST: Mutex<Option<Arc<Ring>>> = Mutex::new(None);
        let mut names: Vec<String> = servers.into_iter().map(|s| s.as_ref().to_owned()).collect();
        names.sort();
        names.dedup();
        let vnodes = vnodes.max(1);
        let same = |ring: &&Arc<Ring>| ring.servers == names && ring.vnodes == vnodes;
        if let Some(ring) = LAST
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(same)
        {
            return ring.clone();
        }
        // Built outside the lock: a miss costs the hashing, never a wait for someone else's.
        let ring = Arc::new(Ring::new(names, vnodes));
        *LAST.lock().unwrap_or_else(PoisonError::into_inner) = Some(ring.clone());
        ring
    }

    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The user's home server, or `None` on an empty ring.
    pub fn home(&self, user: &str) -> Option<&str> {
        self.successors(user).next()
    }

    /// The user's backup server, or `None` with fewer than two servers.
    pub fn backup(&self, user: &str) -> Option<&str> {
        self.successors(user).nth(1)
    }

    /// Every server in the order the user's clients should try them: home, backup, then on
    /// clockwise around the ring, each server once.
    pub fn successors<'a>(&'a self, user: &str) -> impl Iterator<Item = &'a str> + 'a {
        let user_pos = position(user.as_bytes());
        let start = self.points.partition_point(|(pos, _)| *pos <= user_pos);
        let mut seen = vec![false; self.servers.len()];
        let n_points = self.points.len();
        (0..n_points).filter_map(move |step| {
            let (_, idx) = &self.points[(start + step) % n_points];
            if std::mem::replace(&mut seen[*idx], true) {
                None
            } else {
                Some(self.servers[*idx].as_str())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("s{i}")).collect()
    }

    #[test]
    fn positions_are_big_endian_sha256() {
        // SHA-256("abc") = ba7816bf...
        let pos = position(b"abc");
        assert_eq!(pos.to_bytes_be()[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn a_shared_ring_is_built_once_and_places_as_a_new_one() {
        let first = Ring::shared(["s2", "s1", "s3"], DEFAULT_VNODES);
        let again = Ring::shared(["s1", "s3", "s2", "s1"], DEFAULT_VNODES);
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same servers in another order"
        );
        let built = Ring::new(names(3), DEFAULT_VNODES);
        for user in ["alice", "bob", "carol", "dave"] {
            assert_eq!(
                first.successors(user).collect::<Vec<_>>(),
                built.successors(user).collect::<Vec<_>>()
            );
        }
        let fewer = Ring::shared(["s1", "s2"], DEFAULT_VNODES);
        assert_eq!(fewer.servers(), names(2));
        let coarser = Ring::shared(["s1", "s2"], 1);
        assert_eq!(coarser.vnodes(), 1);
        assert!(!Arc::ptr_eq(&fewer, &coarser));
    }

    #[test]
    fn one_point_per_server_is_the_classic_ring() {
        let ring = Ring::new(["a", "b", "c"], 1);
        // Brute force: the first server position strictly greater than the user's, wrapping.
        for user in ["alice", "bob", "carol", "dave", "eve", "x", "y"] {
            let user_pos = position(user.as_bytes());
            let mut servers: Vec<(BigUint, &str)> = ["a", "b", "c"]
                .iter()
                .map(|s| (position(s.as_bytes()), *s))
                .collect();
            servers.sort();
            let home = servers
                .iter()
                .find(|(pos, _)| *pos > user_pos)
                .unwrap_or(&servers[0])
                .1;
            assert_eq!(ring.home(user), Some(home), "{user}");
        }
    }

    #[test]
    fn empty_and_single_rings() {
        let empty = Ring::new(Vec::<String>::new(), 64);
        assert_eq!(empty.home("alice"), None);
        let single = Ring::new(["only"], 64);
        assert_eq!(single.home("alice"), Some("only"));
        assert_eq!(single.backup("alice"), None);
    }

    #[test]
    fn load_is_balanced_with_64_positions() {
        // The stated bound: over 3 to 10 servers with V = 64 and 20,000 users, every server
        // holds between 0.5 and 1.6 times its fair share.
        let users: Vec<String> = (0..20_000).map(|i| format!("user{i}")).collect();
        for n in 3..=10 {
            let ring = Ring::new(names(n), DEFAULT_VNODES);
            let mut load: HashMap<&str, usize> = HashMap::new();
            for user in &users {
                *load.entry(ring.home(user).unwrap()).or_default() += 1;
            }
            let fair = users.len() as f64 / n as f64;
            for server in ring.servers() {
                let share = *load.get(server.as_str()).unwrap_or(&0) as f64 / fair;
                assert!(
                    (0.5..=1.6).contains(&share),
                    "{n} servers: {server} has {share:.2}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn adding_a_server_moves_only_the_users_it_now_owns(
            n in 1usize..8, vnodes in 1u32..80, users in prop::collection::vec("[a-z0-9_.-]{1,32}", 50)
        ) {
            let before = Ring::new(names(n), vnodes);
            let after = Ring::new(names(n + 1), vnodes);
            let new = format!("s{}", n + 1);
            for user in &users {
                let (old_home, new_home) = (before.home(user).unwrap(), after.home(user).unwrap());
                prop_assert!(old_home == new_home || new_home == new);
            }
        }

        #[test]
        fn removing_a_server_moves_only_its_users(
            n in 2usize..8, gone in 0usize..8, vnodes in 1u32..80,
            users in prop::collection::vec("[a-z0-9_.-]{1,32}", 50)
        ) {
            let all = names(n);
            let gone = &all[gone % n];
            let before = Ring::new(&all, vnodes);
            let after = Ring::new(all.iter().filter(|s| *s != gone), vnodes);
            for user in &users {
                let old_home = before.home(user).unwrap();
                if old_home != gone {
                    prop_assert_eq!(after.home(user), Some(old_home));
                } else {
                    // Its users go to their backup.
                    prop_assert_eq!(after.home(user), before.backup(user));
                }
            }
        }

        #[test]
        fn home_and_backup_differ_with_two_or_more_servers(
            n in 2usize..10, vnodes in 1u32..80, user in "[A-Za-z0-9_.-]{1,32}"
        ) {
            let ring = Ring::new(names(n), vnodes);
            let order: Vec<&str> = ring.successors(&user).collect();
            prop_assert_eq!(order.len(), n);
            prop_assert_ne!(ring.home(&user), ring.backup(&user));
            prop_assert!(ring.backup(&user).is_some());
        }
    }
}
