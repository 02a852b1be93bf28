//! The web listener: a TCP socket, TLS when configured, and hyper's HTTP/1 with upgrades (for
//! the WebSocket) serving the routes.
//!
//! TCP connections are bounded (the WebSockets, plus [`PAGE_LOADS`] for fetching the page);
//! each has [`REQUEST_TIMEOUT`] for its TLS handshake and its request headers.

use crate::config::{plain_refused, WebConfig};
use crate::gateway::Gateway;
use crate::routes::{self, Browser, WebState};
use crate::tls;
use anyhow::Context;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// TCP connections beyond the WebSockets, for loading the page.
const PAGE_LOADS: usize = 64;
/// How long a connection may take for its TLS handshake, and then for its request headers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound web socket, ready to serve.
pub struct WebListener {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    config: WebConfig,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl WebListener {
    /// Reads the TLS files and binds, or says why it cannot: a bad certificate or key, a
    /// plain HTTP listen off loopback without `allow_plain`, an address in use.
    pub async fn bind(config: &WebConfig) -> anyhow::Result<WebListener> {
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen for the web client on {}", config.listen))?;
        let addr = listener.local_addr()?;
        if tls.is_none() && !config.allow_plain && !addr.ip().is_loopback() {
            anyhow::bail!(plain_refused(addr));
        }
        Ok(WebListener {
            listener,
            tls,
            config: config.clone(),
            addr,
        })
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Serves the page and the WebSocket until `shutdown`, which also ends every WebSocket.
pub async fn serve(listener: WebListener, gateway: Gateway, shutdown: CancellationToken) {
    let WebListener {
        listener,
        tls,
        config,
        ..
    } = listener;
    let max_sockets = config.max_connections.max(1);
    let state = Arc::new(WebState {
        gateway,
        extra_origins: config.extra_origins,
        slots: Arc::new(Semaphore::new(max_sockets)),
        shutdown: shutdown.clone(),
    });
    let router = routes::router(state);
    let connections = Arc::new(Semaphore::new(max_sockets + PAGE_LOADS));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = shutdown.cancelled() => return,
        };
        let (stream, browser) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "web accept failed; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        backoff = Duration::from_millis(10);
        let (tls, shutdown) = (tls.clone(), shutdown.clone());
        // Each request of the connection knows where it came from: the gateway forwards it.
        let router = router.clone().layer(Extension(Browser(browser)));
        tokio::spawn(async move {
            connection(stream, tls, router, shutdown).await;
            drop(permit);
        });
    }
}

/// One TCP connection: its TLS handshake, if any, then HTTP.
async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    router: Router,
    shutdown: CancellationToken,
) {
    let Some(acceptor) = tls else {
        return http(stream, router, shutdown).await;
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => http(stream, router, shutdown).await,
        Ok(Err(err)) => tracing::debug!(%err, "a web TLS handshake failed"),
        Err(_) => tracing::debug!("a web TLS handshake timed out"),
    }
}

/// HTTP/1 on one connection, with upgrades; a page load is cut short at shutdown.
async fn http<S>(stream: S, router: Router, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, "a web connection failed");
    }
}
