//! End-to-end tests: real servers, real clients, a real PostgreSQL. See `chat_tests` for the
//! harness and what it needs.

mod accounts;
mod admin;
mod bench;
mod chaos;
mod devices;
mod farm;
mod groups;
mod home;
mod hostile;
mod hosts;
mod limits;
mod members;
mod messaging;
mod metrics;
mod offline;
mod outage;
mod pages;
mod readme;
mod replication;
mod terminal;
mod tickets;
mod web;
mod wire;
mod writes;

/// Whether the tests run as root, which the multi-host and database failover tests need.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}
