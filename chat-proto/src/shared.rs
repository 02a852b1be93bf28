//! [`SharedMessage`]: a message as the servers hand it on, one copy shared by every frame that
//! carries it, which keeps the bytes of its [`ServerFrame::Deliver`] frame once a connection
//! has encoded them. A message pushed to many sessions (a group's members on one server) is
//! then serialised once, by the first of their writers, and the others copy its bytes into
//! their batches.

use crate::message::{ChatMessage, ServerFrame};
use crate::secure::Frame;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// A [`ChatMessage`] and, once encoded, its [`ServerFrame::Deliver`] frame. On the wire it is
/// the `ChatMessage`, nothing more.
pub struct SharedMessage {
    message: ChatMessage,
    /// `postcard` of `ServerFrame::Deliver(this)`, or `None` if it could not be serialised.
    deliver_frame: OnceLock<Option<Box<[u8]>>>,
}

impl SharedMessage {
    /// `message`, ready to be shared.
    pub fn new(message: ChatMessage) -> Arc<SharedMessage> {
        Arc::new(SharedMessage {
            message,
            deliver_frame: OnceLock::new(),
        })
    }

    /// The message itself: taken if this was the last reference, else copied.
    pub fn into_message(self: Arc<Self>) -> ChatMessage {
        Arc::try_unwrap(self)
            .map(|shared| shared.message)
            .unwrap_or_else(|shared| shared.message.clone())
    }
}

impl From<ChatMessage> for Arc<SharedMessage> {
    fn from(message: ChatMessage) -> Arc<SharedMessage> {
        SharedMessage::new(message)
    }
}

impl Deref for SharedMessage {
    type Target = ChatMessage;

    fn deref(&self) -> &ChatMessage {
        &self.message
    }
}

impl PartialEq for SharedMessage {
    fn eq(&self, other: &SharedMessage) -> bool {
        self.message == other.message
    }
}

impl Eq for SharedMessage {}

impl fmt::Debug for SharedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.message.fmt(f)
    }
}

impl Serialize for SharedMessage {
    fn serialize<S: Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        self.message.serialize(to)
    }
}

impl<'de> Deserialize<'de> for SharedMessage {
    fn deserialize<D: Deserializer<'de>>(from: D) -> Result<SharedMessage, D::Error> {
        Ok(SharedMessage {
            message: ChatMessage::deserialize(from)?,
            deliver_frame: OnceLock::new(),
        })
    }
}

/// A `Deliver` frame hands over its message's bytes, encoded by the first connection that
/// sent it; every other frame is serialised as it is sent.
impl Frame for ServerFrame {
    fn encoded(&self) -> Option<&[u8]> {
        let ServerFrame::Deliver(shared) = self else {
            return None;
        };
        let encoded = shared.deliver_frame.get_or_init(|| encode_exactly(self));
        encoded.as_deref()
    }
}

/// `frame`'s bytes in one allocation of their size: the length is counted first, where
/// growing a vector would reallocate it four or five times for a short message.
fn encode_exactly(frame: &ServerFrame) -> Option<Box<[u8]>> {
    let len =
        postcard::serialize_with_flavor(frame, postcard::ser_flavors::Size::default()).ok()?;
    let bytes = postcard::to_extend(frame, Vec::with_capacity(len)).ok()?;
    debug_assert_eq!(bytes.len(), bytes.capacity());
    Some(bytes.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageId, Recipient};

    fn message() -> ChatMessage {
        ChatMessage {
            id: MessageId::new(),
            from: "amy".into(),
            to: Recipient::Group("ops".into()),
            text: "hello".into(),
            sent_at_ms: 42,
        }
    }

    #[test]
    fn a_deliver_frame_keeps_the_bytes_it_would_be_serialised_to() {
        let shared = SharedMessage::new(message());
        let frame = ServerFrame::Deliver(shared.clone());
        let serialised = postcard::to_allocvec(&frame).unwrap();
        assert_eq!(frame.encoded(), Some(&serialised[..]));
        // Another frame of the same message finds them encoded: the very same bytes.
        let again = ServerFrame::Deliver(shared.clone());
        assert!(std::ptr::eq(
            again.encoded().unwrap(),
            frame.encoded().unwrap()
        ));
        assert_eq!(
            postcard::from_bytes::<ServerFrame>(&serialised).unwrap(),
            frame
        );
        // An echo of the message is serialised as it is sent, with its own variant.
        assert_eq!(ServerFrame::Echo(shared).encoded(), None);
    }

    #[test]
    fn on_the_wire_a_shared_message_is_the_message() {
        let plain = message();
        let shared = SharedMessage::new(plain.clone());
        assert_eq!(
            postcard::to_allocvec(&*shared).unwrap(),
            postcard::to_allocvec(&plain).unwrap()
        );
        assert_eq!(shared.into_message(), plain);
    }
}
