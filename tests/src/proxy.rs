use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A TCP proxy that the test can cut, as a network partition would (for putting a database out
/// of reach of the servers without stopping it for every other test), and that records every
/// byte it forwards (for checking what an eavesdropper would see).
pub struct Proxy {
    /// Where to connect instead of the target (`127.0.0.1:port`).
    pub addr: String,
    state: Arc<Mutex<State>>,
    captured: Arc<Mutex<Vec<u8>>>,
}

#[derive(Default)]
struct State {
    cut: bool,
    /// The forwarding tasks of the open connections.
    connections: JoinSet<()>,
}

/// Copies `from` to `to`, appending what passes to `captured`.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    captured: Arc<Mutex<Vec<u8>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        captured
            .lock()
            .expect("capture")
            .extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Proxy {
    /// Starts forwarding connections to `target`.
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let accepting = state.clone();
        let capture = captured.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut state = accepting.lock().expect("proxy state");
                if state.cut {
                    // Refused: dropped at once.
                    continue;
                }
                let target = target.clone();
                let capture = capture.clone();
                state.connections.spawn(async move {
                    if let Ok(server) = TcpStream::connect(&target).await {
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            forward(client_read, server_write, capture.clone()),
                            forward(server_read, client_write, capture),
                        );
                    }
                });
            }
        });
        Proxy {
            addr,
            state,
            captured,
        }
    }

    /// Every byte forwarded so far, both ways.
    pub fn captured(&self) -> Vec<u8> {
        self.captured.lock().expect("capture").clone()
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("proxy state");
        state.cut = true;
        state.connections.abort_all();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.lock().expect("proxy state").cut = false;
    }
}
