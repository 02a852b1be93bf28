//! The multi-host test: the farm deployed by the real `scripts/deploy` (Ansible over ssh) onto
//! five hosts on this machine, two database hosts (a replicated database: PostgreSQL under
//! Patroni, with etcd on both and on s1) and three chat servers, then used as people would
//! use it across hosts.
//!
//! The hosts are made by `tests/hosts/hosts`: network namespaces on a bridge of the test's own,
//! each with its own sshd and private `/etc`, `/var`, `/opt`, `/root`, `/tmp` and `/run`. They
//! have no systemd: the deployment's units are checked with `systemd-analyze verify` and run
//! by **a stand-in for systemd** that the test owns (`tests/hosts/systemd-standin`), which
//! starts each unit's exact `ExecStart` as its `User` with its environment (Debian's own
//! `patroni.service` and `etcd.service` too). Everything else is the real thing: ssh, users,
//! files, permissions, addresses, Debian's PostgreSQL, Patroni and etcd.
//!
//! It checks that the database has a primary and a synchronous standby on different hosts,
//! direct and group messages between servers on different hosts, failover between hosts when
//! a host's server is killed, `--add` and `--remove`, a rolling upgrade while clients chat
//! that loses and doubles nothing, and that a second deploy changes nothing. (The database's
//! own failover is another test's.)
//! It needs root; without it, it says so and passes.

use crate::chaos::{
    assert_crowd_kept_all, lost_and_doubled, reports, start_chatters, Crowd, GROUP,
};
use chat_proto::ring::DEFAULT_VNODES;
use chat_proto::Ring;
use chat_tests::{binary, Client};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::{timeout, Duration};

const SERVERS: [&str; 3] = ["s1", "s2", "s3"];
/// The replicated database's hosts, `[chat_db]`.
const DB_HOSTS: [&str; 2] = ["db1", "db2"];
/// etcd's members, `[chat_etcd]`: with two database hosts, a third member on a chat server's
/// host, so that etcd survives the loss of any one.
const ETCD_HOSTS: [&str; 3] = ["db1", "db2", "s1"];
/// Patroni's REST API on each database host (`patroni_api_port`).
const PATRONI_API_PORT: u16 = 8008;
/// The longest a deployment may take; it waits for every server itself.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);
/// Users of the chat-bench crowd that live beside the checked clients during the upgrade.
const CROWD_USERS: u64 = 30;
const STANDIN: &str = "tests/hosts/systemd-standin";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The hosts of `tests/hosts/hosts`, taken down when dropped, whatever happened.
struct Hosts {
    dir: PathBuf,
    addrs: HashMap<String, String>,
}

