//! The web client's wiring (`chat-web` does the work): its listener and the URL registered
//! for it, and the farm's web endpoints, read from the registry, for its gateway.

use super::advertise::{advertised, split_host_port};
use crate::config::Config;
use crate::farm::Farm;
use crate::forwarding::ForwardingKey;
use chat_web::{Directory, Gateway, WebListener, WebServer};
use std::sync::Arc;

/// The bound web listener and the URL browsers open for it.
pub(super) struct Web {
    pub(super) listener: WebListener,
    pub(super) url: String,
}

/// Binds `--web-listen`, when given; fails on bad TLS files and on plain HTTP off loopback.
pub(super) async fn bind(config: &Config) -> anyhow::Result<Option<Web>> {
    let Some(web) = config.web() else {
        return Ok(None);
    };
    let listener = WebListener::bind(&web).await?;
    let url = match &config.web_url {
        Some(url) => {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "--web-url {url:?} is not an http:// or https:// URL"
            );
            url.trim_end_matches('/').to_owned()
        }
        None => {
            let host = config.advertise.as_deref().map(|a| split_host_port(a).0);
            let (host, port) = advertised(host, listener.addr)?;
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            format!("{}://{host}:{port}", listener.scheme())
        }
    };
    Ok(Some(Web { listener, url }))
}

/// The gateway of this server: its sessions connect to `client_addr`, pinning `farm_key`, and
/// say where their browsers are with tags of the `forwarding` key.
pub(super) fn gateway(
    name: &str,
    client_addr: &(String, u16),
    farm_key: [u8; 32],
    farm: Arc<Farm>,
    forwarding: Arc<ForwardingKey>,
) -> Gateway {
    let (host, port) = client_addr;
    let farm_addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Gateway {
        server: name.to_owned(),
        farm_addr,
        farm_key,
        directory: Arc::new(Registered(farm)),
        vouch: Arc::new(move |addr| forwarding.vouch(addr)),
    }
}

/// The web URLs in the registry, as the last heartbeat read them.
struct Registered(Arc<Farm>);

impl Directory for Registered {
    fn web_servers(&self) -> Vec<WebServer> {
        self.0
            .view()
            .servers
            .iter()
            .filter_map(|server| {
                let url = server.web_url.clone()?;
                Some(WebServer {
                    name: server.name.clone(),
                    url,
                    live: server.live,
                })
            })
            .collect()
    }
}
