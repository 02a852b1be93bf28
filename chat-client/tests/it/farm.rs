//! Logins on a fake farm: the ring sends the client to the user's home, and redirects move it.

use crate::fake_server::{messages, who, FakeServer, OnWho, SENT_AT};
use crate::session::login;
use crate::support::{logged_in_at, ringed_farm, run_to_end, who_answer};
use chat_proto::ring::DEFAULT_VNODES;
use chat_proto::{Request, Ring};
use serde_json::{json, Value};

/// An address where nothing listens.
const DEAD: &str = "127.0.0.1:1";

/// A user name whose successors on the ring of `servers` begin with `order`.
pub fn user_placed(servers: &[&str], order: &[&str]) -> String {
    let ring = Ring::new(servers, DEFAULT_VNODES);
    (0..10_000)
        .map(|idx| format!("user{idx}"))
        .find(|user| {
            ring.successors(user)
                .take(order.len())
                .eq(order.iter().copied())
        })
        .expect("some user has that placement")
}

pub fn connected(server: &str) -> Value {
    json!({"type":"connected","server":server})
}

/// The message every fake server delivers at login, before its reply.
pub fn delivered_at_login() -> Value {
    let first = &messages()[0];
    json!({"type":"message","id":first.id.to_string(),"from":"bob","to":"alice","text":"hello  alice","sent_at":SENT_AT})
}

pub fn logged_in(user: &str) -> Value {
    json!({"type":"ok","command":"login","user":user,"registered":true,"waiting":3})
}

/// A fake farm of servers named `names`, each answering every request.
pub async fn farm<const N: usize>(names: [&str; N]) -> [FakeServer; N] {
    let mut servers = Vec::new();
    for name in names {
        servers.push(FakeServer::start_named(name, OnWho::Answer).await);
    }
    servers
        .try_into()
        .unwrap_or_else(|_| unreachable!("one server a name"))
}

#[tokio::test]
async fn login_moves_to_the_users_home_server() {
    let servers = ringed_farm(["s1", "s2"]).await;
    let [s1, s2] = &servers;
    let user = user_placed(&["s1", "s2"], &["s2", "s1"]);

    let lines = run_to_end(s1, &format!("login {user} pw\nwhoami\n")).await;
    assert_eq!(
        lines,
        [
            vec![connected("s1")],
            logged_in_at(&user, "s2"),
            vec![json!({"type":"ok","command":"whoami","user":user,"server":"s2","home":"s2","backup":"s1"})],
        ]
        .concat()
    );
    // The first server was only asked for the ring; the home server got the rest.
    s1.until_closed().await;
    s2.until_closed().await;
    assert_eq!(s1.requests(), vec![Request::Ring]);
    assert_eq!(s2.logins(), vec![user]);
    assert_eq!(s2.acked(), vec![messages()[0].id]);
}

#[tokio::test]
async fn login_falls_back_to_the_backup_when_home_does_not_answer() {
    let servers = farm(["s1", "s3"]).await;
    let [s1, s3] = &servers;
    s1.set_ring(&[
        ("s1", &s1.addr.to_string()),
        ("s2", DEAD),
        ("s3", &s3.addr.to_string()),
    ]);
    let user = user_placed(&["s1", "s2", "s3"], &["s2", "s3"]);

    let lines = run_to_end(s1, &format!("login {user} pw\n")).await;
    assert_eq!(
        lines,
        [vec![connected("s1")], logged_in_at(&user, "s3")].concat()
    );
    assert_eq!(s1.logins(), Vec::<String>::new());
    assert_eq!(s3.logins(), vec![user]);
}

#[tokio::test]
async fn login_stays_when_the_current_server_is_the_first_that_answers() {
    let servers = farm(["s1"]).await;
    let [s1] = &servers;
    s1.set_ring(&[("s1", &s1.addr.to_string()), ("s2", DEAD)]);
    let user = user_placed(&["s1", "s2"], &["s2", "s1"]);

    let lines = run_to_end(s1, &format!("login {user} pw\n")).await;
    assert_eq!(lines, logged_in_at(&user, "s1"));
    assert_eq!(s1.requests(), vec![Request::Ring, login(&user, "pw")]);
}

