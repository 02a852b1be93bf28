//! One WebSocket's session: chat-client's `Session`, its input the page's command objects and
//! its output the socket, connected to the farm through this server over the real protocol.
//!
//! The first frame to the page is a `web` event, which the CLI has no use for: this server's
//! name and every server's web URL, so that the page can move to another server's endpoint
//! when this one dies, or when its session moved (a `connected` event naming another server).
//!
//! The gateway ends when the page goes (its socket closes or it stops reading), when the
//! session does (`quit`), or when this server shuts down; the page then logs in elsewhere
//! with its ticket. Whatever the page had not acknowledged stays with the farm for its
//! `readlog`.

use crate::routes::WebState;
use crate::sink::{self, Marks, WebSink, EVENT_QUEUE};
use axum::extract::ws::{Message, WebSocket};
use chat_client::command::ParseError;
use chat_client::farm::connect_any;
use chat_client::handshake::ServerTrust;
use chat_client::input::{Input, Parsed};
use chat_client::json_command::{self, INPUT};
use chat_client::output::{Format, LineSink as _, Output};
use chat_client::session::{Config, Session, CONNECTION};
use chat_proto::Forwarded;
use futures::{Stream, StreamExt};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

/// Commands a page may send ahead of their answers; then its socket is read no further
/// until the session catches up.
const COMMANDS_AHEAD: usize = 64;

/// How long the last events and the close frame may take to reach a page.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the gateway needs of the server it runs in.
pub struct Gateway {
    /// This server's name in the farm, told to the page.
    pub server: String,
    /// Where the gateway's sessions connect: this server's client address.
    pub farm_addr: String,
    /// The farm's public key, which every server the sessions reach must present.
    pub farm_key: [u8; 32],
    /// The farm's web endpoints, read from the registry.
    pub directory: Arc<dyn Directory>,
    /// The farm's word on a browser's address (chat-server's `forwarding`): each session
    /// sends it before its login, so that the farm's per-address limits count the browser's
    /// address rather than this server's, which every web user shares.
    pub vouch: Arc<dyn Fn(IpAddr) -> Forwarded + Send + Sync>,
}

/// The farm's web endpoints, as the server's registry has them.
pub trait Directory: Send + Sync {
    /// Every server that registered a web URL, live or not.
    fn web_servers(&self) -> Vec<WebServer>;
}

/// One server's web endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebServer {
    pub name: String,
    /// `http://host:port` or `https://host:port`, where its page and `/ws` are.
    pub url: String,
    /// Whether it heartbeats.
    pub live: bool,
}

/// The page's first frame.
#[derive(Serialize)]
#[serde(tag = "type", rename = "web")]
struct WebEvent<'a> {
    server: &'a str,
    servers: Vec<WebServer>,
}

/// Serves one WebSocket until the page, the session or the server ends it.
pub(crate) async fn serve(
    socket: WebSocket,
    browser: SocketAddr,
    state: Arc<WebState>,
    permit: OwnedSemaphorePermit,
) {
    let (socket_tx, socket_rx) = socket.split();
    let (events, queue) = mpsc::channel(EVENT_QUEUE);
    let overflow = CancellationToken::new();
    let close = Message::Close(None);
    let marks = Arc::new(Marks::default());
    let writer = tokio::spawn(sink::write(
        socket_tx,
        queue,
        marks.clone(),
        text_frame,
        close,
    ));
    let mut sink = WebSink {
        events,
        overflow: overflow.clone(),
    };
    let web = WebEvent {
        server: &state.gateway.server,
        servers: state.gateway.directory.web_servers(),
    };
    match serde_json::to_string(&web) {
        Ok(web) => {
            let _ = sink.write_line(&web);
        }
        Err(err) => tracing::warn!(%err, "cannot write the web event"),
    }
    let output = Output::new(Format::Json, Box::new(sink)).with_tickets();
    let (commands_tx, commands) = mpsc::channel(COMMANDS_AHEAD);
    let mut input = Input::Commands(commands);
    tokio::select! {
        () = run_session(&state.gateway, browser.ip(), &output, &mut input) => {}
        () = read_commands(socket_rx, commands_tx, &marks) => {}
        () = overflow.cancelled() => tracing::debug!("a page stopped reading its events"),
        () = state.shutdown.cancelled() => {}
    }
    // The session's connection is closed by now; the writer sends what is left, then a close.
    drop(input);
    drop(output);
    if tokio::time::timeout(GOODBYE_TIMEOUT, writer).await.is_err() {
        tracing::debug!("a page did not take its last events in time");
    }
    drop(permit);
}

fn text_frame(event: String) -> Message {
    Message::Text(event.into())
}

/// Connects to the farm through this server and runs the session, for the browser at
/// `browser`, until it ends.
async fn run_session(gateway: &Gateway, browser: IpAddr, output: &Output, input: &mut Input) {
    let mut config = Config::new(
        vec![gateway.farm_addr.clone()],
        ServerTrust::Pinned(gateway.farm_key),
    );
    config.forwarded = Some((gateway.vouch)(browser));
    match connect_any(&config.seeds, &config.connect_options()).await {
        Ok((connection, incoming)) => {
            let session = Session::new(output, config);
            session.run(connection, incoming, input).await;
        }
        Err(err) => output.error(CONNECTION, err.to_string()),
    }
}

/// Reads the page's frames, each text frame one command, until the page closes the socket.
async fn read_commands<S, E>(mut frames: S, commands: mpsc::Sender<Parsed>, marks: &Marks)
where
    S: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    while let Some(frame) = frames.next().await {
        let parsed = match frame {
            Ok(Message::Text(text)) => match marked(text.as_str()) {
                Some(mark) => {
                    marks.answered(mark);
                    continue;
                }
                None => json_command::parse(text.as_str()),
            },
            Ok(Message::Binary(_)) => Err(ParseError {
                command: INPUT.to_string(),
                message: "send each command as a text frame of JSON".to_string(),
            }),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => return,
            Err(err) => {
                tracing::debug!(%err, "a page's socket failed");
                return;
            }
        };
        if commands.send(parsed).await.is_err() {
            return;
        }
    }
}

/// The page's answer to a mark, `{"command":"marked","mark":N}`; not a command of the session.
fn marked(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Marked {
        command: String,
        mark: u64,
    }
    serde_json::from_str::<Marked>(text)
        .ok()
        .filter(|answer| answer.command == "marked")
        .map(|answer| answer.mark)
}
