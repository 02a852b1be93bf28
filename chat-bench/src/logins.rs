//! Many logins at once, with a bound on how many are under way, and the `login` line.
//!
//! Each login is timed from the moment it may start (it has its place among the concurrent
//! ones) until the server answers `LoggedIn`: the connection, the handshake, the hellos, any
//! redirect, and the password check (or the registration of a new name).

use crate::farm::{Conn, Farm};
use crate::report::{Latencies, Line};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// What a batch of logins came to.
pub struct Logins<C> {
    /// In the order of the names; `None` where the login failed.
    pub conns: Vec<Option<C>>,
    pub latencies: Latencies,
    pub failed: u64,
}

impl<C> Logins<C> {
    pub fn ok(&self) -> u64 {
        self.latencies.count()
    }

    /// Prints the `phase` line: clients, ok, failed and the latencies in milliseconds.
    pub fn print(&self, phase: &str) {
        Line::new(phase)
            .field("clients", self.conns.len())
            .field("ok", self.ok())
            .field("failed", self.failed)
            .millis(&self.latencies)
            .print();
    }

    /// The connections, once every login worked.
    pub fn all(self) -> anyhow::Result<Vec<C>> {
        if self.failed > 0 {
            anyhow::bail!("{} of {} logins failed", self.failed, self.conns.len());
        }
        Ok(self.conns.into_iter().flatten().collect())
    }
}

/// Logs every one of `users` in at home on `farm`, at most `concurrency` at a time.
pub async fn farm_logins(
    farm: &Arc<Farm>,
    users: &[String],
    password: &str,
    concurrency: usize,
) -> Logins<Conn> {
    let password: Arc<str> = Arc::from(password);
    timed(users, concurrency, |user| {
        let farm = farm.clone();
        let password = password.clone();
        async move { farm.log_in(&user, &password).await }
    })
    .await
}

/// Runs `login` for each of `items`, at most `concurrency` at a time, each on its own task,
/// and times each. Failures are printed on standard error (the first few) and counted.
pub async fn timed<T, C, F, Fut>(items: &[T], concurrency: usize, login: F) -> Logins<C>
where
    T: Clone,
    C: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<C>> + Send + 'static,
{
    const PRINTED_FAILURES: u64 = 5;
    let places = Arc::new(Semaphore::new(concurrency.max(1)));
    let tasks: Vec<_> = items
        .iter()
        .map(|item| {
            let places = places.clone();
            let attempt = login(item.clone());
            tokio::spawn(async move {
                let _place = places.acquire_owned().await;
                let started = Instant::now();
                let result = attempt.await;
                (result, started.elapsed())
            })
        })
        .collect();
    let mut logins = Logins {
        conns: Vec::with_capacity(items.len()),
        latencies: Latencies::new(),
        failed: 0,
    };
    for task in tasks {
        match task.await {
            Ok((Ok(conn), took)) => {
                logins.latencies.record(took);
                logins.conns.push(Some(conn));
            }
            Ok((Err(err), _)) => {
                if logins.failed < PRINTED_FAILURES {
                    eprintln!("error: {err:#}");
                }
                logins.failed += 1;
                logins.conns.push(None);
            }
            Err(join_error) => {
                eprintln!("error: a login task failed: {join_error}");
                logins.failed += 1;
                logins.conns.push(None);
            }
        }
    }
    logins
}
