//! The chaos test: servers are killed, frozen, resumed and restarted while clients chat, and
//! every message that was acknowledged as sent must be seen exactly once by each recipient.
//!
//! `CHAOS_CYCLES` sets how many times a server is hit (default 4, the short version that
//! `scripts/test` runs; a few hundred for the long one). `CHAOS_SEED` replays a run.
//! `CHAOS_USERS` runs that many more users beside the checked clients, as a `chat-bench
//! crowd` process whose users live as real clients (heartbeat, failover, going home), so that
//! every failover and every return home happens in a login storm (default 60; 0 for none).

use chat_tests::{binary, now_ms, Client, Farm};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, Barrier};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Duration};

const USERS_PER_SERVER: usize = 2;
pub(crate) const GROUP: &str = "chaos";
/// How long a failover or a return home may take before the test gives up on it.
const MOVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The goals, in milliseconds, for the 99th percentile.
const GOAL_FAILOVER_KILL_MS: u64 = 2000;
const GOAL_FAILOVER_FREEZE_MS: u64 = 4000;
const GOAL_RETURN_MS: u64 = 3000;
/// How long the crowd may take to log in, or to report once stopped.
const CROWD_TIMEOUT: Duration = Duration::from_secs(120);
/// The most messages each user of the crowd sends: more than a second each for the longest
/// run asks for.
const CROWD_MESSAGES: u32 = 3600;

/// A small deterministic random source (xorshift), so that a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

pub(crate) fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The `chat-bench crowd` process: users that live as real clients beside the checked ones.
pub(crate) struct Crowd {
    child: Child,
    /// Closing it tells the crowd to stop and report.
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Crowd {
    /// Starts `n_users` users of the farm at `addrs` whose public key is in `key_file`, each
    /// sending a direct message a second to another until stopped (at most `CROWD_MESSAGES`),
    /// and returns once every one is logged in.
    pub(crate) async fn start(addrs: &[&str], key_file: &Path, n_users: u64) -> Crowd {
        let mut child = Command::new(binary("chat-bench"))
            .arg("crowd")
            .arg("--servers")
            .arg(addrs.join(","))
            .arg("--server-key-file")
            .arg(key_file)
            .args(["--clients", &n_users.to_string(), "--timeout-secs", "3600"])
            .args(["--messages", &CROWD_MESSAGES.to_string(), "--rate", "1"])
            // Their first logins register them: a login of a new name registers it.
            .arg("--registered")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chat-bench crowd");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut crowd = Crowd {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        // Logins its users' heartbeats gave up on are tried again, as the client does.
        println!("crowd: {}", crowd.line("login").await);
        let online = crowd.line("online").await;
        println!("crowd: {online}");
        assert_eq!(
            field(&online, "failed"),
            Some("0"),
            "the crowd did not all log in"
        );
        crowd
    }

    /// The next line of the crowd's output, which must be of phase `phase`.
    async fn line(&mut self, phase: &str) -> String {
        let line = timeout(CROWD_TIMEOUT, self.lines.next_line())
            .await
            .expect("the crowd answered in time")
            .expect("read the crowd's output")
            .expect("the crowd ended early");
        assert!(line.starts_with(&format!("phase={phase} ")), "{line}");
        line
    }

    /// Tells the crowd to stop, and returns its last line once it exited.
    pub(crate) async fn stop(mut self) -> (String, bool) {
        drop(self.stdin.take());
        let line = self.line("crowd").await;
        let status = timeout(CROWD_TIMEOUT, self.child.wait())
            .await
            .expect("the crowd exited in time")
            .expect("wait for the crowd");
        (line, status.success())
    }
}

/// Asserts what the crowd's last line says: every user stayed with the farm, some messages
/// were sent, and every message sent was delivered once.
pub(crate) fn assert_crowd_kept_all(line: &str) {
    for key in ["failed", "offline", "missing", "doubled", "errors"] {
        assert_eq!(field(line, key), Some("0"), "{key} in the crowd: {line}");
    }
    let sent: u64 = field(line, "sent")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(sent > 0, "the crowd sent nothing: {line}");
    assert_eq!(field(line, "delivered"), field(line, "sent"), "{line}");
}

/// The value of `key` in a `key=value` line.
pub(crate) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// What one chatting client reports when it stops.
pub(crate) struct Report {
    user: String,
    /// The messages it was told were sent: id and recipients.
    sent: Vec<(String, Vec<String>)>,
    /// How many times it showed each message id.
    shown: HashMap<String, usize>,
}

/// A client's move to another server, seen by the harness at `at_ms`.
pub(crate) struct Moved {
    pub(crate) user: String,
    pub(crate) server: String,
    pub(crate) at_ms: u64,
}

/// Sends messages as `user` to `others` (direct, and to the group `chaos` that they are all
/// in) until `stop`, then reads the log and reports.
pub(crate) async fn chat(
    mut client: Client,
    user: String,
    others: Vec<String>,
    seed: u64,
    stop: Arc<AtomicBool>,
    all_stopped: Arc<Barrier>,
    moves: mpsc::UnboundedSender<Moved>,
) -> Report {
    let mut rng = Rng(seed | 1);
    let mut sent = Vec::new();
    let mut shown: HashMap<String, usize> = HashMap::new();
    let mut collect = |client: &mut Client| {
        for event in client.take_events(|ev| ev["type"] == "connected" || ev["type"] == "message") {
            if event["type"] == "connected" {
                let _ = moves.send(Moved {
                    user: user.clone(),
                    server: event["server"].as_str().unwrap_or_default().to_owned(),
                    at_ms: event["_at_ms"].as_u64().unwrap_or_default(),
                });
            } else if let Some(id) = event["id"].as_str() {
                *shown.entry(id.to_owned()).or_default() += 1;
            }
        }
    };
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (line, recipients) = if rng.below(3) == 0 {
            (format!("send #{GROUP} g-{user}-{n}"), others.clone())
        } else {
            let to = others[rng.below(others.len())].clone();
            (format!("send {to} d-{user}-{n}"), vec![to])
        };
        let answer = client.command(&line).await;
        if answer["type"] == "ok" {
            let id = answer["id"].as_str().expect("sent has an id").to_owned();
            sent.push((id, recipients));
        }
        collect(&mut client);
    }
    // Every sender has its last answer before anyone reads the log: a message told "sent" is
    // then either shown already or stored.
    all_stopped.wait().await;
    // Whatever was stored for this user while it moved, or while its acks were lost.
    client.ok_until("readlog", |_| true).await;
    collect(&mut client);
    client.ok("quit").await;
    collect(&mut client);
    Report { user, sent, shown }
}

