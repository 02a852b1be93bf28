//! The web client's WebSocket as a bot would use it: the JSON of `chat-client --json`, the
//! Origin check, and what the server refuses at start-up (TLS files, plain HTTP off loopback).

use super::WEB;
use chat_tests::{Client, Server, TestDb, EVENT_TIMEOUT};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the server's `/ws` as a page from `origin` would (`None`: as a bot, no Origin).
async fn open(server: &Server, origin: Option<&str>) -> Result<Socket, Error> {
    let url = server
        .web_url
        .as_deref()
        .expect("started with --web-listen");
    let mut request = format!("{}/ws", url.replacen("http", "ws", 1))
        .into_client_request()
        .expect("a request");
    if let Some(origin) = origin {
        let origin = HeaderValue::from_str(origin).expect("an origin");
        request.headers_mut().insert("Origin", origin);
    }
    let (socket, _) = timeout(EVENT_TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("the web endpoint answered in time")?;
    Ok(socket)
}

/// Opens the server's `/ws` from the local address `from` (a loopback address other than
/// the server's own: a browser on another machine), as a bot would.
async fn open_from(server: &Server, from: &str) -> Socket {
    let url = server
        .web_url
        .as_deref()
        .expect("started with --web-listen");
    let host_port = url.trim_start_matches("http://");
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(format!("{from}:0").parse().expect("an address"))
        .expect("bind the browser's address");
    let stream = timeout(
        EVENT_TIMEOUT,
        socket.connect(host_port.parse().expect("the web address")),
    )
    .await
    .expect("connected in time")
    .expect("connect to the web endpoint");
    let request = format!("ws://{host_port}/ws")
        .into_client_request()
        .expect("a request");
    let (mut socket, _) = timeout(
        EVENT_TIMEOUT,
        tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("the web endpoint answered in time")
    .expect("a WebSocket");
    assert_eq!(next(&mut socket).await["type"], "web");
    socket
}

/// The next event object from the socket, answering each mark as a page does once it has
/// handled what came before.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let event = next_frame(socket).await;
        if event["type"] != "mark" {
            return event;
        }
        let marked = json!({"command": "marked", "mark": event["mark"]});
        socket
            .send(Message::text(marked.to_string()))
            .await
            .expect("answer a mark");
    }
}

/// The next event object from the socket, whatever it is.
async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let frame = timeout(EVENT_TIMEOUT, socket.next())
            .await
            .expect("an event in time")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).expect("each frame is one JSON object");
        }
    }
}

/// Sends one command frame and returns its answer, skipping other events.
async fn command(socket: &mut Socket, command: &str) -> Value {
    socket
        .send(Message::text(command))
        .await
        .expect("send a command");
    answer(socket).await
}

async fn answer(socket: &mut Socket) -> Value {
    loop {
        let event = next(socket).await;
        if event["type"] == "ok" || event["type"] == "error" {
            return event;
        }
    }
}

