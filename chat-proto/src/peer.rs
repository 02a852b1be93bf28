//! Every frame that crosses a link between two servers of the farm.
//!
//! A link opens with one [`LinkHello`] each way; the dialing server speaks first. Then both
//! sides send [`PeerFrame`]s, in order, for as long as the link lives. There are no replies:
//! each frame is a fact the receiver applies. When a link drops, everything the receiver knew
//! from it (who is logged in over there) is forgotten, and the next link starts afresh; so is
//! everything it cached of the groups' members, since a change it was not told of may have
//! happened while the link was down.

use crate::{GroupNotice, MessageId, SharedMessage};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The first frame on a link, in both directions. Like the client [`crate::Hello`], its layout
/// never changes between protocol versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkHello {
    /// Always [`LinkHello::MAGIC`].
    pub magic: [u8; 4],
    /// The sender's [`crate::PROTOCOL_VERSION`].
    pub version: u16,
    /// The sender's server name.
    pub name: String,
    /// When the sender registered, in milliseconds since the Unix epoch: the later of two
    /// servers dials the earlier one.
    pub started_at_ms: i64,
    /// Empty when the sender accepts the link; otherwise why it will close it.
    pub refusal: String,
}

impl LinkHello {
    pub const MAGIC: [u8; 4] = *b"LINK";

    pub fn new(name: impl Into<String>, started_at_ms: i64) -> LinkHello {
        LinkHello {
            magic: LinkHello::MAGIC,
            version: crate::PROTOCOL_VERSION,
            name: name.into(),
            started_at_ms,
            refusal: String::new(),
        }
    }
}

/// A frame on a link after the hellos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    /// These users are logged in on the sender. With `reset`, they replace everything the
    /// receiver knew about the sender's users (the first frame of a link has it), and the
    /// receiver forgets the groups' members it cached: the sender told this link of no change
    /// made before it.
    Online { users: Vec<String>, reset: bool },
    /// These users have logged out of the sender.
    Offline { users: Vec<String> },
    /// A message for these users, who are logged in on the receiver: show it to each of their
    /// sessions. The sender owns the message until every recipient acknowledged it or it is
    /// stored; the receiver keeps nothing but the way back for the acknowledgements.
    Deliver {
        message: Arc<SharedMessage>,
        /// Shared with the sender's ledger and its other frames: a name is never copied per
        /// recipient (on the wire, a plain sequence of names).
        #[serde(deserialize_with = "shared_names::deserialize")]
        recipients: Vec<Arc<str>>,
    },
    /// These users' clients have shown these messages, which the receiver relayed. The sender
    /// gathers acknowledgements into as few of these as its writer's pace allows.
    Acked { acks: Vec<UserAcks> },
    /// The members of `group` may have changed (a join or a leave on the sender, already
    /// committed): the receiver forgets what it has cached of them.
    GroupChanged { group: String },
    /// `user`'s tickets were revoked (a logout or a password change, already committed): the
    /// receiver forgets the revocation epoch it cached for them.
    Revoked { user: String },
    /// Sent when the link has been idle for a while, so that each side knows the other lives.
    Heartbeat,
    /// The sender accepts clients: it is linked with the live servers and serves its users.
    /// Sent once per link, when the link comes up after the sender started serving, or when
    /// it starts serving. The receiver then tells its sessions whose home is the sender to
    /// move there ([`crate::ServerFrame::GoHome`]).
    Serving,
    /// A message that `message.from`, logged in on the sender, sent: the receiver shows it to
    /// each of the sender's sessions there as an echo ([`crate::ServerFrame::Echo`]). Nothing
    /// comes back: an echo is not acknowledged.
    Echo { message: Arc<SharedMessage> },
    /// A join or a leave (already committed on the sender) for these members of the group,
    /// who are logged in on the receiver: shown to each of their sessions, and forgotten.
    Notice {
        notice: GroupNotice,
        #[serde(deserialize_with = "shared_names::deserialize")]
        recipients: Vec<Arc<str>>,
    },
}

/// One user's acknowledgements, in a [`PeerFrame::Acked`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAcks {
    pub user: String,
    pub ids: Vec<MessageId>,
}

/// Names read straight into shared strings, one allocation each: serde's own `Arc<str>` is
/// read into a `Box<str>` first, then copied.
mod shared_names {
    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};
    use std::fmt;
    use std::sync::Arc;

    /// The most names made room for before they are read: the length on the wire is the
    /// sender's word.
    const MAX_PREALLOCATED: usize = 4096;

    pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Vec<Arc<str>>, D::Error> {
        from.deserialize_seq(Names)
    }

    struct Names;

    impl<'de> Visitor<'de> for Names {
        type Value = Vec<Arc<str>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence of names")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let room = seq.size_hint().unwrap_or(0).min(MAX_PREALLOCATED);
            let mut names = Vec::with_capacity(room);
            while let Some(Name(name)) = seq.next_element()? {
                names.push(name);
            }
            Ok(names)
        }
    }

    struct Name(Arc<str>);

    impl<'de> Deserialize<'de> for Name {
        fn deserialize<D: Deserializer<'de>>(from: D) -> Result<Name, D::Error> {
            from.deserialize_str(NameVisitor)
        }
    }

    struct NameVisitor;

    impl Visitor<'_> for NameVisitor {
        type Value = Name;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a name")
        }

        fn visit_str<E: Error>(self, name: &str) -> Result<Name, E> {
            Ok(Name(Arc::from(name)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recipient;

    #[test]
    fn relayed_names_are_a_plain_sequence_of_strings_and_come_back_the_same() {
        let recipients: Vec<Arc<str>> = vec!["amy".into(), "bob".into(), "".into()];
        let notice = PeerFrame::Notice {
            notice: GroupNotice {
                group: "ops".into(),
                user: "zoe".into(),
                change: crate::GroupChange::Joined,
            },
            recipients: recipients.clone(),
        };
        let bytes = postcard::to_allocvec(&notice).unwrap();
        assert_eq!(postcard::from_bytes::<PeerFrame>(&bytes).unwrap(), notice);
        let names = postcard::to_allocvec(&["amy", "bob", ""][..]).unwrap();
        assert!(
            bytes.ends_with(&names),
            "the names are not a sequence of strings"
        );
        let deliver = PeerFrame::Deliver {
            message: SharedMessage::new(crate::ChatMessage {
                id: MessageId::new(),
                from: "zoe".into(),
                to: Recipient::Group("ops".into()),
                text: "hi".into(),
                sent_at_ms: 1,
            }),
            recipients,
        };
        let bytes = postcard::to_allocvec(&deliver).unwrap();
        assert_eq!(postcard::from_bytes::<PeerFrame>(&bytes).unwrap(), deliver);
        // A name that is not UTF-8 is an error, not a panic.
        let mut bad = bytes.clone();
        let last = bad.len() - 4;
        bad[last] = 0xff;
        assert!(postcard::from_bytes::<PeerFrame>(&bad).is_err());
    }
}
