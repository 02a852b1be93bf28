//! A simulated user after its first login, living as the real client does: its connection
//! pings the server (`chat_client::heartbeat`), it acknowledges what it is delivered, it fails
//! over along the ring when its server is lost (`chat_client::failover::reconnect`), and it
//! looks at home every `home_poll`, and at once when its server says `GoHome`, and moves there
//! once home takes it (`chat_client::failover::check_home`). Each login and each end is
//! written on the [`Board`]. A user that chats hands each of its connections to its sender
//! task, and counts what it is delivered (see `chat`).
//!
//! **[`Life::stay`] is the one place that handles what a server sends unasked** (the match on
//! [`Incoming`]): deliveries, `GoHome`, ring changes and goodbyes.

use crate::board::Board;
use crate::chat::Chat;
use chat_client::connection::{ConnectOptions, Connection, Incoming};
use chat_client::failover::{self, LostServer, Plan, Reconnected, Relogin};
use chat_client::farm::Moved;
use chat_client::heartbeat;
use chat_client::login::Credentials;
use chat_proto::RingInfo;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What every simulated user of a workload shares.
#[derive(Clone)]
pub struct Habits {
    /// The servers named at start, for a reconnect that the ring does not help.
    pub seeds: Vec<String>,
    /// How its connections are made after the first login: the client's failover options.
    pub options: ConnectOptions,
    /// Between two looks at home; `None` never looks.
    pub home_poll: Option<Duration>,
}

/// One simulated user.
pub struct Life {
    /// Its index on the board.
    pub idx: usize,
    pub credentials: Credentials,
    pub ring: RingInfo,
    pub habits: Habits,
    pub board: Arc<Board>,
    /// Its messages, when it chats (see `chat`).
    pub chat: Option<Chat>,
}

impl Life {
    /// Lives on `moved` (logged in already) until `stop`, or until the farm will not take
    /// the user back.
    pub async fn run(mut self, mut moved: Moved, stop: CancellationToken) {
        loop {
            let server = moved.connection.server_name().to_string();
            self.board.logged_in(self.idx, &server);
            let connection = Arc::new(moved.connection);
            if let Some(chat) = &mut self.chat {
                chat.read_log(&connection).await;
                chat.connected(&connection);
            }
            let ended = tokio::select! {
                ended = self.stay(&connection, &mut moved.incoming) => ended,
                () = stop.cancelled() => {
                    close(connection).await;
                    return;
                }
            };
            let why = match ended {
                Ended::Home(home) => {
                    close(connection).await;
                    moved = home;
                    continue;
                }
                Ended::Lost(why) => why,
            };
            if let Some(chat) = &self.chat {
                chat.disconnected();
            }
            self.board
                .ended(self.idx, heartbeat::ended_by_silence(&why));
            let lost = LostServer {
                name: server,
                addr: connection.addr().to_string(),
            };
            drop(connection);
            match self.come_back(lost, &stop).await {
                Some(again) => moved = again,
                None => return,
            }
        }
    }

    /// Logs in again after the connection to `lost` ended, as the client does (it also re-runs
    /// a login that a lost connection left unanswered), then lives on.
    pub async fn rejoin(mut self, lost: LostServer, stop: CancellationToken) {
        if let Some(moved) = self.come_back(lost, &stop).await {
            self.run(moved, stop).await;
        }
    }

    /// The reconnect after a loss; `None` when stopped, or when the farm refused the user
    /// (which the board then says).
    async fn come_back(&mut self, lost: LostServer, stop: &CancellationToken) -> Option<Moved> {
        let again = tokio::select! {
            again = self.reconnect(lost) => again,
            () = stop.cancelled() => return None,
        };
        if again.is_none() {
            self.board.failed(self.idx, false);
        }
        again
    }

