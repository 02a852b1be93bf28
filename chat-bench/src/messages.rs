//! The `dm` and `group` workloads: log everyone in at home, then send through the farm with
//! a bounded window per sender, and report rates, latencies and the ledger's counts.

use crate::args::{count, DmArgs, FarmArgs, GroupArgs, Traffic};
use crate::cpu::{CpuClock, CpuUsed};
use crate::farm::{Conn, Farm};
use crate::flow::{Flow, Role, Sending};
use crate::ledger::{Ledger, Shape, Tally};
use crate::logins::farm_logins;
use crate::report::{Latencies, Line, Verdict};
use anyhow::{bail, Context as _};
use chat_proto::{Recipient, Request, Response, MAX_PAGE};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the connections stay open after the last message completed, so that a late
/// second delivery is still counted as doubled.
const LINGER: Duration = Duration::from_millis(200);
/// How often a connection asks whether the users it sends to are online yet.
const ONLINE_POLL: Duration = Duration::from_millis(20);

/// What a message phase measured.
pub struct Measured {
    pub tally: Tally,
    pub latencies: Latencies,
    pub elapsed: Duration,
    pub finished: bool,
    pub cpu: CpuUsed,
}

impl Measured {
    /// The line's common tail: deliveries, rate, latencies and counts.
    pub fn fields(&self, line: Line) -> Line {
        let line = line
            .field("delivered", self.tally.delivered)
            .rate("msgs_per_s", self.tally.delivered, self.elapsed)
            .micros(&self.latencies)
            .field("missing", self.tally.missing)
            .field("doubled", self.tally.doubled)
            .field("errors", self.tally.errors)
            .field("elapsed_ms", self.elapsed.as_millis());
        let line = match self.cpu.servers {
            Some(servers) => line.field("server_cpu_ms", servers.as_millis()),
            None => line,
        };
        line.field("bench_cpu_ms", self.cpu.bench.as_millis())
    }

    pub fn verdict(&self) -> Verdict {
        let mut verdict = Verdict {
            timed_out: !self.finished,
            ..Verdict::default()
        };
        verdict.expect_zero("errors", self.tally.errors);
        verdict.expect_zero("missing deliveries", self.tally.missing);
        verdict.expect_zero("doubled deliveries", self.tally.doubled);
        verdict
    }
}

pub async fn dm(args: DmArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let n_clients = count(args.clients);
    let farm = discover(&args.farm).await?;
    if farm.names.len() < 2 {
        eprintln!("warning: one server only: partners share it");
    }
    let run_id = args.farm.limits.run_id();
    // Neighbours are homed on consecutive servers, so the pairs (2k, 2k+1) are split.
    let users = farm.names_by_home(&format!("b{run_id}-"), n_clients);
    let mut conns = log_in(&farm, &users, &args.farm).await?;
    let partners = conns
        .iter_mut()
        .enumerate()
        .map(|(idx, conn)| (conn, vec![users[idx ^ 1].clone()]));
    wait_online(partners, deadline).await?;
    let ledger = Ledger::new(shape(n_clients, 1, 1, &args.traffic));
    let roles = (0..n_clients).map(|idx| {
        let partner = idx ^ 1;
        Role {
            slot: 0,
            sending: Some(Sending {
                sender: idx,
                to: Recipient::User(users[partner].clone()),
                size: args.traffic.size(),
            }),
        }
    });
    let measured = drive(
        conns.into_iter().zip(roles),
        &ledger,
        deadline,
        &args.traffic.pids,
    )
    .await;
    let line = Line::new("dm").field("clients", n_clients);
    let line = with_traffic(line, &args.traffic);
    measured.fields(line).print();
    Ok(measured.verdict())
}

pub async fn group(args: GroupArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let n_members = count(args.members);
    let n_senders = count(args.senders);
    if n_senders > n_members {
        bail!("--senders ({n_senders}) cannot exceed --members ({n_members})");
    }
    let farm = discover(&args.farm).await?;
    let run_id = args.farm.limits.run_id();
    let users = farm.names_by_home(&format!("g{run_id}-"), n_members);
    let mut conns = log_in(&farm, &users, &args.farm).await?;
    let group = format!("bench{run_id}");
    join_all(&mut conns, &group).await?;
    let senders = conns
        .iter_mut()
        .take(n_senders)
        .map(|conn| (conn, users.clone()));
    wait_online(senders, deadline).await?;
    let slots = u32::try_from(n_members).context("too many members")?;
    let ledger = Ledger::new(shape(n_senders, slots - 1, slots, &args.traffic));
    // The first senders are spread over the servers like everyone else.
    let roles = (0..n_members).map(|idx| Role {
        slot: idx as u32,
        sending: (idx < n_senders).then(|| Sending {
            sender: idx,
            to: Recipient::Group(group.clone()),
            size: args.traffic.size(),
        }),
    });
    let measured = drive(
        conns.into_iter().zip(roles),
        &ledger,
        deadline,
        &args.traffic.pids,
    )
    .await;
    let line = Line::new("group")
        .field("clients", n_members)
        .field("members", n_members)
        .field("senders", n_senders);
    let line = with_traffic(line, &args.traffic);
    measured.fields(line).print();
    Ok(measured.verdict())
}

fn shape(senders: usize, recipients: u32, slots: u32, traffic: &Traffic) -> Shape {
    Shape {
        senders,
        messages: traffic.messages,
        recipients,
        slots,
        window: traffic.window,
        wait_for_sent: true,
        pace: traffic.pace(),
    }
}

