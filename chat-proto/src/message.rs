//! Every frame that crosses a client connection.
//!
//! A connection opens with one [`Hello`] each way, then the client sends [`ClientFrame`]s and the
//! server sends [`ServerFrame`]s. Every [`Request`] carries a [`RequestId`] and is answered by
//! exactly one [`ServerFrame::Reply`] with the same id. Messages arrive unasked as
//! [`ServerFrame::Deliver`], and the client acknowledges each with [`ClientFrame::Ack`]. What
//! else arrives unasked is only shown, never acknowledged: the user's own messages sent from
//! another session ([`ServerFrame::Echo`]), and joins and leaves in the user's groups
//! ([`ServerFrame::Notice`]).

use crate::shared::SharedMessage;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// Names a request so that its reply can be matched to it. Chosen by the client.
pub type RequestId = u32;

/// A message's identity, chosen by the sending client (a UUIDv7, so ids sort by time).
///
/// Retrying a send with the same id never stores or shows the message twice.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub Uuid);

impl MessageId {
    /// A fresh id from the current time and randomness.
    pub fn new() -> MessageId {
        MessageId(Uuid::now_v7())
    }
}

impl Default for MessageId {
    fn default() -> MessageId {
        MessageId::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for MessageId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<MessageId, uuid::Error> {
        Uuid::parse_str(s).map(MessageId)
    }
}

/// The first frame on a connection, in both directions. Its layout never changes between
/// protocol versions, so that a mismatch is always recognised and reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`Hello::MAGIC`]; guards against talking to something that is not a chat server.
    pub magic: [u8; 4],
    /// The sender's [`crate::PROTOCOL_VERSION`].
    pub version: u16,
    /// The server's name (empty from a client), for the `connected` event.
    pub name: String,
    /// Empty when the sender accepts the connection; otherwise why it will close it.
    pub refusal: String,
}

impl Hello {
    pub const MAGIC: [u8; 4] = *b"CHAT";

    /// A hello for this build's protocol version.
    pub fn new(name: impl Into<String>) -> Hello {
        Hello {
            magic: Hello::MAGIC,
            version: crate::PROTOCOL_VERSION,
            name: name.into(),
            refusal: String::new(),
        }
    }
}

/// Who a message is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Recipient {
    User(String),
    Group(String),
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::User(name) => f.write_str(name),
            Recipient::Group(name) => write!(f, "#{name}"),
        }
    }
}

/// A chat message as the server stores and delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: MessageId,
    pub from: String,
    pub to: Recipient,
    pub text: String,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub sent_at_ms: i64,
}

/// A frame from a client after its [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    Request {
        id: RequestId,
        body: Request,
    },
    /// The client has shown these delivered messages; the server may forget them. At most
    /// [`crate::MAX_ACK_IDS`] ids: a larger frame closes the connection.
    Ack {
        ids: Vec<MessageId>,
    },
}