    /// Stays on `connection` until it ends or the user moves home.
    async fn stay(
        &mut self,
        connection: &Arc<Connection>,
        incoming: &mut tokio::sync::mpsc::Receiver<Incoming>,
    ) -> Ended {
        // The first look waits for the poll; a look the server asks for with `GoHome` runs at
        // once, replacing the one under way.
        let mut wait = self.habits.home_poll;
        loop {
            let look = look_home(
                connection.clone(),
                self.credentials.clone(),
                self.habits.options.clone(),
                wait,
            );
            tokio::pin!(look);
            wait = self.habits.home_poll;
            loop {
                tokio::select! {
                    event = incoming.recv() => match event {
                        Some(Incoming::Message(message)) => {
                            if let Some(chat) = &mut self.chat {
                                chat.delivered(&message);
                            }
                            connection.ack(message.id).await;
                        }
                        Some(Incoming::Ring(ring)) => self.ring = ring,
                        // Not deliveries: nothing to acknowledge.
                        Some(Incoming::Echo(_) | Incoming::Notice(_)) => {}
                        Some(Incoming::GoHome { .. }) => {
                            wait = Some(Duration::ZERO);
                            break;
                        }
                        Some(Incoming::Closing(why) | Incoming::Lost(why)) => {
                            return Ended::Lost(why)
                        }
                        None => return Ended::Lost("the connection ended".to_string()),
                    },
                    () = last_read(&mut self.chat) => {
                        if let Some(chat) = &mut self.chat {
                            chat.read_log(connection).await;
                        }
                    }
                    check = &mut look => {
                        let Some(check) = check else { break };
                        if let Some(ring) = check.ring {
                            self.ring = ring;
                        }
                        if let Some(news) = check.ticket {
                            news.apply_to(&mut self.credentials);
                        }
                        if let Some(home) = check.moved {
                            return Ended::Home(home);
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Logs in again after `lost`, as the client does; `None` when the farm refused.
    async fn reconnect(&mut self, lost: LostServer) -> Option<Moved> {
        let plan = Plan {
            seeds: self.habits.seeds.clone(),
            ring: Some(self.ring.clone()),
            credentials: Some(self.credentials.clone()),
            lost: Some(lost),
            options: self.habits.options.clone(),
        };
        let user = &self.credentials.user;
        match failover::reconnect(plan).await {
            Ok(Reconnected {
                moved,
                ring,
                relogin: Relogin::LoggedIn(ticket),
            }) => {
                if let Some(ring) = ring {
                    self.ring = ring;
                }
                self.credentials.ticket = Some(ticket);
                Some(moved)
            }
            Ok(reconnected) => {
                eprintln!(
                    "error: {user} is not logged in again: {:?}",
                    reconnected.relogin
                );
                reconnected.moved.connection.close().await;
                None
            }
            Err(err) => {
                eprintln!("error: {user} cannot reconnect: {err}");
                None
            }
        }
    }
}

/// Returns when a chatting user should read its log a last time (see `chat`); never for a
/// user that does not chat.
async fn last_read(chat: &mut Option<Chat>) {
    match chat {
        Some(chat) => chat.last_read_asked().await,
        None => std::future::pending().await,
    }
}

/// One look at home, after `home_poll`; never ends when the user does not look.
async fn look_home(
    connection: Arc<Connection>,
    credentials: Credentials,
    options: ConnectOptions,
    home_poll: Option<Duration>,
) -> Option<failover::HomeCheck> {
    let Some(wait) = home_poll else {
        return std::future::pending().await;
    };
    Some(failover::check_home(connection, credentials, options, wait).await)
}

/// Why a user left a connection.
enum Ended {
    /// Logged in at home on this new connection.
    Home(Moved),
    /// The connection ended, and why.
    Lost(String),
}

/// Closes the connection once nothing else holds it; otherwise dropping it ends it.
async fn close(connection: Arc<Connection>) {
    if let Ok(connection) = Arc::try_unwrap(connection) {
        connection.close().await;
    }
}
