//! The `irc` workload: the `dm` workload spoken as IRC (RFC 1459 and 2812) to an IRC
//! network, so that the farm can be compared with its peers on the same load.
//!
//! Client `i` connects to server `i mod n` and registers with NICK and USER (the login is done
//! at `001`); its partner is client `i xor 1`, on the next server. Before any message, every
//! client asks with ISON until its partner is visible, so that the network has linked. Then,
//! as in `dm`, each client sends its messages to its partner with PRIVMSG, at most `--window`
//! not yet delivered: IRC tells a sender nothing, so a message is done once its partner has
//! it. The server's PINGs are answered. Each connection has one reader and one writer task.

use crate::args::{count, IrcArgs};
use crate::flow::Flow;
use crate::ledger::{Ledger, Outgoing, Shape};
use crate::logins::timed;
use crate::messages::{measure, with_traffic};
use crate::report::{Latencies, Line, Verdict};
use crate::stop_watch::StopWatch;
use anyhow::{anyhow, bail, Context as _};
use futures::StreamExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt as _, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

/// The longest line accepted from a server.
const MAX_LINE: usize = 8192;
/// How long a connection and its registration may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a client asks whether its partner is visible yet.
const ISON_EVERY: Duration = Duration::from_millis(100);
/// Lines (PONGs) queued from the reader to the writer.
const REPLY_QUEUE: usize = 64;

type Lines = FramedRead<OwnedReadHalf, LinesCodec>;
type Writer = BufWriter<OwnedWriteHalf>;

/// A registered client.
struct Client {
    nick: String,
    lines: Lines,
    writer: Writer,
}

impl Client {
    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.write_all(b"\r\n").await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// The next line, answering PINGs on the way.
    async fn next_line(&mut self) -> anyhow::Result<String> {
        loop {
            let line =
                self.lines.next().await.ok_or_else(|| {
                    anyhow!("the server closed the connection of {}", self.nick)
                })??;
            let message = Message::parse(&line);
            match message.command {
                "PING" => self.send(&format!("PONG :{}", message.last())).await?,
                "ERROR" => bail!("the server closed the connection of {}: {line}", self.nick),
                _ => return Ok(line),
            }
        }
    }
}

/// One line from a server, split as RFC 1459 says.
#[derive(Debug, PartialEq, Eq)]
struct Message<'a> {
    command: &'a str,
    params: Vec<&'a str>,
}

