use chat_tests::{Client, Server, TestDb};

#[tokio::test]
async fn login_registers_a_new_name_then_checks_its_password() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;

    let mut first = Client::connect(&server).await;
    let answer = first.ok("login alice secret").await;
    assert_eq!(answer["user"], "alice");
    assert_eq!(answer["registered"], true);
    assert_eq!(answer["waiting"], 0);

    let mut second = Client::connect(&server).await;
    let error = second.error("login alice wrong").await;
    assert_eq!(error, "wrong password for alice");
    let answer = second.ok("login alice secret").await;
    assert_eq!(answer["registered"], false);

    let hashes = db
        .query_strings("SELECT password_hash FROM users WHERE name = 'alice'")
        .await;
    assert_eq!(hashes.len(), 1);
    assert!(hashes[0].starts_with("$argon2id$"), "{}", hashes[0]);
    assert!(!hashes[0].contains("secret"));
}

#[tokio::test]
async fn commands_need_a_login_and_logout_ends_it() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut client = Client::connect(&server).await;
    assert_eq!(client.error("who").await, "log in first");

    client.ok("login alice pw").await;
    let me = client.ok("whoami").await;
    assert_eq!(me["user"], "alice");
    assert_eq!(me["server"], "s1");
    assert!(client
        .error("login bob pw")
        .await
        .contains("already logged in as alice"));

    client.ok("logout").await;
    assert_eq!(client.error("whoami").await, "log in first");
    client.ok("login bob pw").await;
    assert_eq!(client.ok("whoami").await["user"], "bob");
}

#[tokio::test]
async fn who_lists_each_logged_in_user_once() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut alice = Client::login(&server, "alice").await;
    let _alice_again = Client::login(&server, "alice").await;
    let _bob = Client::login(&server, "bob").await;
    let who = alice.ok("who").await;
    assert_eq!(who["users"], serde_json::json!(["alice", "bob"]));
}
