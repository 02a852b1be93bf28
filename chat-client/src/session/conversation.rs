//! The conversation a person is in, for `/me`: the user or group of their last `send`.
//!
//! IRC sends `/me waves` to the window it is typed in. The client has no windows, so the
//! conversation is where the last message went that the server took. It belongs to the user
//! who sent it: after a login as someone else, `/me` waits for a `send` again. `/me` runs as
//! a `send` (its answer is `send`'s) with the message id it was given when typed.

use super::Session;
use chat_proto::{validate_text, Recipient};
use std::sync::MutexGuard;

/// The last recipient of a successful `send`, and who sent it.
#[derive(Debug, Default)]
pub(super) struct Conversation {
    with: Option<(String, Recipient)>,
}

impl Session<'_> {
    fn conversation(&self) -> MutexGuard<'_, Conversation> {
        self.conversation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A `send` to `to` succeeded: it is the conversation now.
    pub(crate) fn sent_to(&self, to: &Recipient) {
        let user = self
            .placement()
            .credentials
            .as_ref()
            .map(|c| c.user.clone());
        if let Some(user) = user {
            self.conversation().with = Some((user, to.clone()));
        }
    }

    /// What `/me <text>` sends, and to whom: `* <user> <text>` to the conversation. Asked
    /// when the command runs, so that a `send` typed ahead of it counts.
    pub(crate) fn action(&self, text: &str) -> Result<(Recipient, String), String> {
        let user = self
            .placement()
            .credentials
            .as_ref()
            .map(|c| c.user.clone());
        let Some(user) = user else {
            return Err("log in first; /me goes to whom your last message went".to_string());
        };
        let to =
            match &self.conversation().with {
                Some((sender, to)) if *sender == user => to.clone(),
                _ => return Err(
                    "no conversation yet: /me goes to whom your last message went; send one first"
                        .to_string(),
                ),
            };
        let text = format!("* {user} {text}");
        validate_text(&text).map_err(|err| err.to_string())?;
        Ok((to, text))
    }
}
