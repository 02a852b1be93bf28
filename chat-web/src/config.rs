//! How a server serves the web client: `chat-server`'s `--web-*` flags, as a struct.

use std::path::PathBuf;

/// WebSocket connections served at once, by default. Each costs a gateway task and one
/// connection to the farm, from this server's own address: keep it under the farm's
/// `--max-connections-per-address`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// The web client's settings.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where to listen, `HOST:PORT`.
    pub listen: String,
    /// The certificate and key for HTTPS; plain HTTP without them.
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP on an address that is not loopback (behind a TLS proxy, say).
    pub allow_plain: bool,
    /// Origins allowed to open a WebSocket besides the farm's own web origins
    /// (`https://chat.example`).
    pub extra_origins: Vec<String>,
    /// The most WebSockets at once; more are answered 503.
    pub max_connections: usize,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why plain HTTP is refused off loopback: the start-up error says it.
pub(crate) fn plain_refused(addr: std::net::SocketAddr) -> String {
    format!(
        "--web-listen {addr} is not a loopback address, and without TLS anyone on the path \
         could alter the page and read the passwords typed into it; give --web-tls-cert and \
         --web-tls-key, or --web-allow-plain when a TLS proxy is in front"
    )
}
