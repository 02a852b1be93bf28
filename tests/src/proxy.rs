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

/// A one-connection proxy that keeps what the client sent, read by read, and lets the test
/// send bytes of its own to the server on that connection: for replaying and reordering
/// encrypted frames as an attacker on the path would.
pub struct Tap {
    pub addr: String,
    /// The client's bytes, one entry per read.
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    inject: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
}

impl Tap {
    pub async fn start(target: String) -> Tap {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tap");
        let addr = listener.local_addr().expect("tap address").to_string();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (inject, mut injected) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let record = sent.clone();
        tokio::spawn(async move {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(&target).await else {
                return;
            };
            let (mut client_read, client_write) = client.into_split();
            let (server_read, mut server_write) = server.into_split();
            let to_server = async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    tokio::select! {
                        read = client_read.read(&mut buf) => {
                            let n = match read {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            record.lock().expect("tap").push(buf[..n].to_vec());
                            if server_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        Some(bytes) = injected.recv() => {
                            if server_write.write_all(&bytes).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            };
            tokio::join!(
                to_server,
                forward(server_read, client_write, Arc::default())
            );
        });
        Tap { addr, sent, inject }
    }

    /// What the client has sent so far, one entry per read.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.sent.lock().expect("tap").clone()
    }

    /// Sends `bytes` to the server as if the client had.
    pub fn inject(&self, bytes: Vec<u8>) {
        let _ = self.inject.send(bytes);
    }
}