impl<'a> Message<'a> {
    fn parse(line: &'a str) -> Message<'a> {
        let mut rest = line;
        if rest.starts_with(':') {
            rest = rest.split_once(' ').map_or("", |(_, after)| after);
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let mut params = Vec::new();
        while !rest.is_empty() {
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
            if !param.is_empty() {
                params.push(param);
            }
            rest = after;
        }
        Message { command, params }
    }

    fn last(&self) -> &'a str {
        self.params.last().copied().unwrap_or_default()
    }

    /// An error numeric: 400 to 599.
    fn is_error(&self) -> bool {
        self.command.len() == 3
            && self
                .command
                .parse::<u16>()
                .is_ok_and(|code| (400..600).contains(&code))
    }
}

pub async fn run(args: IrcArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let n_clients = count(args.clients);
    let servers = &args.servers;
    if servers.len() < 2 {
        eprintln!("warning: one server only: partners share it");
    }
    let run_id = args.limits.run_id();
    let nicks: Vec<String> = (0..n_clients)
        .map(|idx| format!("b{run_id}-{idx}"))
        .collect();
    let indexes: Vec<usize> = (0..n_clients).collect();
    let registering = timed(&indexes, args.limits.concurrency(), |idx| {
        let addr = servers[idx % servers.len()].clone();
        let nick = nicks[idx].clone();
        async move { register(&addr, nick).await }
    });
    let logins = tokio::time::timeout_at(deadline, registering)
        .await
        .map_err(|_| anyhow!("the registrations did not finish in time"))?;
    logins.print("login");
    let mut clients = logins.all()?;
    let partners_seen = futures::future::try_join_all(
        clients
            .iter_mut()
            .enumerate()
            .map(|(idx, client)| wait_for(client, &nicks[idx ^ 1])),
    );
    tokio::time::timeout_at(deadline, partners_seen)
        .await
        .map_err(|_| anyhow!("the partners did not all become visible in time"))??;
    let ledger = Ledger::new(Shape {
        senders: n_clients,
        messages: args.traffic.messages,
        recipients: 1,
        slots: 1,
        window: args.traffic.window,
        wait_for_sent: false,
        pace: args.traffic.pace(),
    });
    let n_flows = clients.len();
    let start_all = |histograms: Vec<Latencies>| {
        clients
            .into_iter()
            .zip(histograms)
            .enumerate()
            .map(|(idx, (client, latencies))| {
                start(
                    client,
                    idx,
                    nicks[idx ^ 1].clone(),
                    &ledger,
                    &args,
                    latencies,
                )
            })
            .collect()
    };
    let measured = measure(
        &ledger,
        deadline,
        &args.traffic.pids,
        n_flows,
        start_all,
        Flow::finish,
    )
    .await;
    let line = with_traffic(Line::new("irc").field("clients", n_clients), &args.traffic);
    measured.fields(line).print();
    Ok(measured.verdict())
}

/// Connects to `addr` and registers as `nick`; done at the welcome (`001`).
async fn register(addr: &str, nick: String) -> anyhow::Result<Client> {
    let registration = async {
        let socket = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        socket.set_nodelay(true)?;
        let (read, write) = socket.into_split();
        let mut client = Client {
            lines: FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE)),
            writer: BufWriter::new(write),
            nick,
        };
        let hello = format!("NICK {0}\r\nUSER {0} 0 * :chat-bench", client.nick);
        client.send(&hello).await?;
        loop {
            let line = client.next_line().await?;
            let message = Message::parse(&line);
            if message.command == "001" {
                return Ok(client);
            }
            if message.is_error() {
                bail!("{addr} refused the registration of {}: {line}", client.nick);
            }
        }
    };
    tokio::time::timeout(REGISTER_TIMEOUT, registration)
        .await
        .map_err(|_| anyhow!("{addr} did not register a client within {REGISTER_TIMEOUT:?}"))?
}

/// Asks with ISON until `partner` is on the network.
async fn wait_for(client: &mut Client, partner: &str) -> anyhow::Result<()> {
    loop {
        client.send(&format!("ISON {partner}")).await?;
        loop {
            let line = client.next_line().await?;
            let message = Message::parse(&line);
            if message.command == "303" {
                if message
                    .last()
                    .split(' ')
                    .any(|nick| nick.eq_ignore_ascii_case(partner))
                {
                    return Ok(());
                }
                break;
            }
        }
        tokio::time::sleep(ISON_EVERY).await;
    }
}

/// Starts the reader and the writer of a registered client.
fn start(
    client: Client,
    idx: usize,
    partner: String,
    ledger: &Arc<Ledger>,
    args: &IrcArgs,
    latencies: Latencies,
) -> Flow {
    let (replies_tx, replies_rx) = mpsc::channel(REPLY_QUEUE);
    let stop = CancellationToken::new();
    let reader = tokio::spawn(read(
        client.lines,
        ledger.clone(),
        replies_tx,
        stop.clone(),
        latencies,
    ));
    let sending = Sending {
        outgoing: Outgoing::new(ledger.clone(), Some(idx)),
        ledger: ledger.clone(),
        idx,
        partner,
        size: args.traffic.size(),
    };
    let writer = tokio::spawn(write(client.writer, sending, replies_rx, stop.clone()));
    Flow {
        reader,
        writer,
        stop,
    }
}

