use chat_proto::{ErrorCode, Hello, MessageId, Recipient, Request};
use chat_tests::{Client, RawConn, Server, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Checks that the server still serves: a message goes from one new client to another.
async fn still_serves(server: &Server) {
    let mut alice = Client::login(server, "alice").await;
    let mut bob = Client::login(server, "bob").await;
    alice.ok("send bob still here").await;
    bob.message("still here").await;
}

/// Reads until the server ends the connection; returns the reason its goodbye gave, if any.
async fn closing_reason(conn: &mut RawConn) -> Option<String> {
    let mut reason = None;
    while let Some(frame) = conn.try_next_frame().await {
        if let chat_proto::ServerFrame::Closing { reason: why } = frame {
            reason = Some(why);
        }
    }
    reason
}

/// Writes `bytes` on a fresh connection and checks that the server closes it.
async fn closes_after(server: &Server, bytes: &[u8]) {
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(chat_tests::EVENT_TIMEOUT, stream.read_to_end(&mut sink))
        .await
        .expect("the server closed the connection in time");
    // A reset is as good as a close.
    let _ = read;
}

#[tokio::test]
async fn garbage_and_oversized_frames_close_only_their_connection() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut bystander = Client::login(&server, "carol").await;

    closes_after(&server, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").await;
    closes_after(&server, &[0, 0, 0, 6, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff]).await;
    closes_after(&server, &u32::MAX.to_be_bytes()).await;

    // The same after the handshake and a good hello: an empty message, then one that does
    // not decrypt.
    for bytes in [vec![0, 0], [vec![0, 20], vec![0xab; 20]].concat()] {
        let mut conn = RawConn::connect(&server.addr).await;
        conn.login("mallory").await;
        let mut stream = conn.into_stream();
        stream.write_all(&bytes).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(chat_tests::EVENT_TIMEOUT, stream.read_to_end(&mut rest))
            .await
            .expect("closed in time");
    }

    still_serves(&server).await;
    assert_eq!(bystander.ok("whoami").await["user"], "carol");
}

#[tokio::test]
async fn another_protocol_version_gets_a_clear_refusal() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let hello = Hello {
        version: 99,
        ..Hello::new("")
    };
    let reply = chat_tests::hello_answer(&server.addr, hello).await;
    assert_eq!(
        reply.refusal,
        format!(
            "protocol version 99 is not supported; this server speaks version {}",
            chat_proto::PROTOCOL_VERSION
        )
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn invalid_requests_get_errors_and_the_session_goes_on() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    drop(Client::login(&server, "bob").await);
    let mut conn = RawConn::connect(&server.addr).await;

    #[track_caller]
    fn check(
        reply: Result<chat_proto::Response, chat_proto::ErrorReply>,
        code: ErrorCode,
        text: &str,
    ) {
        let err = reply.expect_err("the request should fail");
        assert_eq!((err.code, err.message.as_str()), (code, text));
    }

    let login = |user: &str, password: &str| Request::password_login(user, password);
    check(
        conn.request(login("bad name", "pw")).await,
        ErrorCode::Invalid,
        "user name may only contain A-Z a-z 0-9 _ . - (found ' ')",
    );
    check(
        conn.request(login(&"x".repeat(33), "pw")).await,
        ErrorCode::Invalid,
        "user name is longer than 32 characters",
    );
    check(
        conn.request(login("alice", "")).await,
        ErrorCode::Invalid,
        "password must be 1 to 1024 bytes",
    );
    conn.login("alice").await;
    let send = |to: Recipient, text: String| Request::Send {
        id: MessageId::new(),
        to,
        text,
    };
    check(
        conn.request(send(Recipient::User("bob".into()), "x".repeat(4097)))
            .await,
        ErrorCode::Invalid,
        "message text is 4097 bytes; the limit is 4096",
    );
    check(
        conn.request(send(Recipient::Group("a/b".into()), "hi".into()))
            .await,
        ErrorCode::Invalid,
        "group name may only contain A-Z a-z 0-9 _ . - (found '/')",
    );
    check(
        conn.request(Request::Join {
            group: String::new(),
        })
        .await,
        ErrorCode::Invalid,
        "group name is empty",
    );
    // Nothing of it was stored, and the session still works.
    assert!(db.query_strings("SELECT name FROM groups").await.is_empty());
    let reply = conn
        .request(send(Recipient::User("bob".into()), "fine".into()))
        .await;
    assert!(reply.is_ok(), "{reply:?}");
    still_serves(&server).await;
}

#[tokio::test]
async fn a_truncated_handshake_and_a_slowloris_are_cut_off_at_the_handshake_timeout() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let started = std::time::Instant::now();
    // Half of the first handshake message (32 bytes are due), then silence.
    let mut truncated = TcpStream::connect(&server.addr).await.unwrap();
    truncated.write_all(&[0, 32]).await.unwrap();
    truncated.write_all(&[0x42; 16]).await.unwrap();
    // A byte at a time, slower than any handshake needs.
    let mut slowloris = TcpStream::connect(&server.addr).await.unwrap();
    let trickle = async {
        for byte in [0u8, 32].into_iter().chain([0x42; 32]) {
            if slowloris.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        }
    };
    let (_, ()) = tokio::join!(trickle, still_serves(&server));
    for stream in [&mut truncated, &mut slowloris] {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(chat_tests::EVENT_TIMEOUT, stream.read_to_end(&mut rest))
            .await
            .expect("the server closed the connection in time");
        // A reset is as good as a close; nothing was sent back either way.
        if read.is_ok() {
            assert!(rest.is_empty(), "the server answered a broken handshake");
        }
    }
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "broken handshakes held on for {took:?}"
    );
}

