//! `who` and `whoami`.

use crate::session::Session;
use chat_proto::{ErrorReply, Response};

impl Session {
    pub(super) fn who(&self) -> Result<Response, ErrorReply> {
        self.require_user()?;
        let users = self.shared.hub.users();
        Ok(Response::Users(
            users.into_iter().map(|(user, _sessions)| user).collect(),
        ))
    }

    pub(super) fn whoami(&self) -> Result<Response, ErrorReply> {
        Ok(Response::WhoAmI {
            user: self.require_user()?,
            server: self.shared.name.clone(),
        })
    }
}
