//! The user's own messages, sent from their other devices: shown once as echoes, never
//! acknowledged, and never on the device that sent them.
//!
//! The server echoes a message to every session of its sender but the one that sent it. This
//! client may hold two connections of its own for a moment (a login at home waits for the
//! running command before the switch), so it also remembers the ids it sent and drops their
//! echoes itself.

use super::Session;
use crate::output::Event;
use chat_proto::{ChatMessage, MessageId};

impl Session<'_> {
    /// Notes that this device sends message `id`, on whichever connection: its echo is not
    /// shown here.
    pub(crate) fn sending(&self, id: MessageId) {
        self.sent().insert(id);
    }

    /// Shows the echo of a message sent from another device, the first time its id is seen.
    pub(super) fn show_echo(&self, message: ChatMessage) {
        if self.sent().contains(&message.id) || !self.seen().insert(message.id) {
            return;
        }
        self.output.emit(&Event::Echo { message });
    }
}
