//! The harness of the end-to-end tests: a fresh database per test, real `chat-server` and
//! `chat-client` processes on free loopback ports, a raw protocol connection for the tests that
//! must misbehave on purpose, a terminal (tmux) for the client at a keyboard, and headless
//! Chromium (through chromedriver) for the web client.
//!
//! The tests need `DATABASE_URL` to point at a PostgreSQL server on which they may create
//! databases; `scripts/test` starts a throwaway one and sets it. `TEST_LOG=1` shows the
//! servers' logs. Nothing here sleeps in place of waiting for an event.

mod browser;
mod client;
mod db;
mod farm;
pub mod http;
mod proxy;
mod raw;
mod server;
mod terminal;

pub use browser::{Browser, Page};
pub use client::Client;
pub use db::TestDb;
pub use farm::Farm;
pub use proxy::{Proxy, Tap};
pub use raw::{handshake, hello_answer, RawConn};
pub use server::Server;
pub use terminal::Terminal;

use std::path::PathBuf;
use std::time::Duration;

/// How long any single expected event may take before the test fails.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The path of one of the workspace's binaries, built next to this test binary.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // target/debug/deps/it-<hash> -> target/debug/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// Milliseconds since the harness first asked, on a monotonic clock: event times and the
/// moments a test acts are compared on it.
pub fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let epoch = EPOCH.get_or_init(std::time::Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}
