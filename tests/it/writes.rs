//! What reaches the inbox table: only messages that their recipients have not acknowledged.
//!
//! A trigger of the test's own counts every row inserted into `inbox`, whether or not it is
//! deleted later, so a message written and then removed when its ack came is seen too.

use chat_tests::{Client, Farm};
use serde_json::Value;

/// Records the recipient of every row inserted into `inbox`.
const COUNT_INSERTS: &str = "
    CREATE TABLE inbox_inserts (recipient text NOT NULL);
    CREATE FUNCTION record_inbox_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO inbox_inserts VALUES (NEW.recipient); RETURN NULL; END $$;
    CREATE TRIGGER record_inbox_insert AFTER INSERT ON inbox
        FOR EACH ROW EXECUTE FUNCTION record_inbox_insert();
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
