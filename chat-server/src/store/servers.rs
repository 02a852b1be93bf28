//! The `server_info` registry: who is in the farm, where, and whether they still heartbeat.

use super::{Store, StoreError};
use chat_proto::ring::DEFAULT_VNODES;
use std::time::Duration;
use tokio_postgres::types::ToSql;

/// A server's registration.
pub struct ServerRow {
    pub name: String,
    /// `host:port` where clients connect.
    pub client_addr: (String, u16),
    /// `host:port` where other servers connect.
    pub peer_addr: (String, u16),
    /// The public half of this process's link key, in hex.
    pub link_key: String,
    /// Where it serves the web client (`http://host:port`), if it does.
    pub web_url: Option<String>,
}

/// A server as the registry sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub name: String,
    pub client_addr: String,
    pub peer_addr: String,
    /// When it last registered, in milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// It heartbeat within the timeout and has not shut down.
    pub live: bool,
    /// The public half of its link key, in hex (none before it was first registered with one).
    pub link_key: Option<String>,
    /// Where it serves the web client, if it does.
    pub web_url: Option<String>,
}

/// The registry at one moment.
pub struct Registry {
    /// The row still belongs to the caller: no other process has registered under its name
    /// since.
    pub ours: bool,
    /// The ring's positions per server.
    pub vnodes: u32,
    /// Every server that ever registered, sorted by name.
    pub servers: Vec<ServerState>,
}

impl Store {
    /// Registers this server, or re-registers it after a restart, as alive now. Returns its
    /// start time in milliseconds since the Unix epoch, by the database's clock.
    pub async fn register_server(&self, row: &ServerRow) -> Result<i64, StoreError> {
        let conn = self.conn().await?;
        let registered = conn
            .query_one(
                "INSERT INTO server_info (name, host, client_port, peer_host, server_port, link_key, \
                     web_url) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (name) DO UPDATE SET host = $2, client_port = $3, peer_host = $4, \
                     server_port = $5, link_key = $6, web_url = $7, started_at = clock_timestamp(), \
                     last_heartbeat = now(), alive = true \
                 RETURNING (extract(epoch FROM started_at) * 1000)::bigint",
                &[
                    &row.name,
                    &row.client_addr.0,
                    &i32::from(row.client_addr.1),
                    &row.peer_addr.0,
                    &i32::from(row.peer_addr.1),
                    &row.link_key,
                    &row.web_url,
                ],
            )
            .await?;
        Ok(registered.get(0))
    }

    /// Renews the heartbeat of this server (`name`, registered at `started_at_ms`) and reads the
    /// whole registry, in one round trip. Liveness is judged by the database's clock, so the
    /// servers' clocks need not agree.
    pub async fn heartbeat(
        &self,
        name: &str,
        started_at_ms: i64,
        timeout: Duration,
    ) -> Result<Registry, StoreError> {
        let conn = self.conn().await?;
        let beat = conn
            .prepare_cached(
                "UPDATE server_info SET last_heartbeat = now(), alive = true \
                 WHERE name = $1 AND (extract(epoch FROM started_at) * 1000)::bigint = $2",
            )
            .await?;
        let read = conn
            .prepare_cached(
                "SELECT s.name, s.host, s.client_port, coalesce(s.peer_host, s.host), s.server_port, \
                        (extract(epoch FROM s.started_at) * 1000)::bigint, \
                        s.alive AND s.last_heartbeat > now() - make_interval(secs => $1), \
                        f.vnodes, s.link_key, s.web_url \
                 FROM server_info s CROSS JOIN farm f ORDER BY s.name",
            )
            .await?;
        // Both statements go out pipelined on the one connection.
        let timeout_secs = timeout.as_secs_f64();
        let (beat_params, read_params): ([&(dyn ToSql + Sync); 2], [&(dyn ToSql + Sync); 1]) =
            ([&name, &started_at_ms], [&timeout_secs]);
        let (n_beats, rows) = futures::try_join!(
            conn.execute(&beat, &beat_params),
            conn.query(&read, &read_params)
        )?;
        let vnodes = rows.first().map_or(DEFAULT_VNODES, |row| {
            u32::try_from(row.get::<_, i32>(7)).unwrap_or(DEFAULT_VNODES)
        });
        let servers = rows
            .iter()
            .map(|row| ServerState {
                name: row.get(0),
                client_addr: join_host_port(row.get(1), row.get(2)),
                peer_addr: join_host_port(row.get(3), row.get(4)),
                started_at_ms: row.get(5),
                live: row.get(6),
                link_key: row.get(8),
                web_url: row.get(9),
            })
            .collect();
        Ok(Registry {
            ours: n_beats == 1,
            vnodes,
            servers,
        })
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

/// `host:port`, with brackets around an IPv6 host.
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
