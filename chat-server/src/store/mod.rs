//! The PostgreSQL store. **Only this module speaks SQL.**
//!
//! Every method takes a pooled connection for one statement or one transaction and gives it
//! back; nothing here holds a connection across calls. Statements are prepared once per pooled
//! connection (`prepare_cached`).

mod groups;
mod inbox;
mod servers;
mod users;

pub use inbox::{InboxDelete, InboxRow};
pub use servers::{Registry, ServerRow, ServerState};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use thiserror::Error;
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// How long getting a connection may take, and how long TCP waits on a silent database.
const DB_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a statement waits for a row lock before it fails.
const LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long Postgres lets a transaction sit idle (its server hung) before ending it.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Servers that start together take this Postgres advisory lock before migrating, so that only
/// one of them applies a migration and the others wait and then find it applied.
const MIGRATION_LOCK: i64 = 0x6368_6174_6d69_6772; // "chatmigr"

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("bad database configuration: {0}")]
    Config(String),
}

/// A pool of connections to the farm's database.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Connects to `url`, applies any pending migration, and returns the pool.
    pub async fn open(url: &str, pool_size: usize) -> Result<Store, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|err| StoreError::Config(format!("DATABASE_URL does not parse: {err}")))?;
        // A database that stops answering must fail requests, not hang them: bounded connects,
        // and TCP that gives up on a peer that went silent.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DB_TIMEOUT);
        }
        config
            .keepalives(true)
            .keepalives_idle(DB_TIMEOUT)
            .tcp_user_timeout(DB_TIMEOUT);
        // A server frozen (SIGSTOP) in the middle of a transaction keeps its row locks until
        // Postgres ends that transaction; until then, whatever waits on them (another server
        // confirming the same user's log, say) gives up after the lock timeout rather than
        // hanging its session.
        let options = format!(
            "{} -c lock_timeout={}ms -c idle_in_transaction_session_timeout={}ms",
            config.get_options().unwrap_or_default(),
            LOCK_TIMEOUT.as_millis(),
            IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        );
        config.options(options.trim());
        migrate(&config).await?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(DB_TIMEOUT))
            .create_timeout(Some(DB_TIMEOUT))
            .recycle_timeout(Some(DB_TIMEOUT))
            .build()
            .map_err(|err| StoreError::Config(err.to_string()))?;
        Ok(Store { pool })
    }

    async fn conn(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Runs `query`, a keyset page of names (`WHERE name > $1 ORDER BY name LIMIT $2`), never
    /// an offset: each page costs an index range, however deep into the list it is.
    async fn names_after(
        &self,
        query: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached(query).await?;
        // Every name has at least one character, so all of them sort after the empty one.
        let rows = conn
            .query(&stmt, &[&after.unwrap_or_default(), &limit(count)])
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

/// A count as a `LIMIT` parameter.
fn limit(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

async fn migrate(config: &tokio_postgres::Config) -> Result<(), StoreError> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    // Waiting for another server's migration is expected: no lock timeout here.
    client.batch_execute("SET lock_timeout = 0").await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner().run_async(&mut client).await;
    // Unlocking can only fail if the connection is gone, which releases the lock anyway.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    let _ = driver.await;
    for migration in report?.applied_migrations() {
        tracing::info!(%migration, "applied database migration");
    }
    Ok(())
}
