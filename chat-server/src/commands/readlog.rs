//! `readlog`: messages that waited while their recipient was away.
//!
//! The client first reads a batch, then confirms the ids it has; only the confirmation removes
//! them. A client that dies in between finds the same messages next time.

use super::Session;
use chat_proto::{codec::MAX_LOG_BATCH, ErrorReply, MessageId, Response};

impl Session {
    pub(super) async fn read_log(&self, max: u32) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        let max = max.clamp(1, MAX_LOG_BATCH);
        let mut messages = self.ctx.store.read_inbox(&user, max + 1).await?;
        let more = messages.len() > max as usize;
        messages.truncate(max as usize);
        Ok(Response::Log { messages, more })
    }

    pub(super) async fn confirm_log(&self, ids: Vec<MessageId>) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        self.ctx.store.confirm_inbox(&user, &ids).await?;
        Ok(Response::Done)
    }
}
