use super::{limit, Store, StoreError};
use chat_proto::GroupEntry;

impl Store {
    /// Adds `user` to `group`, creating the group if it does not exist. Joining twice is fine.
    /// Returns false if they were a member already.
    pub async fn join(&self, group: &str, user: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let create = tx
            .prepare_cached(
                "INSERT INTO groups (name, created_by) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&create, &[&group, &user]).await?;
        let join = tx
            .prepare_cached(
                "INSERT INTO memberships (group_name, user_name) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        let n_joined = tx.execute(&join, &[&group, &user]).await?;
        tx.commit().await?;
        Ok(n_joined == 1)
    }

    /// Removes `user` from `group`. Returns false if they were not a member.
    pub async fn leave(&self, group: &str, user: &str) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached("DELETE FROM memberships WHERE group_name = $1 AND user_name = $2")
            .await?;
        Ok(conn.execute(&stmt, &[&group, &user]).await? == 1)
    }

    /// The members of `group`, or `None` if there is no such group.
    pub async fn members(&self, group: &str) -> Result<Option<Vec<String>>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT m.user_name FROM groups g \
                 LEFT JOIN memberships m ON m.group_name = g.name \
                 WHERE g.name = $1 ORDER BY m.user_name",
            )
            .await?;
        let rows = conn.query(&stmt, &[&group]).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .filter_map(|row| row.get::<_, Option<String>>(0))
                .collect(),
        ))
    }

    /// Up to `count` groups whose names sort after `after` (from the first when `None`), in
    /// order, each with whether `user` is a member: one page of `groups`.
    pub async fn groups_page_of(
        &self,
        user: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<GroupEntry>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT g.name, EXISTS (SELECT 1 FROM memberships m \
                 WHERE m.group_name = g.name AND m.user_name = $1) \
                 FROM groups g WHERE g.name > $2 ORDER BY g.name LIMIT $3",
            )
            .await?;
        let rows = conn
            .query(&stmt, &[&user, &after.unwrap_or_default(), &limit(count)])
            .await?;
        Ok(rows
            .iter()
            .map(|row| GroupEntry {
                name: row.get(0),
                joined: row.get(1),
            })
            .collect())
    }

    /// Up to `count` group names that sort after `after`, in order: one page of the console's
    /// `groups`.
    pub async fn groups_after(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.names_after(
            "SELECT name FROM groups WHERE name > $1 ORDER BY name LIMIT $2",
            after,
            count,
        )
        .await
    }
}
