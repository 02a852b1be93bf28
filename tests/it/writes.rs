//! What reaches the inbox table: only messages that their recipients have not acknowledged,
//! and deletes only for the rows that were written.
//!
//! A trigger of the test's own counts every row inserted into `inbox`, whether or not it is
//! deleted later, so a message written and then removed when its ack came is seen too; another
//! counts every `DELETE` statement on it, whether or not it finds a row.

use chat_proto::{ClientFrame, MessageId, Request, Response, ServerFrame, MAX_ACK_IDS};
use chat_tests::{Client, Farm, RawConn, Server, TestDb, EVENT_TIMEOUT};
use serde_json::Value;
use std::time::Duration;

/// Records the recipient of every row inserted into `inbox`.
const COUNT_INSERTS: &str = "
    CREATE TABLE inbox_inserts (recipient text NOT NULL);
    CREATE FUNCTION record_inbox_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO inbox_inserts VALUES (NEW.recipient); RETURN NULL; END $$;
    CREATE TRIGGER record_inbox_insert AFTER INSERT ON inbox
        FOR EACH ROW EXECUTE FUNCTION record_inbox_insert();
";

/// Counts every `DELETE` statement on `inbox`, whether or not it removes a row.
const COUNT_DELETES: &str = "
    CREATE TABLE inbox_deletes (at timestamptz NOT NULL DEFAULT now());
    CREATE FUNCTION record_inbox_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO inbox_deletes DEFAULT VALUES; RETURN NULL; END $$;
    CREATE TRIGGER record_inbox_delete AFTER DELETE ON inbox
        FOR EACH STATEMENT EXECUTE FUNCTION record_inbox_delete();
";

#[tokio::test]
async fn live_chat_across_servers_writes_nothing_and_a_message_for_someone_away_is_stored_at_once()
{
    // With a minute's ack deadline, a row for an online recipient could only come from a
    // message that was written without waiting for its ack, and a message for someone away
    // that waited for the deadline would time the test out.
    let farm = Farm::start_with(3, &["--ack-deadline-ms", "60000"]).await;
    farm.db.execute(COUNT_INSERTS).await;
    let away = Client::login(farm.server("s1"), "away").await;
    drop(away);

    // Two users on each server; each writes to the next one, who lives on another server.
    let mut names = Vec::new();
    for server in ["s1", "s2", "s3"] {
        names.extend(farm.users_homed_on(server, &format!("{server}u"), 2));
    }
    let order = [0, 2, 4, 1, 3, 5];
    let mut clients = Vec::new();
    for name in &names {
        let (mut client, _) = farm.login_via("s1", name).await;
        client.ok("join #everyone").await;
        clients.push(client);
    }
    // Every server must know where everyone is, or it would take them for away.
    for client in &mut clients {
        client
            .ok_until("who", |answer| {
                names.iter().all(|name| listed(&answer["users"], name))
            })
            .await;
    }

    for round in 0..10 {
        for (pos, &idx) in order.iter().enumerate() {
            let partner = &names[order[(pos + 1) % order.len()]];
            clients[idx]
                .ok(&format!("send {partner} dm {round} from {}", names[idx]))
                .await;
        }
        clients[round % names.len()]
            .ok(&format!("send #everyone group {round}"))
            .await;
    }
    for (pos, &idx) in order.iter().enumerate() {
        let sender = &names[order[(pos + order.len() - 1) % order.len()]];
        for round in 0..10 {
            clients[idx]
                .message(&format!("dm {round} from {sender}"))
                .await;
        }
    }
    for round in 0..10 {
        for (idx, client) in clients.iter_mut().enumerate() {
            if idx != round % names.len() {
                client.message(&format!("group {round}")).await;
            }
        }
    }
    assert_eq!(inserted(&farm).await, Vec::<String>::new());

    // Someone logged in nowhere is written at once, well before the deadline.
    clients[0].ok("send away are you there").await;
    assert_eq!(inserted(&farm).await, ["away"]);
    assert_eq!(
        farm.db
            .query_strings("SELECT body FROM inbox WHERE recipient = 'away'")
            .await,
        ["are you there"]
    );
}

#[tokio::test]
async fn acks_of_ids_never_written_cost_no_delete_and_honest_chat_goes_on() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &["--ack-deadline-ms", "300"]).await;
    db.execute(COUNT_DELETES).await;
    drop(Client::login(&server, "carol").await);
    let mut bob = Client::login(&server, "bob").await;
    let mut mallory = RawConn::connect(&server.addr).await;
    mallory.login("mallory").await;
    let mut alice = Client::login(&server, "alice").await;
    // Mallory never acknowledges this one: it is stored once its deadline passes, and alice is
    // told "sent" then.
    alice.ok("send mallory kept for you").await;
    let ServerFrame::Deliver(kept) = mallory.next_frame().await else {
        panic!("mallory was not delivered the message");
    };

    // 100,352 made-up ids, in Acks as large as the protocol allows.
    for _ in 0..98 {
        let ids = (0..MAX_ACK_IDS).map(|_| MessageId::new()).collect();
        mallory.send_frame(ClientFrame::Ack { ids }).await;
    }
    // The server has handled every Ack before it answers this.
    assert_eq!(mallory.request(Request::Ping).await, Ok(Response::Pong));
    alice.ok("send bob still chatting").await;
    bob.message("still chatting").await;
    // A message for carol, away, is committed in a batch taken after those acks were handled:
    // any delete they had queued would have been written with it, or before it.
    alice.ok("send carol for later").await;
    assert_eq!(n_deletes(&db).await, 0);

    // The one id whose row was written costs the one delete.
    mallory
        .send_frame(ClientFrame::Ack { ids: vec![kept.id] })
        .await;
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !db
        .query_strings("SELECT body FROM inbox WHERE recipient = 'mallory'")
        .await
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "the row stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n_deletes(&db).await, 1);
}

#[tokio::test]
async fn an_ack_past_the_bound_closes_the_connection_with_a_reason() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut mallory = RawConn::connect(&server.addr).await;
    mallory.login("mallory").await;
    let ids = (0..=MAX_ACK_IDS).map(|_| MessageId::new()).collect();
    mallory.send_frame(ClientFrame::Ack { ids }).await;
    let mut reason = None;
    while let Some(frame) = mallory.try_next_frame().await {
        if let ServerFrame::Closing { reason: said } = frame {
            reason = Some(said);
        }
    }
    let reason = reason.expect("a Closing frame before the connection ends");
    assert!(reason.contains("at most 1024 ids"), "{reason}");
    // Others are served as before.
    let mut alice = Client::login(&server, "alice").await;
    alice.ok("whoami").await;
}

async fn n_deletes(db: &TestDb) -> usize {
    db.query_strings("SELECT count(*)::text FROM inbox_deletes")
        .await
        .concat()
        .parse()
        .expect("a count")
}

fn listed(users: &Value, name: &str) -> bool {
    users
        .as_array()
        .is_some_and(|users| users.iter().any(|user| user == name))
}

async fn inserted(farm: &Farm) -> Vec<String> {
    farm.db
        .query_strings("SELECT recipient FROM inbox_inserts ORDER BY recipient")
        .await
}
