//! What is only shown, outside the delivery contract: the echo of a message on its sender's
//! other sessions, and the notices of joins and leaves to a group's members.
//!
//! Both are pushed to the sessions here and relayed once to each other server where someone
//! they are for is logged in, as a message is, but **the ledger never sees them**: nothing is
//! acknowledged, nothing is stored, and whoever is logged in nowhere simply misses them. An
//! echo never reaches the session that sent the message.

use super::{Delivery, MAX_RELAY_RECIPIENTS};
use chat_proto::{GroupNotice, PeerFrame, Recipient, ServerFrame, SharedMessage};
use std::sync::Arc;

impl Delivery {
    /// Shows `message` to its sender's other sessions, here (all but `sending_session`) and on
    /// every other server where the sender is logged in. A message to oneself needs none: the
    /// sender's sessions have it as a delivery.
    pub(super) fn echo(&self, message: &Arc<SharedMessage>, sending_session: u64) {
        if matches!(&message.to, Recipient::User(to) if *to == message.from) {
            return;
        }
        let sender = std::slice::from_ref(&message.from);
        let frame = ServerFrame::Echo(message.clone());
        self.routes.hub.show(sender, &frame, Some(sending_session));
        for (server, _) in self.routes.presence.locate(sender) {
            let frame = PeerFrame::Echo {
                message: message.clone(),
            };
            self.routes.links.send(&server, frame);
        }
    }

    /// Shows `notice` to those of `members` who are logged in: pushed to their sessions here,
    /// and relayed once to each other server where some of them are, with their names.
    pub fn tell_members(&self, notice: GroupNotice, members: &[Arc<str>]) {
        let frame = ServerFrame::Notice(notice.clone());
        self.routes.hub.show(members, &frame, None);
        for (server, indices) in self.routes.presence.locate(members) {
            for indices in indices.chunks(MAX_RELAY_RECIPIENTS) {
                let frame = PeerFrame::Notice {
                    notice: notice.clone(),
                    recipients: indices.iter().map(|&idx| members[idx].clone()).collect(),
                };
                self.routes.links.send(&server, frame);
            }
        }
    }
}
