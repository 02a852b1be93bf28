//! Lists longer than a frame: `groups`, `who` and the admin lists page through them, the client
//! shows them whole, and nobody is disconnected for asking.

use chat_proto::{ErrorCode, Request, Response, MAX_FRAME_LEN};
use chat_tests::{Client, Farm, RawConn, Server, TestDb};
use serde_json::Value;

/// How many groups: their names alone, 32 bytes each, make a list longer than a frame.
const N_GROUPS: usize = 34_000;
const _: () = assert!(N_GROUPS * 33 > MAX_FRAME_LEN);

#[tokio::test]
async fn a_list_of_groups_longer_than_a_frame_arrives_whole_and_the_client_stays() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut alice = Client::login(&server, "alice").await;
    alice.ok("join ops").await;
    // Long names, made in the database at once; alice is in every thousandth.
    db.execute(&format!(
        "INSERT INTO groups (name, created_by) \
             SELECT 'g' || lpad(i::text, 31, '0'), 'alice' FROM generate_series(1, {N_GROUPS}) i;
         INSERT INTO memberships (group_name, user_name) \
             SELECT 'g' || lpad(i::text, 31, '0'), 'alice' FROM generate_series(1000, {N_GROUPS}, 1000) i;"
    ))
    .await;
    let expected = db
        .query_strings("SELECT name FROM groups ORDER BY name")
        .await;
    assert_eq!(expected.len(), N_GROUPS + 1);
    let expected_joined = db
        .query_strings(
            "SELECT group_name FROM memberships WHERE user_name = 'alice' ORDER BY group_name",
        )
        .await;
    assert_eq!(expected_joined.len(), N_GROUPS / 1000 + 1);

    let answer = alice.ok("groups").await;
    assert_eq!(names(&answer["groups"]), expected);
    assert_eq!(names(&answer["joined"]), expected_joined);
    // Still the same connection: no reconnect, and it answers on.
    assert_eq!(alice.ok("whoami").await["server"], "s1");
    assert!(alice.take_events(|ev| ev["type"] == "connected").is_empty());

    // The admin socket answers with the whole list too.
    let listed: Vec<String> = server
        .admin("groups")
        .await
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, expected);
    let members = server.admin(&format!("users #g{:0>31}", 2000)).await;
    assert_eq!(members, "alice");
}

#[tokio::test]
async fn who_pages_through_the_users_of_every_server() {
    let farm = Farm::start(2).await;
    let mut names = farm.users_homed_on("s1", "here", 3);
    names.extend(farm.users_homed_on("s2", "there", 3));
    let mut clients = Vec::new();
    for name in &names {
        clients.push(farm.login_via("s1", name).await.0);
    }
    names.sort();
    let everyone: Vec<Value> = names
        .iter()
        .map(|name| Value::from(name.as_str()))
        .collect();
    // s1 learns of s2's logins over their link, a moment later.
    clients[0]
        .ok_until("who", |answer| {
            answer["users"].as_array() == Some(&everyone)
        })
        .await;

    // Two at a time, over the protocol: each page starts after the last name of the one before.
    let mut raw = RawConn::connect(&farm.server("s1").addr).await;
    raw.login(&names[0]).await;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let reply = raw.request(Request::Who { after, max: 2 }).await;
        let Ok(Response::Users { users, more }) = reply else {
            panic!("who answered {reply:?}");
        };
        assert!(users.len() <= 2);
        after = users.last().cloned();
        seen.extend(users);
        if !more {
            break;
        }
    }
    assert_eq!(seen, names);

    // A cursor that is not a name is refused, and the connection goes on.
    let bad = Request::Who {
        after: Some("not a name".into()),
        max: 2,
    };
    let refusal = raw.request(bad).await.unwrap_err();
    assert_eq!(refusal.code, ErrorCode::Invalid);
    assert!(refusal.message.contains("cursor"), "{refusal}");
    assert_eq!(raw.request(Request::Ping).await, Ok(Response::Pong));

    // The admin console lists them all, with where each one is.
    let active = farm.server("s1").admin("active-users").await;
    let lines: Vec<&str> = active.lines().collect();
    assert_eq!(lines.len(), names.len(), "{active}");
    for (line, name) in lines.iter().zip(&names) {
        let server = if name.starts_with("here") { "s1" } else { "s2" };
        assert!(
            line.starts_with(&format!("{name} server={server}")),
            "{line}"
        );
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|name| name.as_str().expect("a name").to_owned())
        .collect()
}
