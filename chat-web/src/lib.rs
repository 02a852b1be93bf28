//! The farm's web client: every chat server can serve it (`--web-listen`).
//!
//! It serves one static page (`static/`: plain HTML, CSS and JavaScript, built into the
//! binary) and a WebSocket at `/ws`. The WebSocket speaks the JSON of `chat-client --json`:
//! each text frame from the page is one command object (`chat_client::json_command`), and
//! each frame to it is one event object, exactly as the CLI prints them. That holds by
//! construction: for each WebSocket the **gateway** runs chat-client's own `Session`, over
//! the real protocol (Noise, the farm's key pinned) to this server, with the page's commands
//! as its input and the socket as its output. Failover between the farm's servers, resume
//! tickets and the shown-once rule of messages come from the client library.
//!
//! - `config`: the `--web-*` settings, and the rule that plain HTTP listens on loopback only.
//! - `tls`: the certificate and key (PEM) for HTTPS and WSS, read with rustls.
//! - `listener`: the socket, TLS, hyper's HTTP/1 with upgrades, bounded connections.
//! - `routes`: the page's files, with their security headers, and the WebSocket's upgrade.
//! - `origin`: the Origin check of every WebSocket (the farm's web origins, and extra ones).
//! - `gateway`: one WebSocket's session, and what the page learns of the farm.
//! - `sink`: the session's output on the socket, and the marks the page answers once it has
//!   handled what came before them.
//!
//! **A web connection never panics the server and never logs a secret**: bad frames are
//! answered with an `error` object, and neither commands nor events are logged. **A message
//! is acknowledged only once the page answered the mark sent after it** (see `sink`), and a
//! `readlog` batch confirmed only once all of it was. **Every WebSocket passes the Origin
//! check.** **Plain HTTP is served only on a loopback address** unless the operator says
//! otherwise.

mod config;
mod gateway;
mod listener;
mod origin;
mod routes;
mod sink;
mod tls;

pub use config::{TlsFiles, WebConfig, DEFAULT_MAX_CONNECTIONS};
pub use gateway::{Directory, Gateway, WebServer};
pub use listener::{serve, WebListener};
