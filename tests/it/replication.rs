//! The database failing over under a chatting farm. A primary, a synchronous standby and
//! Patroni with etcd run on loopback (`scripts/ha-db`); three chat servers are given the
//! multi-host URL (`target_session_attrs=read-write`); checked `chat-client` users chat
//! directly and in a group, a paced `chat-bench dm` load chats beside them, and a probe sends
//! to an offline user every 100 ms, each answer saying whether the farm could store.
//!
//! Each round kills the primary with kill -9, one way or the other: its PostgreSQL alone
//! (Patroni, alive, hands over at once) or its whole host (Patroni too: the standby waits for
//! the leader lock to expire). The test checks that the standby is promoted without a person
//! and that the servers store again without a restart, and prints how long the farm could not
//! store. Then it kills the synchronous standby: by default (`available`) the primary goes on
//! alone after a pause, as the README says. At the end every message acknowledged as sent,
//! before or after a failover, was shown exactly once or is in the inbox; the chat-bench load
//! counts nothing missing or doubled.
//!
//! `DB_FAILOVER_ROUNDS` sets how many primaries are killed (default 2, one of each kind). It
//! needs root (PostgreSQL and Patroni run as `postgres`; Patroni and etcd are installed with
//! apt-get when missing); without root it says so and passes.

use crate::chaos::{
    env_number, field, logged_in_chatters, lost_and_doubled, percentiles, reports, start_chatters,
};
use chat_tests::{binary, now_ms, Client, Farm, TestDb};
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::{timeout, Duration, Instant};

/// The offline user the probe sends to: each send must be stored.
const LATER: &str = "dbprobe-later";
/// How often the probe sends.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long the farm may be unable to store before the test gives up: the leader lock's 20 s,
/// a promotion and the servers' reconnection, with room for a loaded machine.
const STORE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the database may take to be whole again: a primary and a synchronous standby.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(120);
/// The chat-bench load: senders, each paced at this many messages a second.
const BENCH_CLIENTS: u32 = 10;
const BENCH_RATE: u32 = 20;
/// Seconds of chat-bench load planned for each round, and for the rest of the test.
const BENCH_SECS_PER_ROUND: u32 = 25;
const BENCH_SECS_BESIDE: u32 = 30;
/// Ports a replicated database of two nodes takes: etcd's two, then two per node.
const HA_PORTS: u16 = 6;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// A replicated database made by `scripts/ha-db`, stopped and removed when dropped.
struct HaDb {
    dir: PathBuf,
}

