//! Reaching the farm: the ring from the first server that answers, user names placed on chosen
//! home servers, and logging a user in at home.
//!
//! Connections are opened by the real client's handshake (`chat_client::handshake::open`): the
//! Noise NX handshake, the check of the farm's pinned key, and the hellos. Before a workload
//! starts, requests go one at a time on the connection ([`request`]); the workload's own reader
//! and writer take over after (see `flow`).

use crate::login::{self, Outcome};
use anyhow::{anyhow, bail, Context as _};
use chat_client::farm::MAX_REDIRECTS;
use chat_client::handshake::{self, ServerFramed, ServerTrust};
use chat_proto::{ClientFrame, ErrorReply, Request, RequestId, Response, RingInfo, ServerFrame};
use futures::{SinkExt as _, StreamExt as _};
use std::time::Duration;

/// How long a connection may take to open: TCP, handshake and hellos.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may wait for its reply before a workload starts.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An open connection, after the hellos.
pub struct Conn {
    pub framed: ServerFramed,
    /// The server's name, from its hello.
    pub server: String,
    next_id: RequestId,
}

impl Conn {
    /// Opens a connection to `addr`, trusting only the farm key in `trust`.
    pub async fn open(addr: &str, trust: &ServerTrust) -> anyhow::Result<Conn> {
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, handshake::open(addr, trust))
            .await
            .map_err(|_| anyhow!("{addr} did not answer within {CONNECT_TIMEOUT:?}"))??;
        let (framed, server) = opened;
        Ok(Conn {
            framed,
            server,
            next_id: 1,
        })
    }

    /// Sends one request and waits for its reply. Deliveries that come before it are not
    /// expected before a workload starts; they are left unacknowledged, so the server keeps
    /// them for `readlog`.
    pub async fn request(&mut self, body: Request) -> anyhow::Result<Result<Response, ErrorReply>> {
        let id = self.next_id;
        self.next_id += 1;
        self.framed
            .send(ClientFrame::Request { id, body })
            .await
            .with_context(|| format!("cannot write to {}", self.server))?;
        let reply = async {
            loop {
                match self.framed.next().await {
                    Some(Ok(ServerFrame::Reply { id: got, result })) if got == id => {
                        return Ok(result)
                    }
                    Some(Ok(
                        ServerFrame::Reply { .. }
                        | ServerFrame::Deliver(_)
                        | ServerFrame::GoHome { .. }
                        | ServerFrame::RingChanged(_)
                        | ServerFrame::Echo(_)
                        | ServerFrame::Notice(_),
                    )) => {}
                    Some(Ok(ServerFrame::Closing { reason })) => {
                        bail!("{} closed the connection: {reason}", self.server)
                    }
                    Some(Err(err)) => bail!("bad frame from {}: {err}", self.server),
                    None => bail!("{} closed the connection", self.server),
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, reply)
            .await
            .map_err(|_| anyhow!("{} did not answer within {REQUEST_TIMEOUT:?}", self.server))?
    }

    /// The first request id the workload may use: the ones before went to [`Conn::request`].
    pub fn next_request_id(&self) -> RequestId {
        self.next_id
    }
}

/// The farm as a workload sees it: its ring, and the key its servers must present.
pub struct Farm {
    pub ring: RingInfo,
    pub trust: ServerTrust,
    /// Server names in ring order of their names, for placing users evenly.
    pub names: Vec<String>,
}

impl Farm {
    /// Asks the first of `seeds` that answers for the ring.
    pub async fn discover(seeds: &[String], trust: ServerTrust) -> anyhow::Result<Farm> {
        let mut failures = Vec::new();
        for addr in seeds {
            match ring_from(addr, &trust).await {
                Ok(ring) => {
                    let names = ring.ring().servers().to_vec();
                    if names.is_empty() {
                        bail!("{addr} gave an empty ring");
                    }
                    return Ok(Farm { ring, trust, names });
                }
                Err(err) => failures.push(format!("{err:#}")),
            }
        }
        bail!("no server gave the ring: {}", failures.join("; "))
    }

    /// `n` user names `<prefix><k>`, the i-th homed on server `i % servers` (in name order),
    /// so that users spread evenly and neighbours live on different servers.
    pub fn names_by_home(&self, prefix: &str, n: usize) -> Vec<String> {
        let ring = self.ring.ring();
        let n_servers = self.names.len();
        let mut pools: Vec<Vec<String>> = vec![Vec::new(); n_servers];
        let mut names = Vec::with_capacity(n);
        let mut counter = 0u64;
        for idx in 0..n {
            let wanted = idx % n_servers;
            while pools[wanted].is_empty() {
                let name = format!("{prefix}{counter}");
                counter += 1;
                let home = ring.home(&name).unwrap_or_default();
                let pool = self.names.iter().position(|server| server == home);
                pools[pool.unwrap_or(wanted)].push(name);
            }
            names.push(pools[wanted].remove(0));
        }
        names
    }

    /// The client address of `user`'s home server.
    pub fn home_addr(&self, user: &str) -> anyhow::Result<String> {
        let home = self.ring.ring().home(user).unwrap_or_default().to_string();
        let addr = self
            .ring
            .addr_of(&home)
            .ok_or_else(|| anyhow!("the ring has no address for {home}"))?;
        Ok(addr.to_string())
    }

    /// Logs `user` in on their home server, following redirects as the real client does.
    pub async fn log_in(&self, user: &str, password: &str) -> anyhow::Result<Conn> {
        let mut addr = self.home_addr(user)?;
        for _ in 0..=MAX_REDIRECTS {
            let mut conn = Conn::open(&addr, &self.trust).await?;
            match conn.log_in(user, password).await? {
                None => return Ok(conn),
                Some(next) => addr = next,
            }
        }
        bail!("the farm could not agree where {user} lives")
    }
}

impl Conn {
    /// Logs `user` in on this connection; `Some(addr)` when the server redirects the login
    /// to the server at `addr`.
    pub async fn log_in(&mut self, user: &str, password: &str) -> anyhow::Result<Option<String>> {
        let reply = self.request(login::request(user, password)).await?;
        match login::outcome(user, reply).with_context(|| format!("on {}", self.server))? {
            Outcome::LoggedIn(_) => Ok(None),
            Outcome::Redirect(addr) => Ok(Some(addr)),
        }
    }
}

async fn ring_from(addr: &str, trust: &ServerTrust) -> anyhow::Result<RingInfo> {
    let mut conn = Conn::open(addr, trust).await?;
    match conn.request(Request::Ring).await? {
        Ok(Response::Ring(ring)) => Ok(ring),
        Ok(other) => bail!("unexpected answer to a ring request from {addr}: {other:?}"),
        Err(refusal) => bail!("{addr} refused the ring request: {refusal}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_proto::ring::DEFAULT_VNODES;
    use chat_proto::ServerAddr;

    #[test]
    fn names_are_spread_round_robin_over_their_homes() {
        let ring = RingInfo {
            vnodes: DEFAULT_VNODES,
            servers: ["s1", "s2", "s3"]
                .iter()
                .map(|name| ServerAddr {
                    name: name.to_string(),
                    addr: format!("{name}:1"),
                })
                .collect(),
        };
        let farm = Farm {
            names: ring.ring().servers().to_vec(),
            ring,
            trust: ServerTrust::Pinned([0; 32]),
        };
        let names = farm.names_by_home("u-", 7);
        let ring = farm.ring.ring();
        let homes: Vec<&str> = names.iter().map(|name| ring.home(name).unwrap()).collect();
        assert_eq!(homes, ["s1", "s2", "s3", "s1", "s2", "s3", "s1"]);
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 7);
    }
}
