//! What the web listener answers: the page's four files, built into the binary, and the
//! WebSocket at `/ws` behind the Origin check and the bound on connections.
//!
//! The files are sent with headers that keep the page to itself: a Content-Security-Policy
//! that allows only its own script and style, and sockets only to the farm's web endpoints;
//! no framing, no sniffing, no referrer.

use crate::gateway::{self, Gateway};
use crate::origin;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The largest frame a page may send: a command with a 4 KiB text fits many times over.
const MAX_FRAME_BYTES: usize = 64 * 1024;

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const FARM_JS: &str = include_str!("../static/farm.js");
const STYLE_CSS: &str = include_str!("../static/style.css");

/// What every request's handler shares.
pub(crate) struct WebState {
    pub(crate) gateway: Gateway,
    /// `--web-origin`'s, besides the farm's.
    pub(crate) extra_origins: Vec<String>,
    /// One permit per WebSocket.
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) shutdown: CancellationToken,
}

pub(crate) fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/farm.js", get(farm_js))
        .route("/style.css", get(style_css))
        .route("/ws", get(websocket))
        .with_state(state)
}

async fn index(State(state): State<Arc<WebState>>) -> Response {
    let policy = content_security_policy(&state);
    let mut response = file("text/html; charset=utf-8", INDEX_HTML);
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

async fn app_js() -> Response {
    file("text/javascript; charset=utf-8", APP_JS)
}

async fn farm_js() -> Response {
    file("text/javascript; charset=utf-8", FARM_JS)
}

async fn style_css() -> Response {
    file("text/css; charset=utf-8", STYLE_CSS)
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    (headers, body).into_response()
}

/// Only the page's own files, and sockets to the farm's web endpoints.
fn content_security_policy(state: &WebState) -> String {
    let sockets: Vec<String> = state
        .gateway
        .directory
        .web_servers()
        .iter()
        .filter_map(|server| origin::origin_of(&server.url))
        .map(|origin| origin.replacen("http", "ws", 1))
        .collect();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        sockets.join(" ")
    )
}

/// The address a request's TCP connection came from, put on each request by the listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Browser(pub SocketAddr);

async fn websocket(
    State(state): State<Arc<WebState>>,
    Extension(Browser(browser)): Extension<Browser>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers
        .get(header::ORIGIN)
        .map(|value| value.to_str().unwrap_or("null"));
    let farm = state.gateway.directory.web_servers();
    let allowed = farm
        .iter()
        .map(|server| server.url.as_str())
        .chain(state.extra_origins.iter().map(String::as_str));
    if !origin::allowed(origin, allowed) {
        tracing::debug!(?origin, "a WebSocket from a foreign origin was refused");
        return (
            StatusCode::FORBIDDEN,
            "this origin may not open the chat's socket\n",
        )
            .into_response();
    }
    let Ok(permit) = state.slots.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many web connections; try another server\n",
        )
            .into_response();
    };
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| gateway::serve(socket, browser, state, permit))
}