async fn read(
    mut lines: Lines,
    ledger: Arc<Ledger>,
    replies: mpsc::Sender<String>,
    stop: CancellationToken,
    mut latencies: Latencies,
) -> Latencies {
    let mut watch = StopWatch::new(&stop);
    loop {
        let Some(line) = watch.next(&mut lines).await else {
            break;
        };
        let line = match line {
            Some(Ok(line)) => line,
            Some(Err(err)) => {
                ledger.error(format!("a bad line from an IRC server: {err}"));
                break;
            }
            None => {
                ledger.error("an IRC server closed a connection".to_string());
                break;
            }
        };
        let message = Message::parse(&line);
        match message.command {
            "PRIVMSG" => ledger.received(message.last(), 0, &mut latencies),
            "PING"
                if replies
                    .send(format!("PONG :{}", message.last()))
                    .await
                    .is_err() =>
            {
                break;
            }
            "ERROR" => {
                // After the stop, the answer to the writer's QUIT.
                if !stop.is_cancelled() {
                    ledger.error(format!("an IRC server closed a connection: {line}"));
                }
                break;
            }
            _ if message.is_error() => ledger.error(format!("an IRC server said: {line}")),
            _ => {}
        }
    }
    latencies
}

/// What a writer sends: its sender's messages, to the partner.
struct Sending {
    outgoing: Outgoing,
    ledger: Arc<Ledger>,
    idx: usize,
    partner: String,
    size: usize,
}

impl Sending {
    /// Marks message `seq` as sent and writes it into the buffer.
    async fn write(&self, writer: &mut Writer, seq: u32) -> std::io::Result<()> {
        // Marked before it is written, so that its delivery cannot come first.
        self.ledger.sent(self.idx, seq);
        let text = self.ledger.text(self.idx, seq, self.size);
        let line = format!("PRIVMSG {} :{text}\r\n", self.partner);
        writer.write_all(line.as_bytes()).await
    }
}

/// The most lines written before a flush.
const MAX_BURST: usize = 64;

async fn write(
    mut writer: Writer,
    mut sending: Sending,
    mut replies: mpsc::Receiver<String>,
    stop: CancellationToken,
) {
    // Made once, and polled last: each one made takes and frees a place among the token's
    // waiters, under a lock.
    let mut stopped = std::pin::pin!(stop.cancelled());
    loop {
        let written = tokio::select! {
            biased;
            Some(reply) = replies.recv() => write_line(&mut writer, &reply).await,
            seq = sending.outgoing.take() => sending.write(&mut writer, seq).await,
            () = &mut stopped => break,
        };
        let burst = async {
            written?;
            for _ in 1..MAX_BURST {
                if let Ok(reply) = replies.try_recv() {
                    write_line(&mut writer, &reply).await?;
                } else if let Some(seq) = sending.outgoing.try_take() {
                    sending.write(&mut writer, seq).await?;
                } else {
                    break;
                }
            }
            writer.flush().await
        };
        if let Err(err) = burst.await {
            sending
                .ledger
                .error(format!("cannot write to an IRC server: {err}"));
            return;
        }
    }
    let goodbye = async {
        writer.write_all(b"QUIT :done\r\n").await?;
        writer.flush().await?;
        writer.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), goodbye).await;
}

async fn write_line(writer: &mut Writer, line: &str) -> std::io::Result<()> {
    writer.write_all(line.as_bytes()).await?;
    writer.write_all(b"\r\n").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(line: &str, command: &str, params: &[&str]) {
        assert_eq!(
            Message::parse(line),
            Message {
                command,
                params: params.to_vec()
            }
        );
    }

    #[test]
    fn lines_split_into_command_and_parameters() {
        check("PING :irc.example", "PING", &["irc.example"]);
        check(
            ":a!u@h PRIVMSG b :0:1:2:xx yy",
            "PRIVMSG",
            &["b", "0:1:2:xx yy"],
        );
        check(":srv 001 nick :Welcome", "001", &["nick", "Welcome"]);
        check(":srv 303 nick :", "303", &["nick", ""]);
        check("ERROR", "ERROR", &[]);
        assert!(Message::parse(":srv 433 * b :Nickname is already in use").is_error());
        assert!(!Message::parse(":srv 303 n :x").is_error());
    }
}
