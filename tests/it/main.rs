//! End-to-end tests: real servers, real clients, a real PostgreSQL. See `chat_tests` for the
//! harness and what it needs.

mod accounts;
mod admin;
mod bench;
mod chaos;
mod farm;
mod groups;
mod home;
mod hostile;
mod hosts;
mod limits;
mod messaging;
mod metrics;
mod offline;
mod outage;
mod pages;
mod tickets;
mod wire;
mod writes;