#[tokio::test]
async fn the_socket_speaks_the_json_of_the_cli() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &WEB).await;
    let mut bob = Client::connect(&server).await;
    let bob_login = bob.ok("login bob pw-bob").await;
    assert!(
        bob_login.get("ticket").is_none(),
        "the CLI printed its ticket"
    );
    let mut socket = open(&server, None).await.expect("a bot needs no Origin");

    let web = next(&mut socket).await;
    let url = server.web_url.as_deref().unwrap();
    assert_eq!(
        web,
        json!({"type":"web","server":"s1","servers":[{"name":"s1","url":url,"live":true}]})
    );
    assert_eq!(
        next(&mut socket).await,
        json!({"type":"connected","server":"s1"})
    );
    let login = command(
        &mut socket,
        r#"{"command":"login","user":"alice","password":"pw-alice"}"#,
    )
    .await;
    assert_eq!(login["type"], "ok", "{login}");
    assert_eq!(login["registered"], true);
    assert!(
        login["ticket"].as_str().is_some_and(|t| t.len() > 32),
        "{login}"
    );

    // Bad input is answered, and the socket stays open.
    let bad = command(&mut socket, "{").await;
    assert_eq!(bad["type"], "error");
    assert_eq!(bad["command"], "input");
    let unknown = command(&mut socket, r#"{"command":"dance"}"#).await;
    assert_eq!(
        unknown,
        json!({"type":"error","command":"dance","message":"unknown command \"dance\""})
    );
    socket
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .expect("send a binary frame");
    assert_eq!(answer(&mut socket).await["command"], "input");

    // The same objects as the CLI's, both ways.
    let sent = command(
        &mut socket,
        r#"{"command":"send","to":"bob","text":"hi bob"}"#,
    )
    .await;
    assert_eq!(sent["command"], "send");
    let at_bob = bob.message("hi bob").await;
    assert_eq!(at_bob["id"], sent["id"]);
    bob.ok("send alice hi alice").await;
    let mut at_alice = next(&mut socket).await;
    assert_eq!(at_alice["type"], "message");
    at_alice.as_object_mut().unwrap().remove("sent_at");
    assert_eq!(
        at_alice,
        json!({"type":"message","id":at_alice["id"],"from":"bob","to":"alice","text":"hi alice"})
    );
    let who = command(&mut socket, r#"{"command":"who"}"#).await;
    assert_eq!(
        who,
        json!({"type":"ok","command":"who","users":["alice","bob"]})
    );
    let join = command(&mut socket, r##"{"command":"join","group":"#ops"}"##).await;
    assert_eq!(join, json!({"type":"ok","command":"join","group":"ops"}));
    let quit = command(&mut socket, r#"{"command":"quit"}"#).await;
    assert_eq!(quit, json!({"type":"ok","command":"quit"}));
}

#[tokio::test]
async fn a_ticket_logs_in_on_a_new_socket_without_the_password() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &WEB).await;
    let mut first = open(&server, None).await.unwrap();
    let login = command(
        &mut first,
        r#"{"command":"login","user":"alice","password":"pw-alice"}"#,
    )
    .await;
    let ticket = login["ticket"].as_str().expect("a ticket").to_owned();
    drop(first);

    let mut second = open(&server, None).await.unwrap();
    let resume = json!({"command":"login","user":"alice","ticket":ticket}).to_string();
    let again = command(&mut second, &resume).await;
    assert_eq!(again["type"], "ok", "{again}");
    assert_eq!(again["registered"], false);
    assert_ne!(
        again["ticket"], login["ticket"],
        "every login hands out a fresh ticket"
    );
    // A ticket revoked by a logout is refused, and then the password is needed.
    assert_eq!(
        command(&mut second, r#"{"command":"logout"}"#).await["type"],
        "ok"
    );
    let mut third = open(&server, None).await.unwrap();
    let refused = command(&mut third, &resume).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["command"], "login");
}

#[tokio::test]
async fn only_the_farms_origins_and_the_operators_may_open_the_socket() {
    let db = TestDb::new().await;
    let flags = [WEB[0], WEB[1], "--web-origin", "https://chat.example"];
    let server = Server::start_with(&db, "s1", &flags).await;
    let own = server.web_url.clone().unwrap();
    assert!(open(&server, Some(&own)).await.is_ok());
    assert!(open(&server, Some("https://chat.example")).await.is_ok());
    for foreign in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        match open(&server, Some(foreign)).await {
            Err(Error::Http(response)) => assert_eq!(response.status(), 403, "{foreign}"),
            other => panic!("{foreign} was not refused: {:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test]
async fn plain_http_off_loopback_and_bad_tls_files_stop_the_server() {
    let db = TestDb::new().await;
    let refused = Server::fails_to_start(&db, "s1", &["--web-listen", "0.0.0.0:0"]).await;
    assert!(refused.contains("is not a loopback address"), "{refused}");
    assert!(refused.contains("--web-allow-plain"), "{refused}");

    let dir = tempdir();
    let missing = dir.join("missing.pem");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let (missing, garbage) = (missing.to_str().unwrap(), garbage.to_str().unwrap());
    let tls = |cert: &str, key: &str| {
        vec![
            WEB[0].to_owned(),
            WEB[1].to_owned(),
            "--web-tls-cert".into(),
            cert.into(),
            "--web-tls-key".into(),
            key.into(),
        ]
    };
    let flags = tls(missing, garbage);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let error = Server::fails_to_start(&db, "s1", &flags).await;
    assert!(
        error.contains("cannot read the web TLS certificate"),
        "{error}"
    );
    let flags = tls(garbage, garbage);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let error = Server::fails_to_start(&db, "s1", &flags).await;
    assert!(error.contains("no certificate in"), "{error}");
}

#[tokio::test]
async fn with_a_certificate_the_page_is_served_over_https() {
    let db = TestDb::new().await;
    let dir = tempdir();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(made.success());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let flags = [WEB[0], WEB[1], "--web-tls-cert", cert, "--web-tls-key", key];
    let server = Server::start_with(&db, "s1", &flags).await;
    let url = server.web_url.clone().unwrap();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let page = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--cacert", cert, &url])
        .output();
    let page = timeout(EVENT_TIMEOUT, page)
        .await
        .unwrap()
        .expect("run curl");
    assert!(
        page.status.success(),
        "{}",
        String::from_utf8_lossy(&page.stderr)
    );
    assert!(String::from_utf8_lossy(&page.stdout).contains("<title>Chat</title>"));
}

/// A fresh directory under the temporary one.
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chat-web-test-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_sockets_are_bounded_and_closed_at_shutdown() {
    let db = TestDb::new().await;
    let flags = [WEB[0], WEB[1], "--web-max-connections", "1"];
    let server = Server::start_with(&db, "s1", &flags).await;
    let mut first = open(&server, None).await.expect("the one socket");
    assert_eq!(next(&mut first).await["type"], "web");
    match open(&server, None).await {
        Err(Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("a second socket was not refused: {:?}", other.map(|_| ())),
    }
    // At shutdown the page is let go, to log in elsewhere.
    let stopping = tokio::spawn(server.stop());
    let closed = timeout(EVENT_TIMEOUT, async {
        while let Some(Ok(frame)) = first.next().await {
            if let Message::Close(_) = frame {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the socket stayed open through the shutdown"
    );
    stopping.await.expect("the server stopped cleanly");
}

#[tokio::test]
async fn the_per_address_limits_count_each_browser_by_its_own_address() {
    let db = TestDb::new().await;
    let flags = [
        WEB[0],
        WEB[1],
        "--registration-burst",
        "1",
        "--max-registrations-per-hour",
        "1",
    ];
    let server = Server::start_with(&db, "s1", &flags).await;
    let login = |user: &str| json!({"command": "login", "user": user, "password": "pw-web"});
    // A browser at 127.0.0.2 registers a name; its next one waits for its turn.
    let mut first = open_from(&server, "127.0.0.2").await;
    let registered = command(&mut first, &login("wann").to_string()).await;
    assert_eq!(
        (&registered["type"], &registered["registered"]),
        (&json!("ok"), &json!(true)),
        "{registered}"
    );
    let mut second = open_from(&server, "127.0.0.2").await;
    let refused = command(&mut second, &login("wben").to_string()).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["message"],
        "too many new accounts from 127.0.0.2; try again in 3600 s"
    );
    // Neither another browser nor a terminal client on the server's own address (where the
    // gateway's connections come from) is held up by that browser.
    let mut other = open_from(&server, "127.0.0.3").await;
    let registered = command(&mut other, &login("wcat").to_string()).await;
    assert_eq!(registered["type"], "ok", "{registered}");
    let mut terminal = Client::connect(&server).await;
    terminal.ok("login wdan pw-wdan").await;
}

#[tokio::test]
async fn a_message_is_acknowledged_only_once_the_page_answers_its_mark() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &WEB).await;
    let mut socket = open(&server, None).await.expect("a socket");
    assert_eq!(next(&mut socket).await["type"], "web");
    let login = json!({"command": "login", "user": "alice", "password": "pw-alice"});
    assert_eq!(command(&mut socket, &login.to_string()).await["type"], "ok");
    let mut bob = Client::connect(&server).await;
    bob.ok("login bob pw-bob").await;
    bob.ok("send alice shown but never confirmed").await;
    // The page gets the message and then a mark, which it never answers (it died drawing).
    let message = loop {
        let event = next_frame(&mut socket).await;
        if event["type"] == "message" {
            break event;
        }
    };
    assert_eq!(message["text"], "shown but never confirmed");
    loop {
        if next_frame(&mut socket).await["type"] == "mark" {
            break;
        }
    }
    // Bob was told "sent" because the farm stored it: nobody acknowledged it. Alice's next
    // device finds it waiting.
    let mut alice = Client::connect(&server).await;
    let login = alice.ok("login alice pw-alice").await;
    assert_eq!(login["waiting"], 1, "{login}");
    alice.ok("readlog").await;
    alice.message("shown but never confirmed").await;
    // And the page that does not answer is let go.
    let closed = timeout(EVENT_TIMEOUT, async {
        while let Some(Ok(frame)) = socket.next().await {
            if frame.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the page that answers no mark is let go");
}
