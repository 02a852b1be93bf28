use crate::{Client, Proxy, Server, TestDb, EVENT_TIMEOUT};
use chat_proto::ring::DEFAULT_VNODES;
use chat_proto::Ring;
use std::time::Duration;
use tokio::time::Instant;

/// How often [`Farm::converged`] asks the servers again.
const POLL: Duration = Duration::from_millis(100);

/// Servers `s1`, `s2`, ... sharing one database.
pub struct Farm {
    pub db: TestDb,
    pub servers: Vec<Server>,
    /// Extra flags of every server, as started and restarted.
    flags: Vec<String>,
    /// Where the servers reach the database: `db.url`, or a proxy's address for it.
    database_url: String,
}

impl Farm {
    /// Starts `n` servers one after the other and waits until they are all linked.
    pub async fn start(n: usize) -> Farm {
        Farm::start_with(n, &[]).await
    }

    /// Starts `n` servers with extra flags, as [`Farm::start`] does.
    pub async fn start_with(n: usize, flags: &[&str]) -> Farm {
        let db = TestDb::new().await;
        let database_url = db.url.clone();
        Farm::start_on(db, database_url, n, flags).await
    }

    /// Starts `n` servers with extra flags, as [`Farm::start_with`] does, that reach the
    /// database through a [`Proxy`] that the test can cut.
    pub async fn start_behind_proxy(n: usize, flags: &[&str]) -> (Farm, Proxy) {
        let db = TestDb::new().await;
        let proxy = Proxy::start(db.host_port()).await;
        let database_url = db.url_via(&proxy.addr);
        (Farm::start_on(db, database_url, n, flags).await, proxy)
    }

    /// Starts `n` servers of `db`'s farm that reach the database at `database_url`, with
    /// extra flags, as [`Farm::start_with`] does.
    pub async fn start_on(db: TestDb, database_url: String, n: usize, flags: &[&str]) -> Farm {
        let mut farm = Farm {
            db,
            servers: Vec::new(),
            flags: flags.iter().map(|flag| flag.to_string()).collect(),
            database_url,
        };
        for _ in 0..n {
            farm.add().await;
        }
        farm
    }

    /// Starts the next server and waits until every server sees it live and linked.
    pub async fn add(&mut self) -> &Server {
        let name = format!("s{}", self.servers.len() + 1);
        let server = Server::start_on(&self.db, &self.database_url, &name, &self.flag_refs()).await;
        self.servers.push(server);
        self.converged().await;
        self.servers.last().expect("just added")
    }

    /// Kills `name` as a crash would, starts it again, and waits until the farm is linked.
    pub async fn restart(&mut self, name: &str) {
        self.server_mut(name).kill().await;
        self.start_again(name).await;
        self.converged().await;
    }

    /// Starts `name` again after it was killed; returns once it is ready.
    pub async fn start_again(&mut self, name: &str) {
        self.start_again_with(name, &[]).await;
    }

    /// Starts `name` again with extra flags after the farm's (which they override): the web
    /// endpoint at the address it had, say, as an operator's restart would.
    pub async fn start_again_with(&mut self, name: &str, flags: &[&str]) {
        let mut all_flags = self.flag_refs();
        all_flags.extend_from_slice(flags);
        let server = Server::start_on(&self.db, &self.database_url, name, &all_flags).await;
        *self.server_mut(name) = server;
    }

    fn flag_refs(&self) -> Vec<&str> {
        self.flags.iter().map(String::as_str).collect()
    }

    pub fn server_mut(&mut self, name: &str) -> &mut Server {
        self.servers
            .iter_mut()
            .find(|server| server.name == name)
            .unwrap_or_else(|| panic!("no server {name} in the farm"))
    }

    /// Every server's client address, for a client that may fail over to any of them.
    pub fn addrs(&self) -> Vec<&str> {
        self.servers
            .iter()
            .map(|server| server.addr.as_str())
            .collect()
    }

    pub fn server(&self, name: &str) -> &Server {
        self.servers
            .iter()
            .find(|server| server.name == name)
            .unwrap_or_else(|| panic!("no server {name} in the farm"))
    }

    /// The ring that clients should compute for this farm.
    pub fn ring(&self) -> Ring {
        Ring::new(
            self.servers.iter().map(|server| &server.name),
            DEFAULT_VNODES,
        )
    }

    /// A client that was given only `seed`'s address, logged in as `user`, and the server it
    /// landed on.
    pub async fn login_via(&self, seed: &str, user: &str) -> (Client, String) {
        let mut client = Client::connect(self.server(seed)).await;
        client.ok(&format!("login {user} pw-{user}")).await;
        let landed = client
            .take_events(|ev| ev["type"] == "connected")
            .last()
            .map_or_else(
                || seed.to_owned(),
                |ev| ev["server"].as_str().unwrap_or("").to_owned(),
            );
        (client, landed)
    }

    /// Waits until every server of the farm lists each of `users` as online (`active-users`).
    /// A server hears of a login elsewhere a moment after it, over its link, and a message
    /// sent to the user before that is stored for `readlog` rather than pushed (a known limit,
    /// in the README's "Status"); a test that sends at once across servers waits here first.
    pub async fn wait_online(&self, users: &[&String]) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        for server in &self.servers {
            loop {
                let online = server.admin("active-users").await;
                let listed = |user: &&String| {
                    online
                        .lines()
                        .any(|line| line.split_whitespace().next() == Some(user.as_str()))
                };
                if users.iter().all(listed) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} does not list {users:?} online: {online:?}",
                    server.name
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Waits until every server sees every other one live, with a link up.
    pub async fn converged(&self) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let mut all = true;
            for server in &self.servers {
                let report = server.admin("servers").await;
                all &= self.servers.iter().all(|other| {
                    let link = if other.name == server.name {
                        "self"
                    } else {
                        "up"
                    };
                    report.lines().any(|line| {
                        line.starts_with(&format!("{} live ", other.name))
                            && line.contains(&format!(" link={link} "))
                    })
                });
            }
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the farm did not converge in time"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `n` user names (`<prefix>0`, `<prefix>1`, ...) whose home is `server`.
    pub fn users_homed_on(&self, server: &str, prefix: &str, n: usize) -> Vec<String> {
        let ring = self.ring();
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .filter(|user| ring.home(user) == Some(server))
            .take(n)
            .collect()
    }
}
