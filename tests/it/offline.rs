use chat_proto::names::MAX_TEXT_LEN;
use chat_proto::{MessageId, Recipient, Request, Response, ServerFrame, MAX_LOG_BATCH};
use chat_tests::{Client, RawConn, Server, TestDb};

#[tokio::test]
async fn offline_messages_wait_for_readlog_then_are_gone() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    drop(Client::login(&server, "bob").await);
    let mut alice = Client::login(&server, "alice").await;
    alice.ok("join ops").await;
    let mut bob = Client::login(&server, "bob").await;
    bob.ok("join ops").await;
    bob.ok("logout").await;

    alice.ok("send bob first").await;
    alice.ok("send #ops second").await;
    alice.ok("send bob third").await;

    let login = bob.ok("login bob pw-bob").await;
    assert_eq!(login["waiting"], 3);
    let readlog = bob.ok("readlog").await;
    assert_eq!(readlog["count"], 3);
    let texts: Vec<_> = ["first", "second", "third"]
        .into_iter()
        .map(|text| bob.take_messages(text))
        .collect();
    for (messages, text) in texts.iter().zip(["first", "second", "third"]) {
        assert_eq!(messages.len(), 1, "{text}: {messages:?}");
        assert_eq!(messages[0]["offline"], true);
    }
    assert_eq!(texts[1][0]["group"], "ops");
    assert_eq!(bob.ok("readlog").await["count"], 0);
    let rows = db.query_strings("SELECT recipient FROM inbox").await;
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test]
async fn readlog_returns_oldest_first_across_batches() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut bob = Client::login(&server, "bob").await;
    bob.ok("logout").await;
    let mut alice = RawConn::connect(&server.addr).await;
    alice.login("alice").await;
    let n_messages = 250;
    for idx in 0..n_messages {
        send(&mut alice, MessageId::new(), "bob", &format!("m{idx}")).await;
    }
    bob.ok("login bob pw-bob").await;
    assert_eq!(bob.ok("readlog").await["count"], n_messages);
    for idx in 0..n_messages {
        let message = bob.event(|ev| ev["type"] == "message").await;
        assert_eq!(message["text"], format!("m{idx}"));
    }
}

/// The largest reply there is, a full `readlog` batch of the longest messages, arrives whole,
/// and the connection goes on working after it.
#[tokio::test]
async fn a_full_batch_of_the_longest_messages_arrives_whole() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    drop(Client::login(&server, "bob").await);
    let mut alice = RawConn::connect(&server.addr).await;
    alice.login("alice").await;
    let texts: Vec<String> = (0..MAX_LOG_BATCH)
        .map(|idx| format!("{idx:04}{}", "x".repeat(MAX_TEXT_LEN - 4)))
        .collect();
    for text in &texts {
        send(&mut alice, MessageId::new(), "bob", text).await;
    }

    let mut bob = RawConn::connect(&server.addr).await;
    bob.login("bob").await;
    let log = bob.request(Request::ReadLog { max: MAX_LOG_BATCH }).await;
    let Ok(Response::Log { messages, more }) = log else {
        panic!("no log: {log:?}");
    };
    assert!(!more);
    let got: Vec<String> = messages.into_iter().map(|message| message.text).collect();
    assert!(got == texts, "{} messages, not the ones sent", got.len());
    let whoami = bob.request(Request::WhoAmI).await;
    assert!(matches!(whoami, Ok(Response::WhoAmI { .. })), "{whoami:?}");
}

#[tokio::test]
async fn a_retried_send_is_stored_and_shown_once() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    drop(Client::login(&server, "bob").await);
    let mut alice = RawConn::connect(&server.addr).await;
    alice.login("alice").await;
    let id = MessageId::new();
    send(&mut alice, id, "bob", "only once").await;
    send(&mut alice, id, "bob", "only once").await;

    let mut bob = Client::login(&server, "bob").await;
    assert_eq!(bob.ok("readlog").await["count"], 1);
    assert_eq!(bob.take_messages("only once").len(), 1);
}

#[tokio::test]
async fn a_readlog_cut_short_loses_nothing() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    drop(Client::login(&server, "bob").await);
    let mut alice = Client::login(&server, "alice").await;
    for text in ["one", "two", "three"] {
        alice.ok(&format!("send bob {text}")).await;
    }

    // A client that reads the log and dies before confirming.
    let mut reader = RawConn::connect(&server.addr).await;
    reader.login("bob").await;
    let log = reader.request(Request::ReadLog { max: 100 }).await;
    assert!(matches!(&log, Ok(Response::Log { messages, more: false }) if messages.len() == 3));
    drop(reader);

    // A real client killed in the middle of its readlog.
    let mut killed = Client::login(&server, "bob").await;
    killed.type_line("readlog").await;
    killed.kill().await;

    let mut bob = Client::login(&server, "bob").await;
    let readlog = bob.ok("readlog").await;
    let seen: usize = ["one", "two", "three"]
        .iter()
        .map(|text| bob.take_messages(text).len())
        .sum();
    assert_eq!(seen, readlog["count"].as_u64().unwrap() as usize);
    // The killed client may have confirmed before it died, but nothing is lost: whatever it did
    // not confirm is here now.
    let rows = db.query_strings("SELECT body FROM inbox").await;
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test]
async fn a_message_for_a_client_that_never_acks_is_stored() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    drop(Client::login(&server, "bob").await);
    let mut silent_bob = RawConn::connect(&server.addr).await;
    silent_bob.login("bob").await;
    let mut alice = Client::login(&server, "alice").await;
    alice.ok("send bob are you there").await;
    assert!(matches!(
        silent_bob.next_frame().await,
        ServerFrame::Deliver(_)
    ));
    drop(silent_bob);

    let mut bob = Client::login(&server, "bob").await;
    assert_eq!(bob.ok("readlog").await["count"], 1);
    bob.message("are you there").await;
}

async fn send(conn: &mut RawConn, id: MessageId, to: &str, text: &str) {
    let reply = conn
        .request(Request::Send {
            id,
            to: Recipient::User(to.into()),
            text: text.into(),
        })
        .await;
    assert_eq!(reply, Ok(Response::Sent { id }));
}
