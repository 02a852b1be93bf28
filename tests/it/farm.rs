//! A farm of servers on one database: placement on the ring, relaying over the links, and the
//! farm-wide views.

use chat_proto::{
    handshake_codec, HandshakeBuilder, Keypair, LinkHello, Pattern, Request, Response, SecureCodec,
    LINK_PROLOGUE, MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use chat_tests::{Farm, RawConn, EVENT_TIMEOUT};
use futures::{SinkExt, StreamExt};
use rand_core::OsRng;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::bytes::Bytes;
use tokio_util::codec::Framed;

/// The value of `key=` on the line of `links` output about `peer`.
fn link_counter(links: &str, peer: &str, key: &str) -> u64 {
    let line = links
        .lines()
        .find(|line| line.starts_with(&format!("{peer} ")))
        .unwrap_or_else(|| panic!("no link to {peer} in:\n{links}"));
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{key}=")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[tokio::test]
async fn users_land_on_their_home_server_every_time() {
    let farm = Farm::start(3).await;
    let ring = farm.ring();
    for i in 0..9 {
        let user = format!("user{i}");
        let home = ring.home(&user).expect("a home");
        let backup = ring.backup(&user).expect("a backup");
        // Whichever server the client was given, it lands on the user's home.
        for seed in ["s1", "s2", "s3"] {
            let (mut client, landed) = farm.login_via(seed, &user).await;
            assert_eq!(landed, home, "{user} given {seed}");
            let whoami = client.ok("whoami").await;
            assert_eq!(whoami["server"], home);
            assert_eq!(whoami["home"], home);
            assert_eq!(whoami["backup"], backup);
            client.ok("quit").await;
        }
    }
}

#[tokio::test]
async fn a_login_on_the_wrong_server_is_redirected_home() {
    let farm = Farm::start(3).await;
    let ring = farm.ring();
    let user = farm.users_homed_on("s2", "wanderer", 1).remove(0);
    let mut raw = RawConn::connect(&farm.server("s1").addr).await;
    let answer = raw
        .request(Request::password_login(user.clone(), format!("pw-{user}")))
        .await;
    assert_eq!(
        answer,
        Ok(Response::Redirect {
            server: "s2".into(),
            addr: farm.server("s2").addr.clone(),
        })
    );
    // The ring a server hands out is the one the test computes.
    let Ok(Response::Ring(info)) = raw.request(Request::Ring).await else {
        panic!("no ring");
    };
    assert_eq!(info.vnodes, 64);
    assert_eq!(info.ring().home(&user), ring.home(&user));
    assert_eq!(info.addr_of("s3"), Some(farm.server("s3").addr.as_str()));
}

#[tokio::test]
async fn direct_and_group_messages_cross_servers_once_per_server() {
    let farm = Farm::start(3).await;
    let alice = farm.users_homed_on("s1", "a", 2);
    let bobs = farm.users_homed_on("s2", "b", 2);
    let carols = farm.users_homed_on("s3", "c", 2);
    let mut clients = Vec::new();
    for user in alice.iter().chain(&bobs).chain(&carols) {
        let (mut client, _) = farm.login_via("s1", user).await;
        client.ok("join #all").await;
        clients.push(client);
    }
    let everyone: Vec<&String> = alice.iter().chain(&bobs).chain(&carols).collect();
    farm.wait_online(&everyone).await;
    let (sender, others) = clients.split_first_mut().expect("clients");

    // A direct message on one server, and one to each other server.
    for (idx, to) in [&alice[1], &bobs[0], &carols[1]].into_iter().enumerate() {
        let text = format!("direct {idx}");
        sender.ok(&format!("send {to} {text}")).await;
        let recipient = &mut others[[0, 1, 4][idx]];
        let message = recipient.message(&text).await;
        assert_eq!(message["from"], alice[0].as_str());
    }

    // A group message with members on all three servers: one frame to each other server.
    let before = farm.server("s1").admin("links").await;
    sender.ok("send #all hello everyone").await;
    for member in others.iter_mut() {
        let message = member.message("hello everyone").await;
        assert_eq!(message["group"], "all");
    }
    let after = farm.server("s1").admin("links").await;
    for peer in ["s2", "s3"] {
        let sent = link_counter(&after, peer, "delivers_out")
            - link_counter(&before, peer, "delivers_out");
        assert_eq!(sent, 1, "Deliver frames from s1 to {peer}");
    }
    for member in others.iter_mut() {
        assert!(member.take_messages("hello everyone").is_empty());
    }
}

#[tokio::test]
async fn offline_messages_wait_on_any_server_for_readlog() {
    let farm = Farm::start(3).await;
    let sender = farm.users_homed_on("s1", "sender", 1).remove(0);
    let away = farm.users_homed_on("s3", "away", 1).remove(0);
    let (mut away_client, _) = farm.login_via("s1", &away).await;
    away_client.ok("join #team").await;
    away_client.ok("quit").await;

    let (mut sender_client, _) = farm.login_via("s2", &sender).await;
    sender_client.ok("join #team").await;
    sender_client
        .ok(&format!("send {away} while you were out"))
        .await;
    sender_client.ok("send #team team news").await;

    let (mut away_client, landed) = farm.login_via("s2", &away).await;
    assert_eq!(landed, "s3");
    let log = away_client.ok("readlog").await;
    assert_eq!(log["count"], 2);
    for text in ["while you were out", "team news"] {
        let message = away_client.message(text).await;
        assert_eq!(message["offline"], true);
        assert_eq!(message["from"], sender.as_str());
    }
}

#[tokio::test]
async fn who_and_whois_cover_the_farm() {
    let farm = Farm::start(3).await;
    let ring = farm.ring();
    let mut online = Vec::new();
    let mut placed = Vec::new();
    let mut clients = Vec::new();
    for server in ["s1", "s2", "s3"] {
        let user = farm.users_homed_on(server, "w", 1).remove(0);
        let (client, landed) = farm.login_via("s1", &user).await;
        assert_eq!(landed, server);
        online.push(user.clone());
        placed.push((user, server));
        clients.push(client);
    }
    let offline = farm.users_homed_on("s2", "gone", 1).remove(0);
    let (mut gone, _) = farm.login_via("s1", &offline).await;
    gone.ok("quit").await;
    online.sort();

    // Logins and logouts reach the other servers over the links, a moment later.
    for client in &mut clients {
        client
            .ok_until("who", |who| who["users"] == json!(online))
            .await;
    }
    let asker = &mut clients[0];
    for (user, server) in &placed {
        let whois = asker.ok(&format!("whois {user}")).await;
        let expected = json!({
            "type": "ok", "command": "whois", "user": user, "online": true, "server": server,
            "home": ring.home(user), "backup": ring.backup(user),
        });
        // Compare only the fields the contract names, in case of extras.
        for key in [
            "type", "command", "user", "online", "server", "home", "backup",
        ] {
            assert_eq!(whois[key], expected[key], "{key} of whois {user}: {whois}");
        }
    }
    let whois = asker.ok(&format!("whois {offline}")).await;
    assert_eq!(whois["online"], false);
    assert_eq!(whois["server"], serde_json::Value::Null);
    assert_eq!(whois["home"], json!(ring.home(&offline)));
    assert!(asker
        .error("whois nobody-here")
        .await
        .contains("no such user"));

    let active = farm.server("s2").admin("active-users").await;
    let mut expected: Vec<String> = online
        .iter()
        .map(|user| {
            let server = ring.home(user).expect("home");
            if server == "s2" {
                format!("{user} server=s2 sessions=1")
            } else {
                format!("{user} server={server}")
            }
        })
        .collect();
    expected.sort();
    assert_eq!(active, expected.join("\n"));
}

#[tokio::test]
async fn a_fourth_server_takes_over_exactly_the_users_the_ring_gives_it() {
    let mut farm = Farm::start(3).await;
    let users: Vec<String> = (0..24).map(|i| format!("member{i}")).collect();
    let before = farm.ring();
    for user in &users {
        let (mut client, landed) = farm.login_via("s1", user).await;
        assert_eq!(Some(landed.as_str()), before.home(user));
        client.ok("quit").await;
    }

    farm.add().await;
    let after = farm.ring();
    let mut moved = 0;
    for user in &users {
        let (mut client, landed) = farm.login_via("s1", user).await;
        let old_home = before.home(user).expect("home");
        if landed == "s4" {
            moved += 1;
        } else {
            assert_eq!(landed, old_home, "{user} moved, but not to the new server");
        }
        assert_eq!(Some(landed.as_str()), after.home(user), "{user}");
        client.ok("quit").await;
    }
    assert!(moved > 0, "the new server took over nobody");

    // The registry view says the same.
    let servers = farm.server("s4").admin("servers").await;
    let s4 = servers
        .lines()
        .find(|line| line.starts_with("s4 "))
        .expect("s4 listed");
    assert!(s4.contains(&format!(" homed={moved}")), "{servers}");
}

#[tokio::test]
async fn chat_server_admin_reaches_a_background_server() {
    let farm = Farm::start(2).await;
    let (_alice, _) = farm.login_via("s1", "alice").await;
    let help = farm.server("s1").admin("help").await;
    assert!(help.contains("servers"), "{help}");
    let servers = farm.server("s2").admin("servers").await;
    assert!(servers.ends_with("ring: 2 live, V=64"), "{servers}");
    // A command that fails exits with status 1, as a script needs.
    let unknown = farm.server("s1").admin_failing("frobnicate").await;
    assert_eq!(unknown, "error: unknown command: frobnicate (try help)");
    let missing = farm.server("s1").admin_failing("users #nope").await;
    assert_eq!(missing, "error: no such group: #nope");
}

/// Plays a server dialing `addr`'s peer port: the XXpsk3 handshake with `cluster_key` and a
/// fresh link key, then `hello`. Returns the answer, or `None` if the server hung up.
async fn dial_link(addr: &str, cluster_key: [u8; 32], hello: LinkHello) -> Option<LinkHello> {
    let stream = TcpStream::connect(addr)
        .await
        .expect("connect to the peer port");
    let mut framed = Framed::new(stream, handshake_codec());
    let mut noise = HandshakeBuilder::new(Pattern::XxPsk3)
        .prologue(LINK_PROLOGUE)
        .local_static(Keypair::generate(&mut OsRng))
        .psk(cluster_key)
        .build_initiator(&mut OsRng)
        .expect("an XXpsk3 initiator");
    let first = noise.write_message(&[]).expect("message 1");
    framed.send(Bytes::from(first)).await.ok()?;
    let second = timeout(EVENT_TIMEOUT, framed.next()).await.ok()??.ok()?;
    noise.read_message(&second).expect("message 2 reads");
    let third = noise.write_message(&[]).expect("message 3");
    framed.send(Bytes::from(third)).await.ok()?;
    let transport = noise.into_transport().expect("finished");
    let mut framed =
        framed.map_codec(|_| SecureCodec::<LinkHello, LinkHello>::new(transport, MAX_FRAME_LEN));
    framed.send(hello).await.ok()?;
    timeout(EVENT_TIMEOUT, framed.next()).await.ok()??.ok()
}

#[tokio::test]
async fn a_link_from_a_server_not_in_the_registry_is_refused() {
    let farm = Farm::start(2).await;
    // A name that sorts after every real server and a start time in the future: by the dial
    // rule it is its to dial, so only the registry check can refuse it.
    let answer = dial_link(
        &farm.server("s1").peer_addr,
        farm.db.cluster_key(),
        LinkHello::new("s9", i64::MAX),
    )
    .await
    .expect("an answer");
    assert_eq!(
        answer.refusal,
        "s9 is not a live server of the registry with this link key, or has restarted since"
    );
    // Claiming a real server's name and start time does not help without its link key.
    let registry = farm.db.query_strings(
        "SELECT (extract(epoch FROM started_at) * 1000)::bigint::text FROM server_info \
         WHERE name = 's2'",
    );
    let started_at: i64 = registry.await[0].parse().expect("a start time");
    let answer = dial_link(
        &farm.server("s1").peer_addr,
        farm.db.cluster_key(),
        LinkHello::new("s2", started_at),
    )
    .await;
    assert!(
        answer
            .as_ref()
            .is_none_or(|answer| !answer.refusal.is_empty()),
        "{answer:?}"
    );
    // The farm is unaffected.
    let links = farm.server("s1").admin("links").await;
    assert!(!links.contains("s9"), "{links}");
    assert!(links.starts_with("s2 up "), "{links}");
}

#[tokio::test]
async fn a_link_from_another_protocol_version_is_refused() {
    let farm = Farm::start(1).await;
    // A server of the version before this one would misread the newer link frames.
    let older = PROTOCOL_VERSION - 1;
    let hello = LinkHello {
        version: older,
        ..LinkHello::new("s9", i64::MAX)
    };
    let answer = dial_link(&farm.server("s1").peer_addr, farm.db.cluster_key(), hello)
        .await
        .expect("an answer");
    assert_eq!(
        answer.refusal,
        format!(
            "protocol version {older} is not supported; this server speaks version \
             {PROTOCOL_VERSION}"
        )
    );
}

#[tokio::test]
async fn a_link_without_the_cluster_key_gets_nowhere() {
    let farm = Farm::start(2).await;
    let answer = dial_link(
        &farm.server("s1").peer_addr,
        [7; 32],
        LinkHello::new("s9", i64::MAX),
    )
    .await;
    assert_eq!(
        answer, None,
        "the server answered a link without the cluster key"
    );
    let links = farm.server("s1").admin("links").await;
    assert!(!links.contains("s9"), "{links}");
    assert!(links.starts_with("s2 up "), "{links}");
}

#[tokio::test]
async fn links_come_back_after_a_server_crashes_and_restarts() {
    let mut farm = Farm::start(2).await;
    let on_s1 = farm.users_homed_on("s1", "one", 1).remove(0);
    let on_s2 = farm.users_homed_on("s2", "two", 1).remove(0);
    farm.restart("s2").await;

    let (mut one, _) = farm.login_via("s1", &on_s1).await;
    let (mut two, landed) = farm.login_via("s1", &on_s2).await;
    assert_eq!(landed, "s2");
    farm.wait_online(&[&on_s1, &on_s2]).await;
    one.ok(&format!("send {on_s2} after the restart")).await;
    two.message("after the restart").await;
    two.ok(&format!("send {on_s1} and back")).await;
    one.message("and back").await;
}

#[tokio::test]
async fn a_hung_servers_users_leave_who_within_the_heartbeat_timeout() {
    let farm = Farm::start(2).await;
    let watcher = farm.users_homed_on("s1", "watcher", 1).remove(0);
    let ghost = farm.users_homed_on("s2", "ghost", 1).remove(0);
    let (mut watching, _) = farm.login_via("s1", &watcher).await;
    // A bare connection, which does not fail over: its user must vanish with its server.
    let mut raw = RawConn::connect(&farm.server("s2").addr).await;
    raw.login(&ghost).await;
    let both = json!([ghost.clone(), watcher.clone()]);
    watching.ok_until("who", |who| who["users"] == both).await;

    farm.server("s2").freeze();
    let frozen_at = std::time::Instant::now();
    let alone = json!([watcher.clone()]);
    watching.ok_until("who", |who| who["users"] == alone).await;
    let took = frozen_at.elapsed();
    farm.server("s2").thaw();
    assert!(
        took <= std::time::Duration::from_millis(3500),
        "{ghost} stayed in `who` for {took:?} after its server hung"
    );
}
