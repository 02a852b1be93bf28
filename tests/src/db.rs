use crate::binary;
use std::path::PathBuf;
use tokio_postgres::NoTls;

/// A database of its own for one test, created on the server that `DATABASE_URL` names, and
/// the keys of the farm that uses it (made by `chat-server keygen`).
pub struct TestDb {
    pub url: String,
    /// Holds `farm.key`, `farm.pub` and `cluster.key`.
    pub keys: PathBuf,
}

/// The keys go with the test: they are test keys, but private keys all the same, and a
/// suite leaves hundreds of folders of them.
impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.keys);
    }
}

impl TestDb {
    /// A database on the server that `DATABASE_URL` names.
    pub async fn new() -> TestDb {
        let base = std::env::var("DATABASE_URL").expect(
            "DATABASE_URL must name a PostgreSQL server the tests may create databases on; \
             scripts/test sets one up",
        );
        TestDb::on(&base).await
    }

    /// A database on the server that `base` names, a URL ending in `/<database>` (and its
    /// parameters, which the test database's URL keeps).
    pub async fn on(base: &str) -> TestDb {
        let (client, connection) = tokio_postgres::connect(base, NoTls)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to DATABASE_URL: {err}"));
        tokio::spawn(connection);
        let name = format!("chat_test_{}", uuid::Uuid::now_v7().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let url = match base.rsplit_once('/') {
            Some((server, path)) if !server.ends_with('/') => {
                let params = path.split_once('?').map(|(_, query)| format!("?{query}"));
                format!("{server}/{name}{}", params.unwrap_or_default())
            }
            _ => panic!("DATABASE_URL must be a URL ending in /<database>: {base}"),
        };
        let keys = std::env::temp_dir().join(format!("chat-test-keys-{name}"));
        let made = std::process::Command::new(binary("chat-server"))
            .arg("keygen")
            .arg("--dir")
            .arg(&keys)
            .output()
            .expect("run chat-server keygen");
        assert!(
            made.status.success(),
            "chat-server keygen failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        TestDb { url, keys }
    }

    /// The farm's public key, as clients pin it.
    pub fn farm_public_key(&self) -> String {
        std::fs::read_to_string(self.keys.join("farm.pub"))
            .expect("read farm.pub")
            .trim()
            .to_owned()
    }

    /// The cluster key's 32 bytes, for a test that plays a server.
    pub fn cluster_key(&self) -> [u8; 32] {
        let text =
            std::fs::read_to_string(self.keys.join("cluster.key")).expect("read cluster.key");
        chat_proto::key_from_hex(&text).expect("a cluster key")
    }

    /// The `host:port` of the database server.
    pub fn host_port(&self) -> String {
        let after_scheme = self
            .url
            .split_once("://")
            .map_or(&*self.url, |(_, rest)| rest);
        let authority = after_scheme.split('/').next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        host_port.to_owned()
    }

    /// This database's URL with `host_port` in place of the server's address.
    pub fn url_via(&self, host_port: &str) -> String {
        self.url.replacen(&self.host_port(), host_port, 1)
    }

    /// Runs statements that return nothing, such as a test's own trigger.
    pub async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        client.batch_execute(sql).await.expect("test statements");
    }

    /// Runs one query and returns the first column of each row as text.
    pub async fn query_strings(&self, sql: &str) -> Vec<String> {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        let rows = client.query(sql, &[]).await.expect("test query");
        rows.iter().map(|row| row.get::<_, String>(0)).collect()
    }
}
