//! Limits that keep one client from hurting the others: connections, request floods,
//! password guessing, registrations, and logins waiting for their hash.

use chat_proto::{
    ClientFrame, ErrorCode, ErrorReply, Forwarded, Hello, Request, Response, ServerFrame,
};
use chat_tests::{Client, RawConn, Server, TestDb, EVENT_TIMEOUT};

/// The server's answer to a hello on a new connection.
async fn hello_answer(server: &Server) -> Hello {
    chat_tests::hello_answer(&server.addr, Hello::new("")).await
}

/// Waits until a new connection is welcome again, as one that closed gives its place back.
async fn place_freed(server: &Server) {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !hello_answer(server).await.refusal.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was not freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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
    place_freed(&server).await;
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

/// A login request for `user`.
fn login(user: &str, password: &str) -> Request {
    Request::password_login(user, password)
}

/// Waits for the reply to request `id` on `conn`, skipping other frames.
async fn reply_to(conn: &mut RawConn, id: u32) -> Result<Response, ErrorReply> {
    loop {
        if let ServerFrame::Reply { id: got, result } = conn.next_frame().await {
            if got == id {
                return result;
            }
        }
    }
}

#[tokio::test]
async fn a_login_waiting_for_its_hash_still_answers_pings() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &["--hash-threads", "1"]).await;
    // Forty registrations at once fill the one hashing thread's queue...
    let mut storm = Vec::new();
    for i in 0..40 {
        let mut conn = RawConn::connect(&server.addr).await;
        conn.send_frame(ClientFrame::Request {
            id: 1,
            body: login(&format!("storm{i}"), "pw"),
        })
        .await;
        storm.push(conn);
    }
    // ...so this login waits behind them, and its session answers a ping meanwhile.
    let mut probe = RawConn::connect(&server.addr).await;
    probe
        .send_frame(ClientFrame::Request {
            id: 1,
            body: login("probe", "pw"),
        })
        .await;
    probe
        .send_frame(ClientFrame::Request {
            id: 2,
            body: Request::Ping,
        })
        .await;
    let ServerFrame::Reply { id, result } = probe.next_frame().await else {
        panic!("not a reply");
    };
    assert_eq!(
        (id, result),
        (2, Ok(Response::Pong)),
        "the ping waited for the login"
    );
    let logged_in = reply_to(&mut probe, 1).await;
    assert!(
        matches!(logged_in, Ok(Response::LoggedIn { .. })),
        "{logged_in:?}"
    );
    // The session goes on in order: it is logged in now.
    assert!(probe.request(Request::WhoAmI).await.is_ok());
    for conn in &mut storm {
        let result = reply_to(conn, 1).await;
        assert!(
            matches!(result, Ok(Response::LoggedIn { .. })),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn wrong_passwords_sent_at_once_are_checked_no_faster_than_one_by_one() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut carol = RawConn::connect(&server.addr).await;
    carol.login("carol").await;
    drop(carol);
    let mut guessers = Vec::new();
    for _ in 0..60 {
        guessers.push(RawConn::connect(&server.addr).await);
    }
    let guesses = guessers
        .iter_mut()
        .enumerate()
        .map(|(i, conn)| conn.request(login("carol", &format!("guess{i}"))));
    let replies = futures::future::join_all(guesses).await;
    let codes: Vec<ErrorCode> = replies
        .into_iter()
        .map(|reply| reply.expect_err("a guess logged in").code)
        .collect();
    let checked = codes
        .iter()
        .filter(|code| **code == ErrorCode::WrongPassword)
        .count();
    // Three failures are free for a name, and a fourth sets the first delay: one guess after
    // another would have had as many checked. The others were refused before any hash.
    assert!((3..=4).contains(&checked), "{checked} checked: {codes:?}");
    assert!(codes
        .iter()
        .all(|code| matches!(code, ErrorCode::WrongPassword | ErrorCode::TooFast)));
}

#[tokio::test]
async fn new_accounts_from_one_address_are_limited_and_old_ones_still_log_in() {
    let db = TestDb::new().await;
    let flags = [
        "--registration-burst",
        "3",
        "--max-registrations-per-hour",
        "1",
    ];
    let server = Server::start_with(&db, "s1", &flags).await;
    for user in ["ann", "ben", "cat"] {
        RawConn::connect(&server.addr).await.login(user).await;
    }
    let mut conn = RawConn::connect(&server.addr).await;
    let err = conn
        .request(login("dan", "pw-dan"))
        .await
        .expect_err("a fourth account at once");
    assert_eq!(err.code, ErrorCode::TooFast);
    assert_eq!(
        err.message,
        "too many new accounts from 127.0.0.1; try again in 3600 s"
    );
    // Nothing was stored for dan, and ann logs in as before.
    assert!(db
        .query_strings("SELECT name FROM users WHERE name = 'dan'")
        .await
        .is_empty());
    conn.login("ann").await;
}

#[tokio::test]
async fn a_client_cannot_claim_an_address_the_farm_did_not_vouch_for() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut conn = RawConn::connect(&server.addr).await;
    let forged = Request::Forwarded(Forwarded {
        addr: "203.0.113.7".parse().unwrap(),
        tag: [0; 32],
    });
    let err = conn.request(forged).await.expect_err("a forged tag");
    assert_eq!(err.code, ErrorCode::Invalid);
    assert_eq!(
        err.message,
        "a forwarded address the farm did not vouch for"
    );
    // The connection stays open, with the address it has.
    conn.login("alice").await;
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &["--max-connections-per-address", "2"]).await;
    let first = RawConn::connect(&server.addr).await;
    let _second = RawConn::connect(&server.addr).await;
    assert_eq!(
        hello_answer(&server).await.refusal,
        "too many connections from 127.0.0.1: at most 2; close one or try again later"
    );
    drop(first);
    place_freed(&server).await;
}

#[tokio::test]
async fn a_connection_that_does_not_log_in_in_time_is_closed() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &["--login-timeout-secs", "1"]).await;
    let mut logged_in = RawConn::connect(&server.addr).await;
    logged_in.login("alice").await;
    let mut idle = RawConn::connect(&server.addr).await;
    // What a client does before it logs in works within the time.
    assert!(matches!(
        idle.request(Request::Ring).await,
        Ok(Response::Ring(_))
    ));
    assert_eq!(idle.request(Request::Ping).await, Ok(Response::Pong));
    let mut reason = None;
    while let Some(frame) = idle.try_next_frame().await {
        if let ServerFrame::Closing { reason: why } = frame {
            reason = Some(why);
        }
    }
    assert_eq!(reason.as_deref(), Some("not logged in within 1 s"));
    // The logged-in session, as old, stays.
    assert_eq!(logged_in.request(Request::Ping).await, Ok(Response::Pong));
}

#[tokio::test]
async fn a_client_left_unlogged_past_the_time_reconnects_and_then_logs_in() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &["--login-timeout-secs", "1"]).await;
    let mut client = Client::connect(&server).await;
    // The server closes the idle connection; the client connects again without a word...
    let again = client.event(|ev| ev["type"] == "connected").await;
    assert_eq!(again["server"], "s1");
    // ...and a login then works as usual.
    assert_eq!(client.ok("login alice pw-alice").await["user"], "alice");
}