#[tokio::test]
async fn an_empty_ring_logs_in_where_connected() {
    let servers = farm(["s1"]).await;
    let [s1] = &servers;
    s1.set_ring(&[]);

    let lines = run_to_end(s1, "login alice pw\n").await;
    assert_eq!(lines, logged_in_at("alice", "s1"));
    assert_eq!(s1.requests(), vec![Request::Ring, login("alice", "pw")]);
}

#[tokio::test]
async fn a_redirect_is_followed() {
    let servers = farm(["s1", "s2"]).await;
    let [s1, s2] = &servers;
    s1.redirect_logins("s2", &s2.addr.to_string());

    let lines = run_to_end(s1, "login alice pw\nwhoami\n").await;
    assert_eq!(
        lines,
        [
            vec![connected("s1")],
            logged_in_at("alice", "s2"),
            vec![json!({"type":"ok","command":"whoami","user":"alice","server":"s2","home":"s2","backup":null})],
        ]
        .concat()
    );
    assert_eq!(s1.logins(), vec!["alice"]);
    assert_eq!(s2.logins(), vec!["alice"]);
}

#[tokio::test]
async fn redirects_in_a_circle_give_up_after_two() {
    let servers = farm(["s1", "s2"]).await;
    let [s1, s2] = &servers;
    s1.redirect_logins("s2", &s2.addr.to_string());
    s2.redirect_logins("s1", &s1.addr.to_string());

    let lines = run_to_end(s1, "login alice pw\nwho\n").await;
    assert_eq!(
        lines,
        vec![
            connected("s1"),
            json!({"type":"error","command":"login","message":"the farm could not agree where alice lives; try again"}),
            who_answer(),
        ]
    );
    // s1, then s2, then s1 again on a new connection: two redirects followed, the third not.
    assert_eq!(s1.logins(), vec!["alice", "alice"]);
    assert_eq!(s2.logins(), vec!["alice"]);
    // The session stayed on its first connection.
    assert!(s1.requests().contains(&who()));
    assert!(!s2.requests().contains(&who()));
}

#[tokio::test]
async fn a_redirect_to_a_server_that_does_not_answer_fails_the_login() {
    let servers = farm(["s1"]).await;
    let [s1] = &servers;
    s1.redirect_logins("s9", DEAD);

    let lines = run_to_end(s1, "login alice pw\nwho\n").await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert_eq!(lines[1]["command"], "login");
    let message = lines[1]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("alice belongs on s9, but cannot connect to 127.0.0.1:1: "),
        "{lines:#?}"
    );
    assert_eq!(lines[2]["command"], "who");
}

#[tokio::test]
async fn a_logged_in_session_stays_put_until_logout_and_keeps_its_seen_messages() {
    let servers = farm(["s1", "s2"]).await;
    let [s1, s2] = &servers;
    let ring = [("s1", &*s1.addr.to_string()), ("s2", &*s2.addr.to_string())];
    s1.set_ring(&ring);
    let at_s1 = user_placed(&["s1", "s2"], &["s1"]);
    let at_s2 = user_placed(&["s1", "s2"], &["s2"]);

    let script = format!("login {at_s1} pw\nlogin {at_s2} pw\nlogout\nlogin {at_s2} pw\n");
    let lines = run_to_end(s1, &script).await;
    // Every fake login delivers the same message; it is shown once, across the switch.
    assert_eq!(
        lines,
        [
            logged_in_at(&at_s1, "s1"),
            vec![
                logged_in(&at_s2),
                json!({"type":"ok","command":"logout"}),
                connected("s2"),
                logged_in(&at_s2),
            ],
        ]
        .concat()
    );
    assert_eq!(
        s1.requests(),
        vec![
            Request::Ring,
            login(&at_s1, "pw"),
            login(&at_s2, "pw"),
            Request::Logout,
            Request::Ring,
        ]
    );
    s2.until_closed().await;
    assert_eq!(s2.logins(), vec![at_s2]);
    // Acknowledged though not shown again.
    assert_eq!(s2.acked(), vec![messages()[0].id]);
}
