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