impl HaDb {
    /// Starts a primary and a synchronous standby; returns them and the URL of their `postgres`
    /// database that follows the primary.
    async fn start() -> (HaDb, String) {
        // Databases left by an earlier run that was killed before it could stop them.
        for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("chat-ha-") {
                drop(HaDb { dir: entry.path() });
            }
        }
        let ha = HaDb {
            dir: PathBuf::from(format!("/tmp/chat-ha-{}", uuid::Uuid::now_v7().simple())),
        };
        let base = free_ports(HA_PORTS).to_string();
        let started = Instant::now();
        ha.ctl(&["start", &ha.dir(), "--base-port", &base]).await;
        println!("replicated database up in {:?}", started.elapsed());
        let url = ha.ctl(&["url", &ha.dir(), "postgres"]).await;
        (ha, url)
    }

    fn dir(&self) -> String {
        self.dir.display().to_string()
    }

    /// Runs `scripts/ha-db ARGS`, which must succeed; returns what it printed.
    async fn ctl(&self, args: &[&str]) -> String {
        let (ok, out, err) = ha_db(args).await;
        assert!(ok, "scripts/ha-db {}: {out}{err}", args.join(" "));
        out.trim().to_owned()
    }

    /// The node that answers `scripts/ha-db leader` or `sync`, if one does.
    async fn role(&self, role: &str) -> Option<String> {
        let (ok, out, _) = ha_db(&[role, &self.dir()]).await;
        ok.then(|| out.trim().to_owned())
    }

    /// Waits until some node other than `not` holds the leader lock; returns it.
    async fn new_leader(&self, not: &str) -> String {
        let deadline = Instant::now() + STORE_TIMEOUT;
        loop {
            if let Some(leader) = self.role("leader").await.filter(|leader| leader != not) {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no standby was promoted within {STORE_TIMEOUT:?}: {}",
                self.ctl(&["status", &self.dir()]).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until there is a leader and a synchronous standby; returns both.
    async fn healthy(&self) -> (String, String) {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            if let (Some(leader), Some(sync)) = (self.role("leader").await, self.role("sync").await)
            {
                return (leader, sync);
            }
            assert!(
                Instant::now() < deadline,
                "the database was not whole again within {HEALTHY_TIMEOUT:?}: {}",
                self.ctl(&["status", &self.dir()]).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for HaDb {
    fn drop(&mut self) {
        let script = workspace().join("scripts/ha-db");
        let _ = std::process::Command::new(script)
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn ha_db(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(workspace().join("scripts/ha-db"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run scripts/ha-db");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first of `n` consecutive ports of 127.0.0.1 that are free now.
fn free_ports(n: u16) -> u16 {
    let mut seed = u32::from(u16::try_from(std::process::id() % 20_000).unwrap_or(0));
    loop {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let base = 30_000 + u16::try_from(seed % 25_000).unwrap_or(0);
        let free = (base..base + n).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return base;
        }
    }
}

/// One send of the probe: when it left, when it was answered, and its id if it was stored.
struct Probed {
    sent_ms: u64,
    answered_ms: u64,
    stored: Option<String>,
}

/// Sends to the offline user every [`PROBE_EVERY`] until `stop`, reporting each answer.
async fn probe(mut client: Client, stop: Arc<AtomicBool>, report: mpsc::UnboundedSender<Probed>) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let sent_ms = now_ms();
        let answer = client.command(&format!("send {LATER} probe-{n}")).await;
        let stored = (answer["type"] == "ok").then(|| answer["id"].as_str().unwrap_or_default());
        let _ = report.send(Probed {
            sent_ms,
            answered_ms: now_ms(),
            stored: stored.map(str::to_owned),
        });
        // Pacing, not synchronisation: the probe samples the farm ten times a second.
        tokio::time::sleep(PROBE_EVERY).await;
    }
    client.ok("quit").await;
}

/// Waits for the first probe sent after `since_ms` that was stored; returns how long after
/// `since_ms` it was answered. Every stored probe is kept in `stored`.
async fn stored_again(
    probes: &mut mpsc::UnboundedReceiver<Probed>,
    since_ms: u64,
    stored: &mut Vec<String>,
) -> u64 {
    loop {
        let probed = timeout(STORE_TIMEOUT, probes.recv())
            .await
            .unwrap_or_else(|_| panic!("the farm could not store for {STORE_TIMEOUT:?}"))
            .expect("the probe runs");
        let Some(id) = probed.stored else { continue };
        stored.push(id);
        if probed.sent_ms > since_ms {
            return probed.answered_ms - since_ms;
        }
    }
}

/// The `chat-bench dm` load, paced, once its clients are logged in; its output lines are
/// printed and the `dm` line kept.
async fn bench_load(farm: &Farm, seconds: u32) -> tokio::task::JoinHandle<(bool, String)> {
    let mut child = Command::new(binary("chat-bench"))
        .arg("dm")
        .args(["--servers", &farm.addrs().join(",")])
        .arg("--server-key-file")
        .arg(farm.db.keys.join("farm.pub"))
        .args(["--clients", &BENCH_CLIENTS.to_string()])
        .args(["--messages", &(BENCH_RATE * seconds).to_string()])
        .args(["--rate", &BENCH_RATE.to_string(), "--window", "4"])
        .args(["--timeout-secs", &(seconds * 3).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chat-bench dm");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let login = timeout(STORE_TIMEOUT, lines.next_line())
        .await
        .expect("chat-bench logged in in time")
        .expect("read chat-bench's output")
        .expect("chat-bench ended before its logins");
    println!("chat-bench: {login}");
    assert!(login.starts_with("phase=login "), "{login}");
    assert_eq!(field(&login, "failed"), Some("0"), "{login}");
    tokio::spawn(async move {
        let mut last = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("chat-bench: {line}");
            if line.starts_with("phase=dm ") {
                last = line;
            }
        }
        let status = child.wait().await.expect("wait for chat-bench");
        (status.success(), last)
    })
}

#[tokio::test]
async fn the_farm_rides_out_a_database_failover_without_loss() {
    if !crate::is_root() {
        println!("skipped: the database failover test needs root (PostgreSQL and Patroni run as the postgres user)");
        return;
    }
    let rounds = env_number("DB_FAILOVER_ROUNDS", 2);
    println!("database failover: {rounds} rounds (DB_FAILOVER_ROUNDS)");
    let (ha, base_url) = HaDb::start().await;
    let db = TestDb::on(&base_url).await;
    let database_url = db.url.clone();
    let farm = Farm::start_on(db, database_url, 3, &[]).await;
    let pids: Vec<u32> = farm.servers.iter().map(|server| server.pid()).collect();

    let mut later = Client::spawn(&farm.addrs());
    later.ok(&format!("login {LATER} pw-{LATER}")).await;
    later.ok("quit").await;
    let users: Vec<String> = ["s1", "s2", "s3"]
        .iter()
        .flat_map(|server| farm.users_homed_on(server, &format!("db{server}u"), 1))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (moves, _moved) = mpsc::unbounded_channel();
    let clients = logged_in_chatters(&farm.addrs(), &users).await;
    let chatters = start_chatters(clients, &users, now_ms(), &stop, &moves);
    let bench_secs = BENCH_SECS_PER_ROUND * u32::try_from(rounds).unwrap_or(1) + BENCH_SECS_BESIDE;
    let bench = bench_load(&farm, bench_secs).await;
    let mut prober = Client::spawn(&farm.addrs());
    prober.ok("login dbprobe pw-dbprobe").await;
    let (probes_tx, mut probes) = mpsc::unbounded_channel();
    let probing = tokio::spawn(probe(prober, stop.clone(), probes_tx));
    let mut stored = Vec::new();
    stored_again(&mut probes, now_ms(), &mut stored).await;

    let mut windows: HashMap<&str, Vec<u64>> = HashMap::new();
    for round in 0..rounds {
        let (leader, sync) = ha.healthy().await;
        let how = if round % 2 == 0 { "postgres" } else { "host" };
        ha.ctl(&["kill", &ha.dir(), &leader, how]).await;
        // Once the kill returned: what it killed is gone.
        let killed_ms = now_ms();
        let promoted = ha.new_leader(&leader).await;
        let promoted_ms = now_ms() - killed_ms;
        assert_eq!(
            promoted, sync,
            "the synchronous standby is the one promoted"
        );
        let window = stored_again(&mut probes, killed_ms, &mut stored).await;
        println!(
            "round {round}: kill -9 of {leader}'s {how}: {promoted} promoted after {promoted_ms} ms, \
             the farm stored again after {window} ms"
        );
        windows.entry(how).or_default().push(window);
        if how == "host" {
            // The host comes back; its node rejoins as a standby.
            ha.ctl(&["start-node", &ha.dir(), &leader]).await;
        }
    }

    // The standby dies: by default the primary goes on alone after a pause.
    let (leader, sync) = ha.healthy().await;
    ha.ctl(&["kill", &ha.dir(), &sync, "host"]).await;
    let killed_ms = now_ms();
    let window = stored_again(&mut probes, killed_ms, &mut stored).await;
    println!("kill -9 of the standby {sync}'s host: {leader} stored alone after {window} ms");
    assert_eq!(ha.role("leader").await.as_deref(), Some(&*leader));
    ha.ctl(&["start-node", &ha.dir(), &sync]).await;
    ha.healthy().await;
    stored_again(&mut probes, now_ms(), &mut stored).await;

    for (how, samples) in &mut windows {
        percentiles(
            &format!("unable to store, kill -9 of the primary's {how}"),
            samples,
        );
    }
    let (bench_ok, bench_line) = bench.await.expect("the chat-bench load");
    stop.store(true, Ordering::Relaxed);
    probing.await.expect("the probe");
    while let Ok(probed) = probes.try_recv() {
        stored.extend(probed.stored);
    }
    let reports = reports(chatters).await;
    let (n_sent, lost, doubled) = lost_and_doubled(&reports);
    assert!(lost.is_empty(), "lost in the failovers: {lost:#?}");
    assert!(doubled.is_empty(), "doubled in the failovers: {doubled:#?}");
    assert!(n_sent > 0, "no message was acknowledged");
    println!("chat-bench load ok={bench_ok}: {bench_line}");
    assert_eq!(field(&bench_line, "missing"), Some("0"), "{bench_line}");
    assert_eq!(field(&bench_line, "doubled"), Some("0"), "{bench_line}");

    // Every probe that was stored, before and after the failovers, waits for its recipient.
    let mut later = Client::spawn(&farm.addrs());
    later.ok(&format!("login {LATER} pw-{LATER}")).await;
    let log = later.ok_until("readlog", |_| true).await;
    println!("{LATER}'s log: {log}");
    let mut shown: HashMap<String, usize> = HashMap::new();
    let probes_shown = later.take_events(|ev| {
        ev["type"] == "message" && ev["text"].as_str().is_some_and(|t| t.starts_with("probe-"))
    });
    for message in probes_shown {
        *shown
            .entry(message["id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    for id in &stored {
        assert_eq!(shown.get(id), Some(&1), "stored probe {id} shown once");
    }
    println!("{} stored probes all delivered once", stored.len());
    // Nobody restarted a server.
    let now: Vec<u32> = farm.servers.iter().map(|server| server.pid()).collect();
    assert_eq!(now, pids);
    for pid in pids {
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "server {pid} runs"
        );
    }
}
