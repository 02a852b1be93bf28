use chat_tests::{Client, Server, TestDb};

#[tokio::test]
async fn direct_message_reaches_every_session_of_the_recipient() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let mut bob_phone = Client::login(&server, "bob").await;

    let sent = alice.ok("send bob hello  there, bob").await;
    let id = sent["id"].as_str().expect("send answers with the id");
    for session in [&mut bob, &mut bob_phone] {
        let message = session.message("hello  there, bob").await;
        assert_eq!(message["id"], id);
        assert_eq!(message["from"], "alice");
        assert_eq!(message["to"], "bob");
        assert!(message.get("offline").is_none(), "{message}");
    }
}

#[tokio::test]
async fn group_message_reaches_every_member_but_the_sender() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let mut carol = Client::login(&server, "carol").await;
    let mut dave = Client::login(&server, "dave").await;
    for member in [&mut alice, &mut bob, &mut carol] {
        member.ok("join #ops").await;
    }

    let groups = dave.ok("groups").await;
    assert_eq!(groups["groups"], serde_json::json!(["ops"]));
    assert_eq!(groups["joined"], serde_json::json!([]));

    alice.ok("send #ops deploy at noon").await;
    for member in [&mut bob, &mut carol] {
        let message = member.message("deploy at noon").await;
        assert_eq!(message["group"], "ops");
        assert_eq!(message["from"], "alice");
        assert!(message.get("to").is_none(), "{message}");
    }

    // Dave is not a member: he may not send, and he received nothing.
    let error = dave.error("send #ops let me in").await;
    assert_eq!(error, "you are not a member of #ops; join it first");
    assert_eq!(dave.error("send #nope hi").await, "no such group: #nope");
    bob.ok("leave ops").await;
    alice.ok("send #ops bob has left").await;
    carol.message("bob has left").await;
    alice.ok("send bob sync").await;
    bob.message("sync").await;
    assert!(bob.take_messages("bob has left").is_empty());
    assert!(dave.take_messages("deploy at noon").is_empty());
}

#[tokio::test]
async fn a_message_to_an_unknown_user_is_refused() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut alice = Client::login(&server, "alice").await;
    assert_eq!(alice.error("send nobody hi").await, "no such user: nobody");
}
