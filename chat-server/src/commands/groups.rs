//! `join`, `leave` and `groups`.

use super::{cursor, invalid, Session};
use crate::paging::{page_size, split_page};
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

    /// A page of every group, each with whether the user is a member.
    pub(super) async fn groups(
        &self,
        after: Option<String>,
        max: u32,
    ) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        let after = cursor(after, validate_group)?;
        let size = page_size(max);
        let page = self
            .ctx
            .store
            .groups_page_of(&user, after.as_deref(), size + 1)
            .await?;
        let (groups, more) = split_page(page, size);
        Ok(Response::Groups { groups, more })
    }
}