/// What a client can ask for. Each is answered by one [`ServerFrame::Reply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Asks for the ring of live servers; allowed before login. Answered by [`Response::Ring`].
    Ring,
    /// Logs in, registering the user if the name is new (with a password). A server that should
    /// not serve the user answers [`Response::Redirect`] instead.
    Login {
        user: String,
        credential: Credential,
        /// The server this client would be redirected to that refused it at the hello for lack
        /// of room: the user's next server on the ring serves them instead of redirecting there.
        refused_by: Option<String>,
    },
    /// Logs out and revokes every ticket of the user, on every device.
    Logout,
    /// Changes the logged-in user's password and revokes every ticket of the user. Answered by
    /// [`Response::Ticket`], a fresh ticket for this session.
    Passwd {
        old: String,
        new: String,
    },
    /// Asks for a fresh ticket for the logged-in user, the same device, a new expiry. Answered
    /// by [`Response::Ticket`].
    RenewTicket,
    Send {
        id: MessageId,
        to: Recipient,
        text: String,
    },
    /// Joins a group, creating it if it does not exist.
    Join {
        group: String,
    },
    Leave {
        group: String,
    },
    /// A page of every group: up to `max` (at most [`crate::MAX_PAGE`]) groups whose names sort
    /// after `after` (from the first when `None`), in order, each with whether the user is a
    /// member. Answered by [`Response::Groups`]; the next page starts after its last name.
    Groups {
        after: Option<String>,
        max: u32,
    },
    /// Hands over up to `max` waiting messages, oldest first, without removing them.
    ReadLog {
        max: u32,
    },
    /// Removes these messages from the log: the client has them.
    ConfirmLog {
        ids: Vec<MessageId>,
    },
    /// A page of the users logged in anywhere in the farm, paged as [`Request::Groups`] is.
    /// Answered by [`Response::Users`].
    Who {
        after: Option<String>,
        max: u32,
    },
    /// Whether a user is online, where, and which servers the ring gives them.
    WhoIs {
        user: String,
    },
    WhoAmI,
    Ping,
    /// A page of the members of `group`, which the user must be in, paged as
    /// [`Request::Groups`] is. Answered by [`Response::Users`].
    Members {
        group: String,
        after: Option<String>,
        max: u32,
    },
    /// Sent by a front end of the farm (the web gateway) before the login, for the user it
    /// serves: the limits kept per source address count the session as coming from that
    /// address. Answered by [`Response::Done`]; refused unless the tag is the farm's.
    Forwarded(Forwarded),
}

/// Where a front end's user really is: the address its own connection came from, and a tag
/// that only the farm's servers can make (an HMAC under a key derived from the cluster key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwarded {
    pub addr: std::net::IpAddr,
    pub tag: [u8; 32],
}

impl Request {
    /// A login with a password, naming no full server: the first login of a session.
    pub fn password_login(user: impl Into<String>, password: impl Into<String>) -> Request {
        Request::Login {
            user: user.into(),
            credential: Credential::Password(password.into()),
            refused_by: None,
        }
    }
}

/// What a login proves who the user is with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    Password(String),
    /// A ticket a server of the farm gave this client at an earlier login of the same user.
    Ticket(Ticket),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Password(_) => f.write_str("Password(..)"),
            Credential::Ticket(ticket) => ticket.fmt(f),
        }
    }
}

/// A resume ticket: opaque to the client, which hands it back to log in again without the
/// password. The farm's servers make and check it (a MAC under a key of theirs).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket(pub Vec<u8>);

impl fmt::Debug for Ticket {
    /// A ticket is a secret as long as it is valid: its bytes are never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ticket({} bytes)", self.0.len())
    }
}

/// A fresh ticket, and how long it is valid from the moment the server sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedTicket {
    pub ticket: Ticket,
    /// Milliseconds from now (relative, so that the client's clock does not matter).
    pub expires_in_ms: u64,
}

/// A frame from the server after its [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    Reply {
        id: RequestId,
        result: Result<Response, ErrorReply>,
    },
    /// A message for the logged-in user. The client answers with [`ClientFrame::Ack`]. Shared,
    /// so that one message pushed to many sessions is neither copied nor serialised for each.
    Deliver(Arc<SharedMessage>),
    /// The server is about to close the connection, and says why.
    Closing { reason: String },
    /// The user's home on the current ring, `server` (clients dial it at `addr`), is live
    /// again and takes its users back: the client should log in there and move. Pushed to
    /// each session whose home came back, spread over a short window; the connection stays
    /// open, so a client that cannot get home stays where it is.
    GoHome { server: String, addr: String },
    /// The farm's live servers changed (one joined, left, or came back at a new address): the
    /// ring as the server now sees it, pushed to every session, so that a client's next
    /// failover walks the farm as it is.
    RingChanged(RingInfo),
    /// A message the logged-in user sent from another of their sessions (another device), so
    /// that every device shows the whole conversation. Shown, never acknowledged: it is not
    /// a delivery, and no inbox row is ever written for it.
    Echo(Arc<SharedMessage>),
    /// Someone joined or left a group the logged-in user is in. Pushed to the members online
    /// at the moment of the change, never stored, never acknowledged.
    Notice(GroupNotice),
}

