//! Helpers shared by the test files: farms whose servers share their ring, sessions driven
//! after a login, and the lines those sessions print.

use crate::failover::{drive, fetched_log, share_ring, Keyboard, Screen};
use crate::fake_server::{messages, FakeServer};
use crate::farm::{connected, delivered_at_login, farm, logged_in};
use crate::session::run_on;
use chat_client::session::{Config, Exit};
use chat_proto::MessageId;
use serde_json::{json, Value};
use std::future::Future;

/// A fake farm of servers named `names`, each handing out the ring of them all.
pub async fn ringed_farm<const N: usize>(names: [&str; N]) -> [FakeServer; N] {
    let servers = farm(names).await;
    share_ring(&servers);
    servers
}

/// The answer to `who` from every fake server.
pub fn who_answer() -> Value {
    json!({"type":"ok","command":"who","users":["alice","bob"]})
}

/// What a session prints when `user` logs in at `server`: the connection, the message the fake
/// delivers at login, and the login's answer.
pub fn logged_in_at(user: &str, server: &str) -> Vec<Value> {
    vec![connected(server), delivered_at_login(), logged_in(user)]
}

/// What a session prints when `user` logs in at `first` and then moves to `then`, which hands
/// over the rest of the log.
pub fn moved_after_login(user: &str, first: &str, then: &str) -> Vec<Value> {
    let [second, third] = fetched_log();
    let mut lines = logged_in_at(user, first);
    lines.extend([connected(then), second, third]);
    lines
}

/// The ids of the fake's log as a client confirms them: in two batches, when the whole log is
/// fetched.
pub fn whole_log_confirmed() -> Vec<Vec<MessageId>> {
    let [first, second, third] = messages();
    vec![vec![first.id, second.id], vec![third.id]]
}

/// Runs a session over `script`, connected first to `server`, checks that it ran to the end of
/// its input, and returns its lines.
pub async fn run_to_end(server: &FakeServer, script: &str) -> Vec<Value> {
    let (exit, lines) = run_on(server, script).await;
    assert_eq!(exit, Exit::EndOfInput, "{lines:#?}");
    lines
}

/// As [`drive`], but the session first logs `user` in with password `pw` and waits for the
/// answer; then `script` types and watches.
pub async fn drive_logged_in<T, F, Fut>(
    first: &FakeServer,
    config: Config,
    user: &str,
    script: F,
) -> (Exit, Vec<Value>, T)
where
    F: FnOnce(Keyboard, Screen) -> Fut,
    Fut: Future<Output = T>,
{
    let login = format!("login {user} pw");
    drive(first, config, |mut keys, screen| async move {
        keys.type_line(&login).await;
        screen.answer("login").await;
        script(keys, screen).await
    })
    .await
}
