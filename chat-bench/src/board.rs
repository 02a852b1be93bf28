//! The board: where each simulated user is logged in, every login it made with its time,
//! and the ends of its connections, shared by the users' tasks and the workload watching them.
//!
//! The users write to it under a short lock that is never held across an `.await`; the
//! workload waits on it for a condition (every displaced user logged in elsewhere, every one
//! home again) and is woken by each change.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::Notify;

/// One user's record.
#[derive(Debug, Default, Clone)]
pub struct Seat {
    /// The server it is logged in on now; `None` while it is between connections.
    pub server: Option<Arc<str>>,
    /// Every login it made, with the server and the moment the server answered.
    pub logins: Vec<(Arc<str>, Instant)>,
    /// Connections its own heartbeat ended (the server answered no ping for too long).
    pub dropped: u32,
    /// Connections that ended otherwise (the server closed or died).
    pub lost: u32,
    /// It gave up: the farm refused it, or no server could be trusted.
    pub failed: bool,
}

impl Seat {
    /// The first login at or after `since` on a server that `wanted` accepts.
    pub fn first_login(&self, since: Instant, wanted: impl Fn(&str) -> bool) -> Option<Instant> {
        self.logins
            .iter()
            .find(|(server, at)| *at >= since && wanted(server))
            .map(|(_, at)| *at)
    }
}

pub struct Board {
    seats: Mutex<Vec<Seat>>,
    changed: Notify,
}

impl Board {
    pub fn new(n_users: usize) -> Arc<Board> {
        Arc::new(Board {
            seats: Mutex::new(vec![Seat::default(); n_users]),
            changed: Notify::new(),
        })
    }

    fn seats(&self) -> MutexGuard<'_, Vec<Seat>> {
        self.seats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn change(&self, user: usize, update: impl FnOnce(&mut Seat)) {
        if let Some(seat) = self.seats().get_mut(user) {
            update(seat);
        }
        self.changed.notify_one();
    }

    pub fn logged_in(&self, user: usize, server: &str) {
        let server: Arc<str> = Arc::from(server);
        self.change(user, |seat| {
            seat.logins.push((server.clone(), Instant::now()));
            seat.server = Some(server);
        });
    }

    /// The user's connection ended; `dropped` when its heartbeat ended it.
    pub fn ended(&self, user: usize, dropped: bool) {
        self.change(user, |seat| {
            seat.server = None;
            if dropped {
                seat.dropped += 1;
            } else {
                seat.lost += 1;
            }
        });
    }

    pub fn failed(&self, user: usize, dropped: bool) {
        self.change(user, |seat| {
            seat.server = None;
            seat.failed = true;
            seat.dropped += u32::from(dropped);
        });
    }

    /// A copy of every seat.
    pub fn snapshot(&self) -> Vec<Seat> {
        self.seats().clone()
    }

    /// Waits until `done` holds for the seats, or until `deadline`; returns whether it held.
    pub async fn wait_until(
        &self,
        deadline: tokio::time::Instant,
        done: impl Fn(&[Seat]) -> bool,
    ) -> bool {
        loop {
            if done(&self.seats()) {
                return true;
            }
            // One waiter at a time: `notify_one` keeps a wake-up that comes before this wait.
            if tokio::time::timeout_at(deadline, self.changed.notified())
                .await
                .is_err()
            {
                return done(&self.seats());
            }
        }
    }
}
