//! `send` to a user or a group.

use super::{invalid, Outcome, Session};
use crate::delivery::Waiter;
use chat_proto::{
    validate_group, validate_text, validate_user, ChatMessage, ErrorCode, ErrorReply, MessageId,
    Recipient, RequestId,
};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

impl Session {
    pub(super) async fn send(
        &mut self,
        request: RequestId,
        id: MessageId,
        to: Recipient,
        text: String,
    ) -> Outcome {
        let (from, recipients) = match self.check_send(&to, &text).await {
            Ok(checked) => checked,
            Err(err) => return Outcome::Reply(Err(err)),
        };
        let message = ChatMessage {
            id,
            from,
            to,
            text,
            sent_at_ms: now_ms(),
        };
        let waiter = Waiter {
            session: self.outbound.clone(),
            request,
        };
        self.ctx.delivery.submit(message, recipients, waiter);
        Outcome::Later
    }

    /// Validates a send and returns who sends it and whom it is for.
    async fn check_send(
        &self,
        to: &Recipient,
        text: &str,
    ) -> Result<(String, Vec<Arc<str>>), ErrorReply> {
        let from = self.require_user()?;
        validate_text(text).map_err(invalid)?;
        match to {
            Recipient::User(user) => {
                validate_user(user).map_err(invalid)?;
                let Some(name) = self.ctx.registered(user).await? else {
                    return Err(ErrorReply::new(
                        ErrorCode::NoSuchUser,
                        format!("no such user: {user}"),
                    ));
                };
                Ok((from, vec![name]))
            }
            Recipient::Group(group) => {
                validate_group(group).map_err(invalid)?;
                let members = self.members_with(group, &from, "; join it first").await?;
                let recipients = members
                    .iter()
                    .filter(|member| ***member != *from)
                    .cloned()
                    .collect();
                Ok((from, recipients))
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