/// A change to a group's members, told to its other members who are online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupNotice {
    pub group: String,
    /// Who joined or left.
    pub user: String,
    pub change: GroupChange,
}

/// What a [`GroupNotice`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupChange {
    Joined,
    Left,
}

/// The successful answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    LoggedIn {
        user: String,
        /// True when this login created the account.
        registered: bool,
        /// How many messages wait for `readlog`; `None` after a ticket login, which does not
        /// count them (the client fetches the log after such a login anyway).
        waiting: Option<u64>,
        /// A fresh ticket for the next login of this session.
        ticket: IssuedTicket,
    },
    /// A fresh ticket, after `RenewTicket` or `Passwd`.
    Ticket(IssuedTicket),
    /// The request was carried out and there is nothing to tell.
    Done,
    /// The message is durable, or every recipient has it.
    Sent {
        id: MessageId,
    },
    /// A page of groups, in name order.
    Groups {
        groups: Vec<GroupEntry>,
        /// More groups sort after the last of this page.
        more: bool,
    },
    Log {
        messages: Vec<ChatMessage>,
        /// More messages wait beyond this batch.
        more: bool,
    },
    /// A page of user names, in order.
    Users {
        users: Vec<String>,
        /// More users sort after the last of this page.
        more: bool,
    },
    WhoAmI {
        user: String,
        /// The server this session is on.
        server: String,
        /// The user's home and backup on the current ring.
        home: String,
        backup: Option<String>,
    },
    WhoIs {
        user: String,
        online: bool,
        /// Where the user is logged in; `None` when offline.
        server: Option<String>,
        home: String,
        backup: Option<String>,
    },
    Ring(RingInfo),
    /// The answer to a login on a server that should not serve the user: log in at `server`,
    /// whose client address is `addr`, instead.
    Redirect {
        server: String,
        addr: String,
    },
    Pong,
}

/// A group in a page of [`Response::Groups`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    pub name: String,
    /// The user who asked is a member.
    pub joined: bool,
}

/// The live servers of the farm and the ring's `V`: all a client needs to compute placements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingInfo {
    /// Positions per server.
    pub vnodes: u32,
    pub servers: Vec<ServerAddr>,
}

/// A live server and the address its clients dial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAddr {
    pub name: String,
    /// `host:port`.
    pub addr: String,
}

impl RingInfo {
    /// The ring these servers form. Building one hashes every position, so the last ring
    /// built in this process is kept and shared while the servers stay the same (see
    /// [`crate::Ring::shared`]).
    pub fn ring(&self) -> std::sync::Arc<crate::Ring> {
        crate::Ring::shared(self.servers.iter().map(|server| &server.name), self.vnodes)
    }

    /// The client address of the server called `name`.
    pub fn addr_of(&self, name: &str) -> Option<&str> {
        self.servers
            .iter()
            .find(|server| server.name == name)
            .map(|server| server.addr.as_str())
    }
}

/// Why a request failed. The connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    /// A sentence a person can read, with no trailing period.
    pub message: String,
}

impl ErrorReply {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kind of an [`ErrorReply`], for programs that react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request itself is malformed: a bad name, text too long.
    Invalid,
    /// The request needs a login first, or a logout needs one.
    NotLoggedIn,
    AlreadyLoggedIn,
    WrongPassword,
    /// The ticket is not one of the farm's, has expired, or was revoked (a logout or a password
    /// change): log in with the password.
    BadTicket,
    NoSuchUser,
    NoSuchGroup,
    NotMember,
    /// The server cannot do it now (its database is unreachable, say); try again later.
    Unavailable,
    /// The server is going down.
    ShuttingDown,
    /// Too many requests too fast, or too many failed logins: wait, then try again.
    TooFast,
    /// The answer would not fit in one frame.
    TooLarge,
}
