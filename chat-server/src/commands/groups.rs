//! `join`, `leave` and `groups`.

use super::{invalid, Session};
use chat_proto::{validate_group, ErrorCode, ErrorReply, Response};

impl Session {
    pub(super) async fn join(&mut self, group: String) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        validate_group(&group).map_err(invalid)?;
        let joined = self.ctx.store.join(&group, &user).await;
        // Even after an error: the commit may have happened all the same.
        self.ctx.group_changed(&group);
        joined?;
        Ok(Response::Done)
    }

    pub(super) async fn leave(&mut self, group: String) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        validate_group(&group).map_err(invalid)?;
        let left = self.ctx.store.leave(&group, &user).await;
        if !matches!(left, Ok(false)) {
            // Even after an error: the commit may have happened all the same.
            self.ctx.group_changed(&group);
        }
        if left? {
            Ok(Response::Done)
        } else {
            Err(ErrorReply::new(
                ErrorCode::NotMember,
                format!("you are not a member of #{group}"),
            ))
        }
    }

    pub(super) async fn groups(&self) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        let store = &self.ctx.store;
        Ok(Response::Groups {
            all: store.all_groups().await?,
            joined: store.groups_of(&user).await?,
        })
    }
}
