//! Who is logged in on this server, and the way to reach each of their sessions.

use crate::outbound::Outbound;
use std::collections::HashMap;
use std::sync::Mutex;

/// The logged-in users of this server. A user may have several sessions at once.
#[derive(Default)]
pub struct Hub {
    sessions: Mutex<HashMap<String, Vec<Outbound>>>,
}

impl Hub {
    pub fn add(&self, user: &str, session: Outbound) {
        self.lock()
            .entry(user.to_owned())
            .or_default()
            .push(session);
    }

    pub fn remove(&self, user: &str, session_id: u64) {
        let mut sessions = self.lock();
        if let Some(list) = sessions.get_mut(user) {
            list.retain(|session| session.id() != session_id);
            if list.is_empty() {
                sessions.remove(user);
            }
        }
    }

    /// The sessions of `user`, if they are logged in here.
    pub fn sessions_of(&self, user: &str) -> Vec<Outbound> {
        self.lock().get(user).cloned().unwrap_or_default()
    }

    /// The logged-in users, sorted, each with their number of sessions.
    pub fn users(&self) -> Vec<(String, usize)> {
        let mut users: Vec<(String, usize)> = self
            .lock()
            .iter()
            .map(|(user, sessions)| (user.clone(), sessions.len()))
            .collect();
        users.sort();
        users
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Outbound>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
