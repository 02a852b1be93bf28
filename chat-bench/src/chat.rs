//! Chatting for simulated users (`crowd --messages`): each user sends direct messages to the
//! next user of the run, whose home is another server, and counts what it is delivered, through
//! failovers, returns home and restarts, as the real client does.
//!
//! The sending side is a task of its own per user that sends through whatever connection the
//! user is logged in on now ([`Chat::connected`]). **A message keeps its id until the farm
//! answers it**: when the connection is lost, or its server says it is shutting down, before
//! the answer, the task waits for the user's next connection and sends the same message, with
//! the same id, again; the farm stores it at most once. Any other refusal abandons the
//! message, as an error.
//!
//! The receiving side is the user's own task ([`crate::user::Life`]): after every login it
//! reads the offline log (what was stored while it moved), as the real client does, and then
//! takes what is delivered live. A message whose id the user was already shown is
//! acknowledged (or confirmed) and not counted, as the real client hides it (the farm may
//! deliver again what it never saw acknowledged). What is left is counted by the
//! message's stamp on the [`Ledger`], so a message the farm took twice under two ids is
//! counted as doubled, and one it answered "sent" but never delivered as missing.

use crate::ledger::{Delivery, Ledger, Outgoing, Shape};
use chat_client::connection::{Connection, RequestError};
use chat_client::seen::SeenIds;
use chat_proto::{ChatMessage, ErrorCode, MessageId, Recipient, Request, Response, MAX_LOG_BATCH};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How many delivered ids each user remembers, as the client's `seen` does.
const SEEN_IDS: usize = 4096;

/// The traffic of a chatting population: user `i` sends its messages to user `i + 1` (the
/// last to the first), whose home is the next server, so every message crosses a link.
pub struct Chatting {
    pub ledger: Arc<Ledger>,
    n_users: usize,
    size: usize,
    /// Nobody sends before [`Chatting::begin`]: a name is registered by its first login.
    go: watch::Sender<bool>,
    /// Set by [`Chatting::read_finally`]: every user reads its offline log once more.
    last_read: watch::Sender<bool>,
    /// How many users have read it since.
    read: Arc<watch::Sender<usize>>,
}

impl Chatting {
    /// `messages` per user, at most `rate` a second each, one in flight at a time, as a
    /// person sends.
    pub fn new(n_users: usize, messages: u32, rate: u32, size: usize) -> Chatting {
        let ledger = Ledger::new(Shape {
            senders: n_users,
            messages,
            recipients: 1,
            slots: 1,
            window: 1,
            wait_for_sent: true,
            pace: Some(std::time::Duration::from_secs_f64(
                1.0 / f64::from(rate.max(1)),
            )),
        });
        Chatting {
            ledger,
            n_users,
            size,
            go: watch::channel(false).0,
            last_read: watch::channel(false).0,
            read: Arc::new(watch::channel(0).0),
        }
    }

    /// Once every message taken was answered ([`Ledger::wait_answered`]), what was not
    /// delivered live is stored: every user reads its offline log once more, as the chaos
    /// test's clients do at the end. Returns when every user has read it, or at `deadline`.
    pub async fn read_finally(&self, deadline: tokio::time::Instant) {
        let mut read = self.read.subscribe();
        self.last_read.send_replace(true);
        let all_read = read.wait_for(|n| *n >= self.n_users);
        let _ = tokio::time::timeout_at(deadline, all_read).await;
    }

    /// Lets the users send: call it once every one of them has logged in (registered).
    pub fn begin(&self) {
        self.go.send_replace(true);
    }

    /// User `idx`'s part, among `users`: its sender task is started, and ends with `stop`.
    pub fn chat(&self, idx: usize, users: &[String], stop: CancellationToken) -> Chat {
        let part = Part {
            ledger: self.ledger.clone(),
            sender: idx,
            partner: users[(idx + 1) % users.len()].clone(),
            size: self.size,
            go: self.go.subscribe(),
        };
        let (current, connection) = watch::channel(None);
        tokio::spawn(async move {
            tokio::select! {
                () = send_all(part, connection) => {}
                () = stop.cancelled() => {}
            }
        });
        Chat {
            ledger: self.ledger.clone(),
            current,
            seen: SeenIds::new(SEEN_IDS),
            last_read: self.last_read.subscribe(),
            read_last: false,
            read: self.read.clone(),
        }
    }
}

/// What one chatting user needs: where its sender task sends, and what it was shown.
pub struct Chat {
    ledger: Arc<Ledger>,
    current: watch::Sender<Option<Arc<Connection>>>,
    seen: SeenIds,
    last_read: watch::Receiver<bool>,
    /// This user has read its log since the last read was asked.
    read_last: bool,
    read: Arc<watch::Sender<usize>>,
}