#[tokio::test]
async fn a_client_refuses_a_server_with_another_farms_key() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let other_farm = TestDb::new().await;
    let mut client = Client::spawn_with(
        &[&server.addr],
        &["--server-key", &other_farm.farm_public_key()],
    );
    let error = client
        .event(|ev| ev["type"] == "error" && ev["command"] == "connection")
        .await;
    let message = error["message"].as_str().expect("a message");
    assert!(message.contains("key"), "{message}");
    assert_eq!(client.wait_exit().await, Some(1));
    // The pinned key of this farm works.
    let mut pinned = Client::spawn_with(&[&server.addr], &["--server-key", &db.farm_public_key()]);
    pinned.ok("login alice pw-alice").await;
}

#[tokio::test]
async fn a_replayed_or_reordered_frame_ends_only_the_attacked_connection() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut bob = Client::login(&server, "bob").await;
    for replay_twice_later in [false, true] {
        let tap = chat_tests::Tap::start(server.addr.clone()).await;
        let mut alice = RawConn::connect(&tap.addr).await;
        alice.login("alice").await;
        let send = |text: &str| Request::Send {
            id: MessageId::new(),
            to: Recipient::User("bob".into()),
            text: text.into(),
        };
        let text = format!("only once {replay_twice_later}");
        assert!(alice.request(send(&text)).await.is_ok());
        bob.message(&text).await;
        let recorded = tap.sent();
        let send_frame = recorded.last().expect("the send crossed the tap").clone();
        if replay_twice_later {
            // A later frame first, then the earlier one again: out of order and replayed.
            assert!(alice.request(Request::Ping).await.is_ok());
            let ping_frame = tap.sent().last().expect("the ping crossed").clone();
            tap.inject(ping_frame);
        }
        tap.inject(send_frame);
        // The server drops the attacked connection, saying why...
        assert_eq!(
            closing_reason(&mut alice).await.as_deref(),
            Some(
                "unreadable frame: encrypted frame refused: decryption failed: the message is \
                 forged, altered, replayed or out of order"
            )
        );
        // ...and bob saw the message once, and keeps chatting.
        assert!(
            bob.take_messages(&text).is_empty(),
            "{text} was shown twice"
        );
    }
    still_serves(&server).await;
}

#[tokio::test]
async fn an_oversized_frame_from_a_client_ends_its_connection() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut mallory = RawConn::connect(&server.addr).await;
    mallory.login("mallory").await;
    let huge = Request::Send {
        id: MessageId::new(),
        to: Recipient::User("mallory".into()),
        text: "x".repeat(200_000),
    };
    mallory
        .send_frame(chat_proto::ClientFrame::Request { id: 9, body: huge })
        .await;
    assert_eq!(
        closing_reason(&mut mallory).await.as_deref(),
        Some("unreadable frame: frame exceeds the limit of 65536 bytes")
    );
    still_serves(&server).await;
}

#[tokio::test]
async fn a_peer_that_never_reads_is_dropped_and_its_socket_freed() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &["--write-timeout-secs", "1"]).await;
    let mut alice = RawConn::connect(&server.addr).await;
    alice.login("alice").await;
    let mut mallory = RawConn::connect(&server.addr).await;
    mallory.login("mallory").await;
    // Mallory reads nothing from here on, while alice sends him more than the sockets'
    // buffers hold (fewer frames than his queue holds, so only the write can give up).
    let sends = (0..800)
        .map(|_| Request::Send {
            id: MessageId::new(),
            to: Recipient::User("mallory".into()),
            text: "x".repeat(4000),
        })
        .collect();
    for reply in alice.requests(sends).await {
        assert!(reply.is_ok(), "{reply:?}");
    }
    let deadline = tokio::time::Instant::now() + chat_tests::EVENT_TIMEOUT;
    loop {
        let who = Request::Who {
            after: None,
            max: chat_proto::MAX_PAGE,
        };
        let Ok(chat_proto::Response::Users { users, .. }) = alice.request(who).await else {
            panic!("who failed");
        };
        if !users.iter().any(|user| user == "mallory") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mallory's session stayed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Its socket is closed too: what was buffered, then the end.
    let mut stream = mallory.into_stream();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(chat_tests::EVENT_TIMEOUT, stream.read_to_end(&mut rest))
        .await
        .expect("the server closed mallory's socket");
    let _ = read;
    still_serves(&server).await;
}

#[tokio::test]
async fn debug_logs_show_no_password_hash() {
    let db = TestDb::new().await;
    let log_file =
        std::env::temp_dir().join(format!("chat-test-{}.log", uuid::Uuid::now_v7().simple()));
    let server = Server::start_logging(&db, "s1", &[], "debug", &log_file).await;
    // A registration writes a hash, a second login reads it.
    Client::login(&server, "alice").await.ok("quit").await;
    Client::login(&server, "alice").await.ok("quit").await;
    server.stop().await;
    let log = std::fs::read_to_string(&log_file).expect("read the server's log");
    let _ = std::fs::remove_file(&log_file);
    assert!(
        log.contains("password hashed"),
        "the server did not log at debug"
    );
    assert!(log.contains("logged in"), "the logins are not in the log");
    assert!(
        !log.contains("$argon2"),
        "a password hash is in the debug log"
    );
}
