//! `ring`, `who`, `whois` and `whoami`: what the farm looks like.

use super::{invalid, Session};
use chat_proto::{validate_user, ErrorCode, ErrorReply, Response};

impl Session {
    /// The users logged in anywhere in the farm, each once.
    pub(super) fn who(&self) -> Result<Response, ErrorReply> {
        self.require_user()?;
        let mut users: Vec<String> = self
            .ctx
            .hub
            .users()
            .into_iter()
            .map(|(user, _sessions)| user)
            .collect();
        users.extend(self.ctx.presence.all().into_iter().map(|(user, _)| user));
        users.sort();
        users.dedup();
        Ok(Response::Users(users))
    }

    pub(super) async fn whois(&self, user: String) -> Result<Response, ErrorReply> {
        self.require_user()?;
        validate_user(&user).map_err(invalid)?;
        if !self.ctx.user_exists(&user).await? {
            return Err(ErrorReply::new(
                ErrorCode::NoSuchUser,
                format!("no such user: {user}"),
            ));
        }
        let server = if self.ctx.hub.is_online(&user) {
            Some(self.ctx.name.clone())
        } else {
            self.ctx.presence.servers_of(&user).into_iter().next()
        };
        let (home, backup) = self.ctx.placement(&user);
        Ok(Response::WhoIs {
            user,
            online: server.is_some(),
            server,
            home,
            backup,
        })
    }

    pub(super) fn whoami(&self) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        let (home, backup) = self.ctx.placement(&user);
        Ok(Response::WhoAmI {
            user,
            server: self.ctx.name.clone(),
            home,
            backup,
        })
    }
}
