//! Home calls its users back: a server that comes back, or joins, gets its users from the
//! servers they sit on by a push (`GoHome`), long before the clients' slow look at home; and a
//! farm that is down says so, while the user can still leave.

use chat_proto::ring::DEFAULT_VNODES;
use chat_proto::Ring;
use chat_tests::{now_ms, Client, Farm, Server};
use serde_json::Value;

/// The clients' look at home: far longer than any of these tests waits, so a move home within
/// the test came by push.
const SLOW_POLL_MS: &str = "60000";
/// How long after the server is ready its users must be back: a push, spread over at most
/// 1.5 s, and a login.
const PUSHED_HOME_WITHIN_MS: u64 = 6000;

/// A client of every server of `farm`, logged in as `user`, that looks at home only slowly,
/// and the server it landed on.
async fn slow_polling_login(farm: &Farm, user: &str) -> (Client, String) {
    let mut client = Client::spawn_trusting(&farm.addrs(), &["--home-poll-ms", SLOW_POLL_MS]);
    client.ok(&format!("login {user} pw-{user}")).await;
    let landed = client
        .take_events(|ev| ev["type"] == "connected")
        .last()
        .and_then(|ev| ev["server"].as_str().map(str::to_owned))
        .expect("a connected event");
    (client, landed)
}

fn is_connected_to(server: &str) -> impl Fn(&Value) -> bool + '_ {
    move |ev: &Value| ev["type"] == "connected" && ev["server"] == server
}

/// Waits until `client` moves to `server`, within [`PUSHED_HOME_WITHIN_MS`] of `since_ms`, and
/// checks that it is served there.
async fn check_moved_home(client: &mut Client, server: &str, since_ms: u64) {
    let moved = client.event(is_connected_to(server)).await;
    // A move may come before the test has seen the farm converge: that is soon enough.
    let took_ms = moved["_at_ms"]
        .as_u64()
        .expect("a time")
        .saturating_sub(since_ms);
    assert!(
        took_ms <= PUSHED_HOME_WITHIN_MS,
        "home after {took_ms} ms: not pushed"
    );
    let whoami = client.ok("whoami").await;
    assert_eq!(whoami["server"], server, "{whoami}");
    assert_eq!(whoami["home"], server, "{whoami}");
}

#[tokio::test]
async fn a_restarted_server_calls_its_users_back() {
    let mut farm = Farm::start(2).await;
    let homed_on_s2 = farm.users_homed_on("s2", "back", 3);
    let mut clients = Vec::new();
    for user in &homed_on_s2 {
        let (client, landed) = slow_polling_login(&farm, user).await;
        assert_eq!(landed, "s2");
        clients.push(client);
    }
    // A user of s1 stays where they are.
    let stayer = farm.users_homed_on("s1", "stay", 1).remove(0);
    let (mut stayer_client, _) = slow_polling_login(&farm, &stayer).await;

    farm.server_mut("s2").kill().await;
    for client in &mut clients {
        client.event(is_connected_to("s1")).await;
    }
    farm.start_again("s2").await;
    let ready_ms = now_ms();
    for client in &mut clients {
        check_moved_home(client, "s2", ready_ms).await;
    }
    // Back home, they chat as before, with the one who never moved.
    clients[0].ok(&format!("send {stayer} home again")).await;
    stayer_client.message("home again").await;
    let moves = stayer_client.take_events(|ev| ev["type"] == "connected");
    assert!(moves.is_empty(), "{moves:?}");
}

#[tokio::test]
async fn a_server_that_joins_calls_the_users_the_ring_gives_it() {
    let mut farm = Farm::start(2).await;
    // Who will be homed on s3 once it joins; all are on s1 or s2 until then.
    let three = Ring::new(["s1", "s2", "s3"], DEFAULT_VNODES);
    let users: Vec<String> = (0..)
        .map(|idx| format!("joiner{idx}"))
        .filter(|user| three.home(user) == Some("s3"))
        .take(2)
        .collect();
    let mut clients = Vec::new();
    for user in &users {
        let (client, landed) = slow_polling_login(&farm, user).await;
        assert_ne!(landed, "s3");
        clients.push(client);
    }
    farm.add().await;
    let ready_ms = now_ms();
    for client in &mut clients {
        check_moved_home(client, "s3", ready_ms).await;
    }
}

#[tokio::test]
async fn a_farm_that_is_down_says_so_keeps_trying_and_lets_the_user_quit() {
    let mut farm = Farm::start(2).await;
    let (mut client, _) = slow_polling_login(&farm, "alice").await;
    farm.server_mut("s1").kill().await;
    farm.server_mut("s2").kill().await;

    let is_farm_down = |ev: &Value| ev["type"] == "farm_down";
    let first = client.event(is_farm_down).await;
    let message = first["message"].as_str().expect("a message");
    assert!(
        message.starts_with("no server of the farm answers; trying again in "),
        "{first}"
    );
    assert!(message.ends_with(" s"), "{first}");
    let retry_in_ms = first["retry_in_ms"].as_u64().expect("a pause");
    assert!(retry_in_ms <= 10_000, "{first}");
    // It keeps trying, and says so each time.
    client.event(is_farm_down).await;

    // The farm comes back, where the client knows to find it: the client is connected and
    // logged in again by itself.
    let addr = farm.server("s1").addr.clone();
    let again = Server::start_on(&farm.db, &farm.db.url, "s1", &["--listen", &addr]).await;
    *farm.server_mut("s1") = again;
    client.event(is_connected_to("s1")).await;
    let whoami = client.ok("whoami").await;
    assert_eq!(whoami["user"], "alice", "{whoami}");

    // Down again: `quit` is answered at once, without waiting for the farm.
    farm.server_mut("s1").kill().await;
    client.event(is_farm_down).await;
    let asked_ms = now_ms();
    client.type_line("quit").await;
    let bye = client
        .event(|ev| ev["type"] == "ok" && ev["command"] == "quit")
        .await;
    assert!(
        bye["_at_ms"].as_u64().expect("a time") - asked_ms < 1000,
        "{bye}"
    );
    assert_eq!(client.wait_exit().await, Some(0));
}

#[tokio::test]
async fn the_end_of_input_while_the_farm_is_down_ends_the_client() {
    let mut farm = Farm::start(1).await;
    let (mut client, _) = slow_polling_login(&farm, "bob").await;
    farm.server_mut("s1").kill().await;
    client.event(|ev| ev["type"] == "farm_down").await;
    client.close_input();
    assert_eq!(client.wait_exit().await, Some(0));
}

#[tokio::test]
async fn every_session_is_told_when_the_ring_changes() {
    let mut farm = Farm::start(2).await;
    let user = farm.users_homed_on("s1", "ringnews", 1).remove(0);
    let mut conn = chat_tests::RawConn::connect(&farm.server("s1").addr).await;
    conn.login(&user).await;
    let joined_addr = farm.add().await.addr.clone();
    // The push carries the ring as s1 now sees it: the new server, at its address.
    loop {
        if let chat_proto::ServerFrame::RingChanged(ring) = conn.next_frame().await {
            if ring.addr_of("s3") == Some(joined_addr.as_str()) {
                assert_eq!(ring.servers.len(), 3, "{ring:?}");
                break;
            }
        }
    }
}
