//! Limits that keep one client from hurting the others: connections, request floods, and
//! password guessing.

use chat_proto::{ClientFrame, ErrorCode, Hello, Request, ServerFrame};
use chat_tests::{Client, RawConn, Server, TestDb, EVENT_TIMEOUT};

/// The server's answer to a hello on a new connection.
async fn hello_answer(server: &Server) -> Hello {
    chat_tests::hello_answer(&server.addr, Hello::new("")).await
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_with_a_reason() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &["--max-connections", "2"]).await;
    let mut alice = Client::login(&server, "alice").await;
    let first = RawConn::connect(&server.addr).await;
    assert_eq!(
        hello_answer(&server).await.refusal,
        "this server has too many connections; try another server or again later"
    );
    // A connection that closes gives its place back.
    drop(first);
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !hello_answer(&server).await.refusal.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was not freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(alice.ok("whoami").await["user"], "alice");
}

#[tokio::test]
async fn a_flood_is_told_to_slow_down_then_cut_off_and_others_keep_chatting() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &["--max-frames-per-sec", "50"]).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;

    let mut flooder = RawConn::connect(&server.addr).await;
    flooder.login("mallory").await;
    let pings = (1..=5000)
        .map(|id| ClientFrame::Request {
            id,
            body: Request::Ping,
        })
        .collect();
    let (mut too_fast, mut closing) = (0, None);
    for frame in flooder.flood(pings).await {
        match frame {
            ServerFrame::Reply {
                result: Err(err), ..
            } => {
                assert_eq!(err.code, ErrorCode::TooFast, "{err}");
                assert_eq!(
                    err.message,
                    "too many requests: at most 50 a second; slow down"
                );
                too_fast += 1;
            }
            ServerFrame::Closing { reason } => {
                closing = Some(reason);
                break;
            }
            _ => {}
        }
    }
    assert!(too_fast > 0, "the flooder was never told to slow down");
    // The goodbye says why, unless the flooder's unread pings made the close a reset.
    if let Some(reason) = closing {
        assert_eq!(reason, "flooding: more than twice 50 frames a second");
    }

    alice.ok("send bob still here").await;
    bob.message("still here").await;
}

#[tokio::test]
async fn password_guessing_meets_growing_delays() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut carol = Client::login(&server, "carol").await;
    carol.ok("quit").await;

    let mut guesser = Client::connect(&server).await;
    for guess in 1..=4 {
        let error = guesser.error(&format!("login carol guess{guess}")).await;
        assert_eq!(error, "wrong password for carol");
    }
    // Even the right password waits now.
    let error = guesser.error("login carol pw-carol").await;
    assert_eq!(error, "too many failed logins for carol; try again in 1 s");
    // Nobody else is held up.
    let mut dave = Client::login(&server, "dave").await;
    assert_eq!(dave.ok("whoami").await["user"], "dave");
    // After the delay, the right password works.
    guesser
        .ok_until("login carol pw-carol", |answer| answer["user"] == "carol")
        .await;
}