impl Hosts {
    async fn up(names: &[&str]) -> Hosts {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let script = workspace().join("tests/hosts/hosts");
        // Hosts left by an earlier run that was killed before it could take them down.
        for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("hosts-") {
                let _ = std::process::Command::new(&script)
                    .arg("down")
                    .arg(entry.path())
                    .status();
            }
        }
        let dir = tmp.join(format!("hosts-{}", std::process::id()));
        let status = Command::new(&script)
            .arg("up")
            .arg(&dir)
            .args(names)
            .status()
            .await
            .expect("run tests/hosts/hosts up");
        // From here on the hosts are taken down on every exit, a failed assertion included.
        let mut hosts = Hosts {
            dir,
            addrs: HashMap::new(),
        };
        assert!(status.success(), "tests/hosts/hosts up failed");
        let env = std::fs::read_to_string(hosts.dir.join("hosts.env")).expect("hosts.env");
        for line in env.lines() {
            if let Some((name, addr)) = line.strip_prefix("HOST_").and_then(|l| l.split_once('=')) {
                hosts.addrs.insert(name.to_owned(), addr.to_owned());
            }
        }
        hosts
    }

    fn ssh_args(&self) -> Vec<String> {
        let ssh = self.dir.join("ssh");
        vec![
            format!("-i {}", ssh.join("id_ed25519").display()),
            format!(
                "-o UserKnownHostsFile={}",
                ssh.join("known_hosts").display()
            ),
            "-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5".to_owned(),
        ]
    }

    /// Runs a shell command on `host` over ssh as root; returns its status and output.
    async fn ssh(&self, host: &str, command: &str) -> (bool, String) {
        let mut ssh = Command::new("ssh");
        for arg in self.ssh_args() {
            ssh.args(arg.split(' '));
        }
        let out = ssh
            .arg(format!("root@{}", self.addrs[host]))
            .arg(command)
            .output()
            .await
            .expect("run ssh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// Runs the test's stand-in for systemd on `host` with `args` (`start chat-server`, say),
    /// over ssh.
    async fn standin(&self, host: &str, args: &str) -> (bool, String) {
        let standin = workspace().join(STANDIN);
        self.ssh(host, &format!("{} {args}", standin.display()))
            .await
    }

    /// Writes an inventory of the database hosts, etcd's members and `servers`, as an
    /// operator would.
    fn inventory(&self, servers: &[&str]) -> PathBuf {
        let mut text = "[chat_db]\n".to_owned();
        for db in DB_HOSTS {
            text += &format!("{db} ansible_host={}\n", self.addrs[db]);
        }
        text += "\n[chat_servers]\n";
        for server in servers {
            text += &format!("{server} ansible_host={}\n", self.addrs[*server]);
        }
        text += &format!("\n[chat_etcd]\n{}\n", ETCD_HOSTS.join("\n"));
        text += &format!(
            "\n[all:vars]\nansible_user=root\nansible_become=false\n\
             ansible_python_interpreter=/usr/bin/python3\nansible_ssh_common_args='{}'\n\
             chat_init=standin\nchat_standin={}\n\
             chat_extra_flags='{}'\n",
            self.ssh_args().join(" "),
            workspace().join(STANDIN).display(),
            // Every client of the test comes from the test's one address, as a load generator
            // would: its new accounts must not be refused as a flood.
            "--max-registrations-per-hour 100000 --registration-burst 1000",
        );
        let path = self.dir.join(format!("farm-{}.ini", servers.len()));
        std::fs::write(&path, text).expect("write the inventory");
        path
    }

    /// Runs `scripts/deploy` with `args`; it must succeed. Returns its summary line.
    async fn deploy(&self, inventory: &Path, args: &[&str]) -> String {
        println!("scripts/deploy {}", args.join(" "));
        let run = Command::new(workspace().join("scripts/deploy"))
            .arg("--inventory")
            .arg(inventory)
            .arg("--secrets")
            .arg(self.dir.join("secrets"))
            .args(args)
            // The tests' own database is not the farm's: the farm gets its [chat_db] host.
            .env_remove("DATABASE_URL")
            .output();
        let out = timeout(DEPLOY_TIMEOUT, run)
            .await
            .expect("scripts/deploy finished in time")
            .expect("run scripts/deploy");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/deploy {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = stdout
            .lines()
            .rfind(|line| line.starts_with("deploy: "))
            .expect("scripts/deploy prints its summary")
            .to_owned();
        println!("{summary}");
        summary
    }

    /// Waits, with the deployment's own readiness check, until `server` is ready, linked
    /// with `peers` and its users are home.
    async fn ready(&self, server: &str, peers: &[&str]) {
        let check = format!(
            "/opt/chat-farm/bin/chat-farm-ready --user chat-server --socket /var/lib/chat-server/admin.sock \
             --name {server} --peers {} --home --timeout 60",
            peers.join(",")
        );
        let (ok, output) = self.ssh(server, &check).await;
        assert!(ok, "{server} is not ready: {output}");
    }

    fn client_addrs(&self, servers: &[&str]) -> Vec<String> {
        servers
            .iter()
            .map(|server| format!("{}:7000", self.addrs[*server]))
            .collect()
    }

    /// A `chat-client --json` of the farm that pins the farm's key, logged in as `user`.
    async fn login(&self, servers: &[&str], user: &str) -> Client {
        let key = std::fs::read_to_string(self.dir.join("secrets/farm.pub")).expect("farm.pub");
        let addrs = self.client_addrs(servers);
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut client = Client::spawn_with(&addrs, &["--server-key", key.trim()]);
        client.ok(&format!("login {user} pw-{user}")).await;
        client
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = std::process::Command::new(workspace().join("tests/hosts/hosts"))
            .arg("down")
            .arg(&self.dir)
            .status();
    }
}

/// A user whose home is `server` on the ring of `servers`.
fn homed_on(servers: &[&str], server: &str, prefix: &str) -> String {
    let ring = Ring::new(servers, DEFAULT_VNODES);
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|user| ring.home(user) == Some(server))
        .expect("some name is homed on every server")
}

/// The `connected` event of a client's next move to a server that `accept` takes.
async fn moved_to(client: &mut Client, accept: impl Fn(&str) -> bool) -> String {
    let event = client
        .event(|ev| ev["type"] == "connected" && accept(ev["server"].as_str().unwrap_or("")))
        .await;
    event["server"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_farm_deployed_over_ssh_chats_across_hosts_and_upgrades_without_loss() {
    if !crate::is_root() {
        println!("skipped: the multi-host test needs root (network namespaces, sshd, users)");
        return;
    }
    let hosts = Hosts::up(&[DB_HOSTS[0], DB_HOSTS[1], "s1", "s2", "s3"]).await;
    let build = binary("chat-server");
    let build_dir = build
        .parent()
        .expect("the binaries' directory")
        .to_string_lossy();

    // A farm of two, then a third server added to it while it runs.
    let two = hosts.inventory(&SERVERS[..2]);
    let first = hosts.deploy(&two, &["--binaries", &build_dir]).await;
    assert!(first.starts_with("deploy: changed: "), "{first}");
    assert_replicated(&hosts).await;
    let three = hosts.inventory(&SERVERS);
    hosts
        .deploy(&three, &["--binaries", &build_dir, "--add", "s3"])
        .await;
    for server in SERVERS {
        let (ok, output) = hosts
            .ssh(
                server,
                "systemd-analyze verify /etc/systemd/system/chat-server.service",
            )
            .await;
        assert!(ok, "systemd-analyze verify on {server}: {output}");
    }

    // Direct and group messages between servers on different hosts.
    let users: Vec<String> = SERVERS
        .iter()
        .map(|server| homed_on(&SERVERS, server, &format!("{server}user")))
        .collect();
    let mut clients = Vec::new();
    for (user, server) in users.iter().zip(SERVERS) {
        let mut client = hosts.login(&SERVERS, user).await;
        let whoami = client.ok("whoami").await;
        assert_eq!(whoami["server"], server, "{user} is at home");
        client.ok("join hosts").await;
        clients.push(client);
    }
    let peer = &users[1];
    clients[0]
        .ok_until(&format!("whois {peer}"), |ok| ok["online"] == true)
        .await;
    clients[0].ok(&format!("send {peer} across hosts")).await;
    clients[1].message("across hosts").await;
    clients[2].ok("send #hosts to the group").await;
    clients[0].message("to the group").await;
    clients[1].message("to the group").await;

    // s2's server is killed: its user moves to another host, then home once it is back.
    let main_pid = format!(
        "{} main-pid chat-server",
        workspace().join(STANDIN).display()
    );
    let (ok, output) = hosts.ssh("s2", &format!("kill -9 $({main_pid})")).await;
    assert!(ok, "kill s2's server: {output}");
    moved_to(&mut clients[1], |server| server != "s2").await;
    clients[0]
        .ok(&format!("send {peer} while s2 is down"))
        .await;
    clients[1].message("while s2 is down").await;
    let (ok, output) = hosts.standin("s2", "start chat-server").await;
    assert!(ok, "start s2's server again: {output}");
    hosts.ready("s2", &["s1", "s3"]).await;
    moved_to(&mut clients[1], |server| server == "s2").await;
    for mut client in clients {
        client.ok("quit").await;
    }

    // A rolling upgrade to another build while users chat: nothing lost, nothing doubled.
    let upgrade = hosts.dir.join("build-2");
    std::fs::create_dir_all(&upgrade).expect("mkdir build-2");
    let mut bytes = std::fs::read(&build).expect("read chat-server");
    bytes.extend_from_slice(b"\n# the multi-host test's second build\n");
    std::fs::write(upgrade.join("chat-server"), bytes).expect("write the second build");
    std::fs::set_permissions(
        upgrade.join("chat-server"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod the second build");
    let upgrade = upgrade.to_string_lossy().into_owned();

    let (reports, crowd_line) = chat_through(&hosts, &["--binaries", &upgrade, "--rolling"]).await;
    let (n_sent, lost, doubled) = lost_and_doubled(&reports);
    assert!(lost.is_empty(), "lost in the rolling upgrade: {lost:#?}");
    assert!(
        doubled.is_empty(),
        "doubled in the rolling upgrade: {doubled:#?}"
    );
    assert!(n_sent > 0, "no message was acknowledged during the upgrade");
    assert_crowd_kept_all(&crowd_line);
    let want = sha256(&format!("{upgrade}/chat-server")).await;
    for server in SERVERS {
        let (_, sum) = hosts
            .ssh(server, "sha256sum /opt/chat-farm/bin/chat-server")
            .await;
        assert!(
            sum.starts_with(&want),
            "{server} runs the second build: {sum}"
        );
    }

    // The same deployment again changes nothing, and says so.
    let again = hosts.deploy(&three, &["--binaries", &upgrade]).await;
    assert!(
        again.starts_with("deploy: nothing changed: changed=0 on every host"),
        "{again}"
    );

    // s3 leaves gracefully; the other two still chat with each other.
    hosts
        .deploy(&three, &["--binaries", &upgrade, "--remove", "s3"])
        .await;
    let (running, _) = hosts.standin("s3", "is-active chat-server").await;
    assert!(!running, "s3's server still runs after --remove");
    let remaining = &SERVERS[..2];
    let left = homed_on(remaining, "s1", "left");
    let right = homed_on(remaining, "s2", "right");
    let mut alice = hosts.login(remaining, &left).await;
    let mut bob = hosts.login(remaining, &right).await;
    alice
        .ok_until(&format!("whois {right}"), |ok| ok["online"] == true)
        .await;
    alice.ok(&format!("send {right} after s3 left")).await;
    bob.message("after s3 left").await;
}

/// Runs `scripts/deploy ARGS` while three checked clients (one homed on each server) chat
/// directly and in a group and a chat-bench crowd lives beside them; returns what the clients
/// reported and the crowd's last line.
async fn chat_through(hosts: &Hosts, args: &[&str]) -> (Vec<crate::chaos::Report>, String) {
    let users: Vec<String> = SERVERS
        .iter()
        .map(|server| homed_on(&SERVERS, server, &format!("roll{server}x")))
        .collect();
    let addrs = hosts.client_addrs(&SERVERS);
    let addr_refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let crowd = Crowd::start(&addr_refs, &hosts.dir.join("secrets/farm.pub"), CROWD_USERS).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (moves, _moved) = mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for user in &users {
        let mut client = hosts.login(&SERVERS, user).await;
        client.ok(&format!("join {GROUP}")).await;
        clients.push(client);
    }
    let chatters = start_chatters(clients, &users, 1, &stop, &moves);
    let three = hosts.inventory(&SERVERS);
    let summary = hosts.deploy(&three, args).await;
    assert!(summary.starts_with("deploy: changed: "), "{summary}");
    stop.store(true, Ordering::Relaxed);
    let (crowd_line, _) = crowd.stop().await;
    println!("crowd: {crowd_line}");
    (reports(chatters).await, crowd_line)
}

/// One database host is the primary (Patroni's `GET /primary` answers 200) and the other its
/// synchronous standby (`GET /sync`), asked over the bridge as a load balancer would.
async fn assert_replicated(hosts: &Hosts) {
    let mut primary = Vec::new();
    let mut sync = Vec::new();
    for db in DB_HOSTS {
        let api = format!("{}:{PATRONI_API_PORT}", hosts.addrs[db]);
        if http_status(&api, "/primary").await == Some(200) {
            primary.push(db);
        }
        if http_status(&api, "/sync").await == Some(200) {
            sync.push(db);
        }
    }
    assert_eq!(
        primary.len(),
        1,
        "one primary among {DB_HOSTS:?}: {primary:?}"
    );
    assert_eq!(
        sync.len(),
        1,
        "one synchronous standby among {DB_HOSTS:?}: {sync:?}"
    );
    assert_ne!(
        primary, sync,
        "the primary and its synchronous standby are different hosts"
    );
    println!(
        "database: primary {}, synchronous standby {}",
        primary[0], sync[0]
    );
    // The servers are given every database host, and connect to whichever takes writes.
    let (ok, url) = hosts
        .ssh(
            "s1",
            "sed -n 's|^DATABASE_URL=postgres://[^@]*@||p' /etc/chat-server/chat-server.env",
        )
        .await;
    let want = format!(
        "{}:5432,{}:5432/chat?target_session_attrs=read-write",
        hosts.addrs[DB_HOSTS[0]], hosts.addrs[DB_HOSTS[1]]
    );
    assert!(ok && url.trim() == want, "s1's DATABASE_URL ends {url:?}");
}

/// The status of an HTTP `GET path` on `addr`, or `None` when it does not answer in time.
async fn http_status(addr: &str, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        // An HTTP/1.0 server closes the connection after its answer.
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = timeout(Duration::from_secs(5), exchange).await.ok()?.ok()?;
    let status_line = String::from_utf8_lossy(&answer).lines().next()?.to_owned();
    status_line.split_whitespace().nth(1)?.parse().ok()
}

async fn sha256(path: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .await
        .expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}
