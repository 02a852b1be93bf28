//! The web client: its WebSocket spoken directly (`socket`), and its page in headless
//! Chromium (`browser`, `failover`).

mod browser;
mod failover;
mod socket;

/// The flag that turns the web client on, on a free loopback port.
const WEB: [&str; 2] = ["--web-listen", "127.0.0.1:0"];
