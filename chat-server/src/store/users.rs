use super::{Store, StoreError};

impl Store {
    /// The stored password hash of `user`, or `None` if no such user registered.
    pub async fn password_hash(&self, user: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached("SELECT password_hash FROM users WHERE name = $1")
            .await?;
        let row = conn.query_opt(&stmt, &[&user]).await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Registers `user`. Returns false, changing nothing, if the name was taken meanwhile.
    pub async fn create_user(&self, user: &str, password_hash: &str) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "INSERT INTO users (name, password_hash) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .await?;
        Ok(conn.execute(&stmt, &[&user, &password_hash]).await? == 1)
    }

    pub async fn user_exists(&self, user: &str) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached("SELECT 1 FROM users WHERE name = $1")
            .await?;
        Ok(conn.query_opt(&stmt, &[&user]).await?.is_some())
    }

    /// Up to `count` registered names that sort after `after` (from the first when `None`), in
    /// order: one page.
    pub async fn users_after(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.names_after(
            "SELECT name FROM users WHERE name > $1 ORDER BY name LIMIT $2",
            after,
            count,
        )
        .await
    }
}

/// Resume tickets' revocation epochs (see `tickets`), and password changes, which revoke them.
impl Store {
    /// `user`'s revocation epoch, or `None` if no such user registered.
    pub async fn ticket_epoch(&self, user: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached("SELECT ticket_epoch FROM users WHERE name = $1")
            .await?;
        let row = conn.query_opt(&stmt, &[&user]).await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Revokes every ticket of `user`; returns the new epoch, `None` if no such user.
    pub async fn revoke_tickets(&self, user: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "UPDATE users SET ticket_epoch = ticket_epoch + 1 WHERE name = $1 \
                 RETURNING ticket_epoch",
            )
            .await?;
        let row = conn.query_opt(&stmt, &[&user]).await?;
        Ok(row.map(|row| row.get(0)))
    }

    /// Replaces `user`'s password hash if it is still `old_hash` (no other change came in
    /// between), revoking every ticket of theirs. Returns the new epoch, or `None` when the
    /// hash was not `old_hash` any more (or no such user).
    pub async fn change_password(
        &self,
        user: &str,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<Option<i64>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "UPDATE users SET password_hash = $3, ticket_epoch = ticket_epoch + 1 \
                 WHERE name = $1 AND password_hash = $2 RETURNING ticket_epoch",
            )
            .await?;
        let row = conn
            .query_opt(&stmt, &[&user, &old_hash, &new_hash])
            .await?;
        Ok(row.map(|row| row.get(0)))
    }
}
