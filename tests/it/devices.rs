//! Several devices, one conversation: what a user sends from one session, their other
//! sessions show as an echo, on the same server or another; never on the sending device, and
//! never as a delivery that is acknowledged or stored.

use chat_proto::{ClientFrame, MessageId, Recipient, Request, Response, ServerFrame};
use chat_tests::{Client, Farm, RawConn, Server, TestDb, EVENT_TIMEOUT};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Waits for the echo of the message `id` with `text`, and checks what it says.
async fn echo_of(client: &mut Client, id: &Value, text: &str) -> Value {
    let echo = client.message(text).await;
    assert_eq!(echo["echo"], true, "{echo}");
    assert_eq!(echo["id"], *id, "{echo}");
    echo
}

/// The recipients of the inbox rows of the message `id`, in order.
async fn inbox_rows(db: &TestDb, id: &Value) -> Vec<String> {
    let id = id.as_str().expect("an id is a string");
    db.query_strings(&format!(
        "SELECT recipient FROM inbox WHERE msg_id = '{id}'::uuid ORDER BY recipient"
    ))
    .await
}

#[tokio::test]
async fn a_second_device_on_the_same_server_sees_what_the_first_sent() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &["--ack-deadline-ms", "200"]).await;
    let mut laptop = Client::login(&server, "alice").await;
    let mut phone = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    for member in [&mut laptop, &mut bob] {
        member.ok("join #ops").await;
    }

    // A direct message: bob gets it, the phone its echo, the laptop nothing more.
    let sent = laptop.ok("send bob hi from the laptop").await;
    let echo = echo_of(&mut phone, &sent["id"], "hi from the laptop").await;
    assert_eq!(
        (&echo["from"], &echo["to"]),
        (&"alice".into(), &"bob".into())
    );
    let message = bob.message("hi from the laptop").await;
    assert!(message.get("echo").is_none(), "{message}");
    // The echo would have been queued before the answer: it would be here by now.
    assert!(laptop.take_messages("hi from the laptop").is_empty());

    // A group message, from the phone this time.
    let sent = phone.ok("send #ops hi from the phone").await;
    let echo = echo_of(&mut laptop, &sent["id"], "hi from the phone").await;
    assert_eq!(echo["group"], "ops");
    assert!(echo.get("to").is_none(), "{echo}");
    assert!(bob.message("hi from the phone").await.get("echo").is_none());
    assert!(phone.take_messages("hi from the phone").is_empty());

    // Bob stops reading: his copies are stored at the ack deadline, and only then is the
    // sender told "sent". The echoes, never acknowledged, cost no row.
    bob.freeze();
    let sent = laptop.ok("send bob while bob sleeps").await;
    echo_of(&mut phone, &sent["id"], "while bob sleeps").await;
    assert_eq!(inbox_rows(&db, &sent["id"]).await, ["bob"]);
    let sent = laptop.ok("send #ops the group while bob sleeps").await;
    echo_of(&mut phone, &sent["id"], "the group while bob sleeps").await;
    assert_eq!(inbox_rows(&db, &sent["id"]).await, ["bob"]);
    let alice_rows = db
        .query_strings("SELECT recipient FROM inbox WHERE recipient = 'alice'")
        .await;
    assert!(alice_rows.is_empty(), "{alice_rows:?}");
}

#[tokio::test]
async fn the_server_echoes_to_every_session_but_the_sending_one() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut phone = Client::login(&server, "alice").await;
    drop(Client::login(&server, "bob").await);
    let mut sender = RawConn::connect(&server.addr).await;
    sender.login("alice").await;

    let id = MessageId::new();
    let request = Request::Send {
        id,
        to: Recipient::User("bob".into()),
        text: "from the raw session".into(),
    };
    sender
        .send_frame(ClientFrame::Request {
            id: 7,
            body: request,
        })
        .await;
    // Everything the sending session gets up to its answer: no echo among it.
    loop {
        match sender.next_frame().await {
            ServerFrame::Reply { id: 7, result } => {
                assert_eq!(result, Ok(Response::Sent { id }));
                break;
            }
            ServerFrame::Echo(message) => panic!("the sending session got its echo: {message:?}"),
            _ => {}
        }
    }
    let echo = phone.message("from the raw session").await;
    assert_eq!(echo["echo"], true);
    assert_eq!(echo["id"], id.to_string());
}

/// Waits until `server` knows that `user` is logged in on `elsewhere` too.
async fn wait_for_presence(farm: &Farm, server: &str, user: &str, elsewhere: &str) {
    let line = format!("{user} server={elsewhere}");
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let active = farm.server(server).admin("active-users").await;
        if active.lines().any(|known| known == line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{server} does not see {line}: {active}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_second_device_on_another_server_sees_what_the_first_sent() {
    // One connection per server: the second device finds its home full and is served by the
    // backup, as during a failover, so the user's two sessions sit on two servers.
    let farm = Farm::start_with(3, &["--max-connections", "1"]).await;
    let ring = farm.ring();
    let alice = (0..)
        .map(|idx| format!("dev{idx}"))
        .find(|user| ring.home(user) == Some("s1") && ring.backup(user) == Some("s2"))
        .expect("a user homed on s1 with s2 as backup");
    let bob = farm.users_homed_on("s3", "peer", 1).remove(0);
    let mut laptop = Client::login(farm.server("s1"), &alice).await;
    let mut bob_client = Client::login(farm.server("s3"), &bob).await;
    let mut phone = Client::spawn_trusting(&[&farm.server("s2").addr], &[]);
    phone
        .event(|ev| ev["type"] == "connected" && ev["server"] == "s2")
        .await;
    phone.ok(&format!("login {alice} pw-{alice}")).await;
    assert_eq!(phone.ok("whoami").await["server"], "s2");
    wait_for_presence(&farm, "s1", &alice, "s2").await;
    wait_for_presence(&farm, "s2", &alice, "s1").await;
    farm.wait_online(&[&bob]).await;
    laptop.ok("join #crew").await;
    bob_client.ok("join #crew").await;

    // From s1, a direct message: the echo crosses to s2.
    let sent = laptop.ok(&format!("send {bob} hi from s1")).await;
    let echo = echo_of(&mut phone, &sent["id"], "hi from s1").await;
    assert_eq!(echo["to"], bob.as_str());
    bob_client.message("hi from s1").await;
    assert!(laptop.take_messages("hi from s1").is_empty());

    // From s2, a group message: the echo crosses to s1.
    let sent = phone.ok("send #crew hi from s2").await;
    let echo = echo_of(&mut laptop, &sent["id"], "hi from s2").await;
    assert_eq!(echo["group"], "crew");
    assert!(bob_client.message("hi from s2").await.get("echo").is_none());
    assert!(phone.take_messages("hi from s2").is_empty());

    // A direct message from s2 too, and no echo ever became an inbox row.
    let sent = phone.ok(&format!("send {bob} and a dm from s2")).await;
    echo_of(&mut laptop, &sent["id"], "and a dm from s2").await;
    bob_client.message("and a dm from s2").await;
    let alice_rows = farm
        .db
        .query_strings(&format!(
            "SELECT recipient FROM inbox WHERE recipient = '{alice}'"
        ))
        .await;
    assert!(alice_rows.is_empty(), "{alice_rows:?}");
}
