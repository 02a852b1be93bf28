//! `join`, `leave`, `groups` and `members`.

use super::{cursor, invalid, Session};
use crate::members::MemberList;
use crate::paging::{first_after, page_size, split_page};
use chat_proto::{
    validate_group, validate_user, ErrorCode, ErrorReply, GroupChange, GroupNotice, Response,
};
use std::sync::Arc;

impl Session {
    pub(super) async fn join(&mut self, group: String) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        validate_group(&group).map_err(invalid)?;
        let joined = self.ctx.store.join(&group, &user).await;
        // Even after an error: the commit may have happened all the same.
        self.ctx.group_changed(&group);
        if joined? {
            self.tell_members(group, user, GroupChange::Joined).await;
        }
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
            self.tell_members(group, user, GroupChange::Left).await;
            Ok(Response::Done)
        } else {
            Err(ErrorReply::new(
                ErrorCode::NotMember,
                format!("you are not a member of #{group}"),
            ))
        }
    }

    /// Tells the group's other members who are online, anywhere in the farm, that `user`
    /// joined or left it, a change already committed. The members are read after the commit,
    /// so they are the members with the change. Missing it costs only the notice: the join or
    /// leave has been made, and its answer says so.
    async fn tell_members(&self, group: String, user: String, change: GroupChange) {
        let members = match self.ctx.members.get(&group).await {
            Ok(Some(members)) => members,
            // Left by its last member at this moment: nobody to tell.
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%group, %err, "cannot read the members to tell of a change");
                return;
            }
        };
        let others: Vec<Arc<str>> = members
            .iter()
            .filter(|member| ***member != *user)
            .cloned()
            .collect();
        let notice = GroupNotice {
            group,
            user,
            change,
        };
        self.ctx.delivery.tell_members(notice, &others);
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

    /// A page of the members of a group the user is in, as the group's sends here see them
    /// (the cached members: no database read while the group is cached).
    pub(super) async fn members(
        &self,
        group: String,
        after: Option<String>,
        max: u32,
    ) -> Result<Response, ErrorReply> {
        let user = self.require_user()?;
        validate_group(&group).map_err(invalid)?;
        let after = cursor(after, validate_user)?;
        let members = self.members_with(&group, &user, "").await?;
        let size = page_size(max);
        let names = members.iter().map(|name| &**name);
        let (users, more) = split_page(first_after(names, after.as_deref(), size + 1), size);
        Ok(Response::Users { users, more })
    }

    /// The members of `group`, which `user` must be one of: otherwise "no such group", or
    /// "you are not a member" followed by `hint`.
    pub(super) async fn members_with(
        &self,
        group: &str,
        user: &str,
        hint: &str,
    ) -> Result<MemberList, ErrorReply> {
        let Some(members) = self.ctx.members.get(group).await? else {
            return Err(ErrorReply::new(
                ErrorCode::NoSuchGroup,
                format!("no such group: #{group}"),
            ));
        };
        if !members.iter().any(|member| **member == *user) {
            return Err(ErrorReply::new(
                ErrorCode::NotMember,
                format!("you are not a member of #{group}{hint}"),
            ));
        }
        Ok(members)
    }
}