/// Logs each of `users` in with a client of its own on the farm at `addrs`, in the group
/// [`GROUP`]: everyone is in before anyone sends.
pub(crate) async fn logged_in_chatters(addrs: &[&str], users: &[String]) -> Vec<Client> {
    let mut clients = Vec::new();
    for user in users {
        let mut client = Client::spawn(addrs);
        client.ok(&format!("login {user} pw-{user}")).await;
        client.ok(&format!("join {GROUP}")).await;
        clients.push(client);
    }
    clients
}

/// Starts [`chat`] on each of `clients`, logged in as the user of the same index and in the
/// group, each sending to all the others until `stop`; the seeds follow from `seed`.
pub(crate) fn start_chatters(
    clients: Vec<Client>,
    users: &[String],
    seed: u64,
    stop: &Arc<AtomicBool>,
    moves: &mpsc::UnboundedSender<Moved>,
) -> Vec<JoinHandle<Report>> {
    let all_stopped = Arc::new(Barrier::new(users.len()));
    clients
        .into_iter()
        .zip(users)
        .enumerate()
        .map(|(idx, (client, user))| {
            let others = users
                .iter()
                .filter(|other| *other != user)
                .cloned()
                .collect();
            tokio::spawn(chat(
                client,
                user.clone(),
                others,
                seed.wrapping_add(idx as u64 * 7919),
                stop.clone(),
                all_stopped.clone(),
                moves.clone(),
            ))
        })
        .collect()
}

/// What the chatters reported, once each has stopped.
pub(crate) async fn reports(chatters: Vec<JoinHandle<Report>>) -> Vec<Report> {
    let mut reports = Vec::new();
    for chatter in chatters {
        reports.push(chatter.await.expect("a chatting client"));
    }
    reports
}

/// The deliveries that every acknowledged message owed, checked against what each recipient
/// showed: how many messages were acknowledged, the deliveries never shown, and those shown
/// more than once. It prints the counts.
pub(crate) fn lost_and_doubled(reports: &[Report]) -> (usize, Vec<String>, Vec<String>) {
    let shown: HashMap<&str, &HashMap<String, usize>> = reports
        .iter()
        .map(|report| (report.user.as_str(), &report.shown))
        .collect();
    let (mut n_checked, mut lost, mut doubled) = (0, Vec::new(), Vec::new());
    for report in reports {
        for (id, recipients) in &report.sent {
            for recipient in recipients {
                n_checked += 1;
                match shown[recipient.as_str()].get(id).copied().unwrap_or(0) {
                    1 => {}
                    0 => lost.push(format!("{id} from {} to {recipient}", report.user)),
                    n => doubled.push(format!("{id} to {recipient} shown {n} times")),
                }
            }
        }
    }
    let n_sent: usize = reports.iter().map(|report| report.sent.len()).sum();
    println!(
        "messages acknowledged: {n_sent}; deliveries checked: {n_checked}; lost: {}; doubled: {}",
        lost.len(),
        doubled.len()
    );
    (n_sent, lost, doubled)
}

pub(crate) fn percentiles(name: &str, samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    let at = |p: f64| {
        if samples.is_empty() {
            return 0;
        }
        let idx = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[idx]
    };
    println!(
        "{name}: n={} p50={}ms p90={}ms p99={}ms max={}ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        samples.last().copied().unwrap_or(0)
    );
    at(0.99)
}

