//! The `server_info` registry: who is in the farm, where, and whether they still heartbeat.

use super::{Store, StoreError};

/// A server's registration.
pub struct ServerRow {
    pub name: String,
    pub host: String,
    pub client_port: u16,
    pub server_port: u16,
}

impl Store {
    /// Registers this server, or re-registers it after a restart, as alive now.
    pub async fn register_server(&self, row: &ServerRow) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO server_info (name, host, client_port, server_port) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET host = $2, client_port = $3, server_port = $4, \
                 started_at = now(), last_heartbeat = now(), alive = true",
            &[
                &row.name,
                &row.host,
                &i32::from(row.client_port),
                &i32::from(row.server_port),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn heartbeat(&self, name: &str) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "UPDATE server_info SET last_heartbeat = now(), alive = true WHERE name = $1",
            )
            .await?;
        conn.execute(&stmt, &[&name]).await?;
        Ok(())
    }

    /// Marks the server as gone after a clean shutdown.
    pub async fn mark_server_gone(&self, name: &str) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE server_info SET alive = false WHERE name = $1",
            &[&name],
        )
        .await?;
        Ok(())
    }
}
