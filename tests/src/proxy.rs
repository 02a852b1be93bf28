use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A TCP proxy that the test can cut, as a network partition would: for putting a database out
/// of reach of the servers without stopping it for every other test.
pub struct Proxy {
    /// Where to connect instead of the target (`127.0.0.1:port`).
    pub addr: String,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    cut: bool,
    /// The forwarding tasks of the open connections.
    connections: JoinSet<()>,
}

impl Proxy {
    /// Starts forwarding connections to `target`.
    pub async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut state = accepting.lock().expect("proxy state");
                if state.cut {
                    // Refused: dropped at once.
                    continue;
                }
                let target = target.clone();
                state.connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let mut client = client;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { addr, state }
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