/// What one user's sender task sends: its messages on the ledger, to its partner.
struct Part {
    ledger: Arc<Ledger>,
    /// The user's index on the ledger, as a sender.
    sender: usize,
    /// Whom it sends to.
    partner: String,
    /// Bytes of text per message.
    size: usize,
    /// Becomes true at [`Chatting::begin`].
    go: watch::Receiver<bool>,
}

impl Chat {
    /// Returns once the last read of the log is asked and this user has not made it yet;
    /// then the user calls [`Chat::read_log`].
    pub async fn last_read_asked(&mut self) {
        if self.read_last || self.last_read.wait_for(|asked| *asked).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The user is logged in on `connection` now.
    pub fn connected(&self, connection: &Arc<Connection>) {
        self.current.send_replace(Some(connection.clone()));
    }

    /// The user lost its connection and is between logins.
    pub fn disconnected(&self) {
        self.current.send_replace(None);
    }

    /// Reads the offline log on `connection` to its end, as `readlog` does: each batch
    /// counted, then confirmed. A lost connection ends it; the next login reads again. A read
    /// to the end after the last read was asked counts as this user's last read.
    pub async fn read_log(&mut self, connection: &Connection) {
        let asked = *self.last_read.borrow();
        if self.read_to_end(connection).await && asked && !self.read_last {
            self.read_last = true;
            self.read.send_modify(|n| *n += 1);
        }
    }

    /// True once the log was read to its end.
    async fn read_to_end(&mut self, connection: &Connection) -> bool {
        loop {
            let request = Request::ReadLog { max: MAX_LOG_BATCH };
            let (messages, more) = match connection.request(request).await {
                Ok(Response::Log { messages, more }) => (messages, more),
                Ok(other) => {
                    self.ledger.error(format!("readlog answered {other:?}"));
                    return false;
                }
                Err(RequestError::Refused(reply)) => {
                    self.ledger.error(format!("readlog: {}", reply.message));
                    return false;
                }
                Err(RequestError::ConnectionLost) => return false,
            };
            if messages.is_empty() {
                return true;
            }
            let ids = messages.iter().map(|message| message.id).collect();
            for message in &messages {
                self.delivered(message);
            }
            match connection.request(Request::ConfirmLog { ids }).await {
                Ok(_) => {}
                Err(RequestError::ConnectionLost) => return false,
                Err(RequestError::Refused(reply)) => {
                    self.ledger.error(format!("confirm: {}", reply.message));
                    return false;
                }
            }
            if !more {
                return true;
            }
        }
    }

    /// Counts a delivery the user is shown; the caller acknowledges it either way.
    pub fn delivered(&mut self, message: &ChatMessage) {
        if !self.seen.insert(message.id) {
            return;
        }
        let Some((stamp, _age)) = self.ledger.read(&message.text) else {
            self.ledger
                .error(format!("a message not of this run from {}", message.from));
            return;
        };
        if self.ledger.delivered(stamp, 0) == Delivery::Unknown {
            self.ledger.error(format!(
                "message {} of sender {} is not of this run",
                stamp.seq, stamp.sender
            ));
        }
    }
}

/// Sends the user's messages, one at a time, each until the farm answers it.
async fn send_all(part: Part, mut current: watch::Receiver<Option<Arc<Connection>>>) {
    let Part {
        ledger,
        sender,
        partner,
        size,
        mut go,
    } = part;
    if go.wait_for(|go| *go).await.is_err() {
        return;
    }
    let mut outgoing = Outgoing::new(ledger.clone(), Some(sender));
    loop {
        let seq = outgoing.take().await;
        let id = MessageId::new();
        let text = ledger.text(sender, seq, size);
        let mut used: Option<Arc<Connection>> = None;
        loop {
            // A connection other than the one that failed this message.
            let fresh = |now: &Option<Arc<Connection>>| match (now, &used) {
                (Some(now), Some(used)) => !Arc::ptr_eq(now, used),
                (now, None) => now.is_some(),
                (None, Some(_)) => false,
            };
            // The borrow of the channel ends here, before anything waits.
            let connection = match current.wait_for(fresh).await {
                Ok(now) => now.clone(),
                Err(_) => return,
            };
            let Some(connection) = connection else {
                return;
            };
            let request = Request::Send {
                id,
                to: Recipient::User(partner.clone()),
                text: text.clone(),
            };
            match connection.request(request).await {
                Ok(Response::Sent { .. }) => {
                    ledger.sent(sender, seq);
                    break;
                }
                Ok(other) => {
                    ledger.abandon(sender, seq, &format!("answered {other:?}"));
                    break;
                }
                Err(RequestError::Refused(reply)) if reply.code != ErrorCode::ShuttingDown => {
                    ledger.abandon(sender, seq, &reply.message);
                    break;
                }
                // Not answered: the same message again on the next connection.
                Err(RequestError::Refused(_) | RequestError::ConnectionLost) => {
                    used = Some(connection);
                }
            }
        }
    }
}
