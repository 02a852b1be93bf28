use chat_proto::ServerFrame;
use chat_tests::{Client, RawConn, Server, TestDb};

#[tokio::test]
async fn console_answers_admin_commands() {
    let db = TestDb::new().await;
    let mut server = Server::start(&db, "s1").await;
    let mut alice = Client::login(&server, "alice").await;
    alice.ok("join ops").await;

    assert_eq!(
        server.console_line("active-users").await,
        "alice server=s1 sessions=1"
    );
    assert_eq!(server.console_line("users").await, "alice");
    assert_eq!(server.console_line("users #ops").await, "alice");
    assert_eq!(
        server.console_line("users nope").await,
        "error: no such group: #nope"
    );
    assert_eq!(server.console_line("groups").await, "ops");
    assert_eq!(
        server.console_line("frobnicate").await,
        "error: unknown command: frobnicate (try help)"
    );
    let threads = server.console_line("thread-count").await;
    assert!(threads.starts_with("os_threads="), "{threads}");
    assert!(threads.contains(" tokio_tasks="), "{threads}");
}

#[tokio::test]
async fn sigterm_stores_pending_messages_and_marks_the_server_gone() {
    let db = TestDb::new().await;
    // Nothing is written for an online recipient before a minute has passed, unless the server
    // shuts down.
    let server = Server::start_with(&db, "s1", &["--ack-deadline-ms", "60000"]).await;
    drop(Client::login(&server, "bob").await);
    let mut silent_bob = RawConn::connect(&server.addr).await;
    silent_bob.login("bob").await;
    let mut alice = Client::login(&server, "alice").await;
    alice.type_line("send bob in flight").await;
    // Bob's session got it, so it is pending; he never acknowledges it.
    assert!(matches!(
        silent_bob.next_frame().await,
        ServerFrame::Deliver(_)
    ));

    let stopping = tokio::spawn(server.stop());
    // The shutdown stores the message and then tells alice it is sent.
    let sent = alice
        .event(|ev| ev["type"] == "ok" && ev["command"] == "send")
        .await;
    assert!(sent["id"].is_string());
    stopping.await.unwrap();
    assert_eq!(
        db.query_strings("SELECT body FROM inbox WHERE recipient = 'bob'")
            .await,
        ["in flight"]
    );
    assert_eq!(
        db.query_strings("SELECT alive::text FROM server_info WHERE name = 's1'")
            .await,
        ["false"]
    );

    let server = Server::start(&db, "s1").await;
    assert_eq!(
        db.query_strings("SELECT alive::text FROM server_info WHERE name = 's1'")
            .await,
        ["true"]
    );
    let mut bob = Client::login(&server, "bob").await;
    assert_eq!(bob.ok("readlog").await["count"], 1);
    bob.message("in flight").await;
}