/// Waits until every user in `who` has moved to a server accepted by `to`, after `since_ms`;
/// returns how long each took from `since_ms`.
async fn wait_moves(
    what: &str,
    moves: &mut mpsc::UnboundedReceiver<Moved>,
    who: &[String],
    since_ms: u64,
    to: impl Fn(&str, &str) -> bool,
) -> Vec<u64> {
    let mut waiting: HashSet<&String> = who.iter().collect();
    let mut took = Vec::new();
    while !waiting.is_empty() {
        let moved = timeout(MOVE_TIMEOUT, moves.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: {waiting:?} did not move within {MOVE_TIMEOUT:?}"))
            .expect("the clients are running");
        if moved.at_ms >= since_ms && to(&moved.user, &moved.server) && waiting.remove(&moved.user)
        {
            took.push(moved.at_ms - since_ms);
        }
    }
    took
}

#[tokio::test]
async fn nothing_is_lost_or_doubled_while_servers_die_hang_and_return() {
    let cycles = env_number("CHAOS_CYCLES", 4);
    let n_crowd = env_number("CHAOS_USERS", 60);
    let seed = env_number("CHAOS_SEED", now_ms() ^ u64::from(std::process::id()));
    println!("chaos: {cycles} cycles, CHAOS_USERS={n_crowd}, CHAOS_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let mut farm = Farm::start(3).await;
    let ring = farm.ring();
    let names: Vec<String> = farm.servers.iter().map(|s| s.name.clone()).collect();
    let users: Vec<String> = names
        .iter()
        .flat_map(|server| farm.users_homed_on(server, &format!("{server}u"), USERS_PER_SERVER))
        .collect();
    let home: HashMap<String, String> = users
        .iter()
        .map(|user| (user.clone(), ring.home(user).expect("a home").to_owned()))
        .collect();

    let crowd = if n_crowd > 0 {
        Some(Crowd::start(&farm.addrs(), &farm.db.keys.join("farm.pub"), n_crowd).await)
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (moves_tx, mut moves) = mpsc::unbounded_channel();
    let clients = logged_in_chatters(&farm.addrs(), &users).await;
    let chatters = start_chatters(clients, &users, seed, &stop, &moves_tx);
    drop(moves_tx);

    let mut kill_failovers = Vec::new();
    let mut freeze_failovers = Vec::new();
    let mut returns = Vec::new();
    for cycle in 0..cycles {
        let victim = names[rng.below(names.len())].clone();
        let affected: Vec<String> = users
            .iter()
            .filter(|user| home[*user] == victim)
            .cloned()
            .collect();
        // Every run both kills and freezes: every other hit is a freeze.
        let freeze = cycle % 2 == 1;
        println!(
            "cycle {cycle}: {} {victim}",
            if freeze { "freeze" } else { "kill -9" }
        );
        let hit_ms = now_ms();
        if freeze {
            farm.server(&victim).freeze();
        } else {
            farm.server_mut(&victim).kill().await;
        }
        let away = |_: &str, server: &str| server != victim;
        let took = wait_moves("failover", &mut moves, &affected, hit_ms, away).await;
        if freeze {
            freeze_failovers.extend(took);
        } else {
            kill_failovers.extend(took);
        }

        let back_ms = now_ms();
        if freeze {
            farm.server(&victim).thaw();
        } else {
            farm.start_again(&victim).await;
        }
        let home_again = |user: &str, server: &str| home[user] == server;
        returns.extend(wait_moves("return home", &mut moves, &affected, back_ms, home_again).await);
        farm.converged().await;
    }

    stop.store(true, Ordering::Relaxed);
    let crowd = match crowd {
        Some(crowd) => Some(crowd.stop().await),
        None => None,
    };
    let reports = reports(chatters).await;
    let (n_sent, lost, doubled) = lost_and_doubled(&reports);
    let p99_kill = percentiles("failover after kill -9", &mut kill_failovers);
    let p99_freeze = percentiles("failover after SIGSTOP", &mut freeze_failovers);
    let p99_return = percentiles("back home after restart or SIGCONT", &mut returns);
    if let Some((line, _)) = &crowd {
        println!("crowd: {line}");
    }
    assert!(lost.is_empty(), "lost: {lost:#?}");
    if let Some((line, exited_cleanly)) = &crowd {
        assert_crowd_kept_all(line);
        assert!(*exited_cleanly, "the crowd failed: {line}");
    }
    assert!(doubled.is_empty(), "doubled: {doubled:#?}");
    assert!(n_sent > 0, "no message was acknowledged");
    assert!(
        p99_kill <= GOAL_FAILOVER_KILL_MS,
        "failover after kill: p99 {p99_kill} ms"
    );
    assert!(
        p99_freeze <= GOAL_FAILOVER_FREEZE_MS,
        "failover after freeze: p99 {p99_freeze} ms"
    );
    assert!(
        p99_return <= GOAL_RETURN_MS,
        "return home: p99 {p99_return} ms"
    );
}
