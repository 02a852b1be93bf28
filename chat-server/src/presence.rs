//! Who is logged in on the other servers, as their links report it.
//!
//! Each peer's set of users comes from one link: its first frame replaces the set, later frames
//! change it, and when the link drops the set is forgotten. Frames from a link that has since
//! been replaced are ignored, so a dying link cannot undo what the new one said.

use crate::paging::first_after;
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Indices into a list of users, by the other server where they are logged in, sorted by
/// server. A direct message's fits in place: routing it allocates nothing here.
pub type Located = SmallVec<[(Arc<str>, SmallVec<[usize; 2]>); 2]>;

#[derive(Default)]
pub struct Presence {
    /// Keyed by server name, shared by every [`Located`] that names the server.
    by_server: Mutex<HashMap<Arc<str>, Remote>>,
}

struct Remote {
    link_id: u64,
    users: HashSet<String>,
}

impl Presence {
    /// `users` are logged in on `server`, as link `link_id` says; `reset` replaces what was known,
    /// unless a newer link (link ids only grow) has already spoken.
    pub fn online(&self, server: &str, link_id: u64, users: Vec<String>, reset: bool) {
        let mut by_server = self.lock();
        let newer_known = by_server
            .get(server)
            .is_some_and(|remote| remote.link_id > link_id);
        if reset && !newer_known {
            by_server.insert(
                server.into(),
                Remote {
                    link_id,
                    users: users.into_iter().collect(),
                },
            );
        } else if let Some(remote) = by_server.get_mut(server) {
            if remote.link_id == link_id {
                remote.users.extend(users);
            }
        }
    }

    pub fn offline(&self, server: &str, link_id: u64, users: Vec<String>) {
        if let Some(remote) = self.lock().get_mut(server) {
            if remote.link_id == link_id {
                for user in &users {
                    remote.users.remove(user);
                }
            }
        }
    }

    /// Forgets `server`'s users: its link `link_id` is gone.
    pub fn forget(&self, server: &str, link_id: u64) {
        let mut by_server = self.lock();
        if by_server
            .get(server)
            .is_some_and(|remote| remote.link_id == link_id)
        {
            by_server.remove(server);
        }
    }

    /// The other servers where `user` is logged in, sorted.
    pub fn servers_of(&self, user: &str) -> Vec<String> {
        let mut servers: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, remote)| remote.users.contains(user))
            .map(|(server, _)| server.to_string())
            .collect();
        servers.sort();
        servers
    }

    /// Which of `users` are logged in on each other server, as indices into `users`: one lock
    /// for a whole group.
    pub fn locate(&self, users: &[impl AsRef<str>]) -> Located {
        let by_server = self.lock();
        let mut found = Located::new();
        for (server, remote) in by_server.iter() {
            if remote.users.is_empty() {
                continue;
            }
            let here: SmallVec<[usize; 2]> = (0..users.len())
                .filter(|&idx| remote.users.contains(users[idx].as_ref()))
                .collect();
            if !here.is_empty() {
                found.push((server.clone(), here));
            }
        }
        drop(by_server);
        found.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        found
    }

    /// Up to `count` of the users logged in on other servers whose names sort after `after`, in
    /// order and each once.
    pub fn users_after(&self, after: Option<&str>, count: usize) -> Vec<String> {
        let by_server = self.lock();
        let names = by_server
            .values()
            .flat_map(|remote| remote.users.iter().map(String::as_str));
        first_after(names, after, count)
    }

    /// How many users each other server has.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.lock()
            .iter()
            .map(|(server, remote)| (server.to_string(), remote.users.len()))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Remote>> {
        self.by_server
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_replaced_link_cannot_change_what_the_new_one_said() {
        let presence = Presence::default();
        presence.online("s2", 1, names(&["alice", "bob"]), true);
        presence.online("s2", 2, names(&["carol"]), true);
        presence.online("s2", 1, names(&["erin"]), true);
        presence.offline("s2", 1, names(&["carol"]));
        presence.online("s2", 1, names(&["dave"]), false);
        presence.forget("s2", 1);
        assert_eq!(presence.users_after(None, 10), ["carol"]);
        assert_eq!(presence.servers_of("carol"), ["s2"]);
        presence.forget("s2", 2);
        assert!(presence.users_after(None, 10).is_empty());
    }

    #[test]
    fn a_user_on_two_servers_is_found_on_both() {
        let presence = Presence::default();
        presence.online("s3", 1, names(&["alice"]), true);
        presence.online("s2", 2, names(&["alice", "bob"]), true);
        assert_eq!(presence.servers_of("alice"), ["s2", "s3"]);
        assert_eq!(presence.servers_of("bob"), ["s2"]);
        assert!(presence.servers_of("carol").is_empty());
        // A page names each user once, wherever they are.
        assert_eq!(presence.users_after(None, 10), ["alice", "bob"]);
        assert_eq!(presence.users_after(Some("alice"), 10), ["bob"]);
        assert_eq!(presence.users_after(None, 1), ["alice"]);
        let users = names(&["alice", "bob", "carol"]);
        let located = presence.locate(&users);
        let located: Vec<(&str, &[usize])> = located
            .iter()
            .map(|(server, indices)| (&**server, &indices[..]))
            .collect();
        // Sorted by server.
        assert_eq!(located, [("s2", &[0, 1][..]), ("s3", &[0][..])]);
    }
}