pub async fn discover(args: &FarmArgs) -> anyhow::Result<Arc<Farm>> {
    Ok(Arc::new(
        Farm::discover(&args.servers, args.trust()?).await?,
    ))
}

/// Logs every user in at home and prints the `login` line; fails unless all logged in.
async fn log_in(farm: &Arc<Farm>, users: &[String], args: &FarmArgs) -> anyhow::Result<Vec<Conn>> {
    let logins = farm_logins(farm, users, &args.password, args.limits.concurrency()).await;
    logins.print("login");
    logins.all()
}

/// Every member joins `group`: the first creates it, then the others join, one request each.
async fn join_all(conns: &mut [Conn], group: &str) -> anyhow::Result<()> {
    let (first, others) = conns.split_first_mut().context("a group needs members")?;
    join(first, group).await?;
    let joins = others.iter_mut().map(|conn| join(conn, group));
    for joined in futures::future::join_all(joins).await {
        joined?;
    }
    Ok(())
}

async fn join(conn: &mut Conn, group: &str) -> anyhow::Result<()> {
    let request = Request::Join {
        group: group.to_string(),
    };
    match conn.request(request).await? {
        Ok(Response::Done) => Ok(()),
        Ok(other) => bail!("unexpected answer to a join: {other:?}"),
        Err(refusal) => bail!("cannot join #{group} on {}: {refusal}", conn.server),
    }
}

/// Waits until each connection's server sees its users logged in.
///
/// A server learns of a login elsewhere over its link a moment later. A message sent before
/// that finds its recipient offline: it is stored for `readlog` and the sender is told "sent",
/// but it is not pushed. Measuring live delivery needs the farm to know who is online first.
async fn wait_online(
    conns: impl Iterator<Item = (&mut Conn, Vec<String>)>,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    let waits = conns.map(|(conn, expected)| async move {
        loop {
            let online = who(conn).await?;
            if expected
                .iter()
                .all(|user| online.binary_search(user).is_ok())
            {
                return anyhow::Ok(());
            }
            tokio::time::sleep(ONLINE_POLL).await;
        }
    });
    tokio::time::timeout_at(deadline, futures::future::try_join_all(waits))
        .await
        .context("the servers did not all see the users online in time")??;
    Ok(())
}

/// Everyone the connection's server sees online, sorted: `who`, page after page.
async fn who(conn: &mut Conn) -> anyhow::Result<Vec<String>> {
    let mut online = Vec::new();
    loop {
        let after = online.last().cloned();
        match conn
            .request(Request::Who {
                after,
                max: MAX_PAGE,
            })
            .await?
        {
            Ok(Response::Users { users, more }) => {
                let done = !more || users.is_empty();
                online.extend(users);
                if done {
                    return Ok(online);
                }
            }
            Ok(other) => bail!("unexpected answer to who: {other:?}"),
            Err(refusal) => bail!("who refused on {}: {refusal}", conn.server),
        }
    }
}

/// `line` with the shape of the traffic: messages per sender, their size, the window.
pub fn with_traffic(line: Line, traffic: &Traffic) -> Line {
    let line = line
        .field("messages", traffic.messages)
        .field("size", traffic.size)
        .field("window", traffic.window);
    match traffic.rate {
        Some(rate) => line.field("rate", rate),
        None => line,
    }
}

/// Starts a flow on each connection, waits until every message is complete or the deadline,
/// and stops them all.
async fn drive(
    conns: impl Iterator<Item = (Conn, Role)>,
    ledger: &Arc<Ledger>,
    deadline: tokio::time::Instant,
    pids: &[u32],
) -> Measured {
    let conns: Vec<_> = conns.collect();
    let n_flows = conns.len();
    let start_all = |histograms: Vec<Latencies>| {
        conns
            .into_iter()
            .zip(histograms)
            .map(|((conn, role), latencies)| Flow::start(conn, ledger.clone(), role, latencies))
            .collect()
    };
    measure(ledger, deadline, pids, n_flows, start_all, Flow::finish).await
}

/// Starts `n_flows` flows, each given an empty histogram for its latencies, waits until every
/// message is complete or the deadline, lingers a little so that late doubles are counted,
/// and finishes the flows, collecting their latencies.
///
/// The histograms are made before the clocks start: each is some 170 KB of counters, zeroed
/// as it is made, and hundreds of them made inside a run of a second took a tenth of the
/// load generator's time then (page faults), for every system alike.
pub async fn measure<T, Fut>(
    ledger: &Ledger,
    deadline: tokio::time::Instant,
    pids: &[u32],
    n_flows: usize,
    start: impl FnOnce(Vec<Latencies>) -> Vec<T>,
    finish: impl FnMut(T) -> Fut,
) -> Measured
where
    Fut: Future<Output = Latencies>,
{
    let histograms = (0..n_flows).map(|_| Latencies::new()).collect();
    let cpu = CpuClock::start(pids);
    let started = Instant::now();
    let flows = start(histograms);
    let finished = ledger.wait_done(deadline).await;
    let elapsed = started.elapsed();
    let cpu = cpu.stop();
    tokio::time::sleep(LINGER).await;
    let mut latencies = Latencies::new();
    for received in futures::future::join_all(flows.into_iter().map(finish)).await {
        latencies.add(&received);
    }
    Measured {
        tally: ledger.tally(),
        latencies,
        elapsed,
        finished,
        cpu,
    }
}
