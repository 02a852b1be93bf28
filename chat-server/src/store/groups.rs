use super::{Store, StoreError};

impl Store {
    /// Adds `user` to `group`, creating the group if it does not exist. Joining twice is fine.
    pub async fn join(&self, group: &str, user: &str) -> Result<(), StoreError> {
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
        tx.execute(&join, &[&group, &user]).await?;
        tx.commit().await?;
        Ok(())
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

    /// Every group, by name.
    pub async fn all_groups(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn().await?;
        let rows = conn
            .query("SELECT name FROM groups ORDER BY name", &[])
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The groups `user` belongs to, by name.
    pub async fn groups_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT group_name FROM memberships WHERE user_name = $1 ORDER BY group_name",
            )
            .await?;
        let rows = conn.query(&stmt, &[&user]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}
