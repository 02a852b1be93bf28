//! `ring`, `who`, `whois` and `whoami`: what the farm looks like.

use super::{cursor, invalid, Session};
use crate::hub::Hub;
use crate::paging::{page_size, split_page};
use crate::presence::Presence;
use chat_proto::{validate_user, ErrorCode, ErrorReply, Response};

impl Session {
    /// A page of the users logged in anywhere in the farm, each once.
    pub(super) fn who(&self, after: Option<String>, max: u32) -> Result<Response, ErrorReply> {
        self.require_user()?;
        let after = cursor(after, validate_user)?;
        let (users, more) = online_page(
            &self.ctx.hub,
            &self.ctx.presence,
            after.as_deref(),
            page_size(max),
        );
        Ok(Response::Users { users, more })
    }

    pub(super) async fn whois(&self, user: String) -> Result<Response, ErrorReply> {
        self.require_user()?;
        validate_user(&user).map_err(invalid)?;
        if self.ctx.registered(&user).await?.is_none() {
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

/// Up to `size` of the users logged in here or on another server whose names sort after
/// `after`, in order and each once, and whether more follow.
pub fn online_page(
    hub: &Hub,
    presence: &Presence,
    after: Option<&str>,
    size: usize,
) -> (Vec<String>, bool) {
    // The first `size + 1` of the union are among the first `size + 1` of each side.
    let mut users = hub.users_after(after, size + 1);
    users.extend(presence.users_after(after, size + 1));
    users.sort_unstable();
    users.dedup();
    split_page(users, size)
}
