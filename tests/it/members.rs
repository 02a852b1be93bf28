//! Who is in a group: `members`, paged like the other lists and only for members; and the
//! notices of joins and leaves, which reach the members online on every server, and nobody
//! else.

use crate::groups::one_user_per_server;
use chat_proto::{ErrorCode, Request, Response};
use chat_tests::{Client, Farm, RawConn, Server, TestDb};
use serde_json::{json, Value};

/// How many members the large group has: more than two pages of `MAX_PAGE`.
const N_MEMBERS: usize = 2500;

#[tokio::test]
async fn members_lists_a_group_page_by_page_and_only_to_its_members() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let mut carol = Client::login(&server, "carol").await;
    let mut dave = Client::login(&server, "dave").await;
    for member in [&mut alice, &mut bob, &mut carol] {
        member.ok("join #crew").await;
    }

    let answer = bob.ok("members #crew").await;
    assert_eq!(answer["group"], "crew");
    assert_eq!(answer["users"], json!(["alice", "bob", "carol"]));
    assert_eq!(
        dave.error("members #crew").await,
        "you are not a member of #crew"
    );
    assert_eq!(dave.error("members #nope").await, "no such group: #nope");
    carol.ok("leave crew").await;
    let answer = alice.ok("members crew").await;
    assert_eq!(answer["users"], json!(["alice", "bob"]));
    assert_eq!(
        carol.error("members #crew").await,
        "you are not a member of #crew"
    );

    // Over the protocol, two at a time: each page starts after the last name of the one before.
    let mut raw = RawConn::connect(&server.addr).await;
    raw.login("alice").await;
    let page = |after: Option<&str>| Request::Members {
        group: "crew".into(),
        after: after.map(str::to_owned),
        max: 1,
    };
    let first = raw.request(page(None)).await;
    assert_eq!(
        first,
        Ok(Response::Users {
            users: vec!["alice".into()],
            more: true
        })
    );
    let second = raw.request(page(Some("alice"))).await;
    assert_eq!(
        second,
        Ok(Response::Users {
            users: vec!["bob".into()],
            more: false
        })
    );
    let bad = raw.request(page(Some("not a name"))).await.unwrap_err();
    assert_eq!(bad.code, ErrorCode::Invalid);
    assert!(bad.message.contains("cursor"), "{bad}");

    // A group larger than a page arrives whole. Made in the database at once, before any
    // server read it.
    db.execute(&format!(
        "INSERT INTO users (name, password_hash) \
             SELECT 'm' || lpad(i::text, 5, '0'), 'none' FROM generate_series(1, {N_MEMBERS}) i;
         INSERT INTO groups (name, created_by) VALUES ('big', 'alice');
         INSERT INTO memberships (group_name, user_name) \
             SELECT 'big', 'm' || lpad(i::text, 5, '0') FROM generate_series(1, {N_MEMBERS}) i;
         INSERT INTO memberships (group_name, user_name) VALUES ('big', 'alice');"
    ))
    .await;
    let mut expected = db
        .query_strings("SELECT user_name FROM memberships WHERE group_name = 'big'")
        .await;
    expected.sort();
    assert_eq!(expected.len(), N_MEMBERS + 1);
    let answer = alice.ok("members #big").await;
    let listed: Vec<&str> = answer["users"]
        .as_array()
        .expect("a list of users")
        .iter()
        .map(|user| user.as_str().expect("a name"))
        .collect();
    assert_eq!(listed, expected);
}

fn notice(kind: &str, group: &str, user: &str) -> Value {
    json!({"type": kind, "group": group, "user": user})
}

/// Takes every join and leave notice `client` has shown so far.
fn notices(client: &mut Client) -> Vec<Value> {
    let mut taken = client.take_events(|ev| ev["type"] == "joined" || ev["type"] == "left");
    for event in &mut taken {
        event.as_object_mut().expect("an object").remove("_at_ms");
    }
    taken
}

/// Waits for the next join or leave notice of `client`.
async fn next_notice(client: &mut Client) -> Value {
    let mut event = client
        .event(|ev| ev["type"] == "joined" || ev["type"] == "left")
        .await;
    event.as_object_mut().expect("an object").remove("_at_ms");
    event
}

#[tokio::test]
async fn joins_and_leaves_are_told_to_the_members_online_on_every_server() {
    let farm = Farm::start(3).await;
    let mut users = one_user_per_server(&farm, "note").await;
    let (mut dave_client, _) = farm.login_via("s2", "outsider").await;
    let mut everyone: Vec<String> = users.iter().map(|(user, _)| user.clone()).collect();
    everyone.push("outsider".into());
    everyone.sort();
    // Each server knows who is logged in on the others (a link's latency after each login).
    for (_, client) in users.iter_mut() {
        client
            .ok_until("who", |answer| answer["users"] == json!(everyone))
            .await;
    }
    let [(ann, ann_client), (bob, bob_client), (cat, cat_client)] = &mut users[..] else {
        unreachable!("three users");
    };

    bob_client.ok("join #crew").await;
    cat_client.ok("join #crew").await;
    // Bob, on s2, hears of cat's join on s3.
    assert_eq!(next_notice(bob_client).await, notice("joined", "crew", cat));

    // Ann joins on s1: both members hear of it, each on their own server.
    ann_client.ok("join #crew").await;
    for member in [&mut *bob_client, &mut *cat_client] {
        assert_eq!(next_notice(member).await, notice("joined", "crew", ann));
    }
    // Joining again changes nothing, and tells nobody.
    cat_client.ok("join #crew").await;

    // Ann leaves: the two who stay hear of it.
    ann_client.ok("leave #crew").await;
    for member in [&mut *bob_client, &mut *cat_client] {
        assert_eq!(next_notice(member).await, notice("left", "crew", ann));
    }

    // A link keeps its frames in order: once these reach bob and dave, anything ann's and
    // cat's servers told them before has arrived.
    for (from, to) in [
        (&mut *ann_client, "outsider"),
        (&mut *cat_client, bob.as_str()),
    ] {
        from.ok(&format!("send {to} sync")).await;
    }
    dave_client.message("sync").await;
    bob_client.message("sync").await;
    assert!(notices(&mut dave_client).is_empty(), "not a member");
    assert!(notices(bob_client).is_empty(), "told once of each change");
    // Nobody is told of their own joins and leaves, nor of the joins before theirs.
    assert!(notices(ann_client).is_empty());
    assert!(notices(cat_client).is_empty());
}
