//! Failover on a fake farm: a server that crashes, hangs or shuts down is replaced by the next
//! one in the user's ring order without a word but `connected`, nothing the user was told is
//! sent is lost or shown twice, and the client goes back home when home returns.

use crate::fake_server::{messages, pinned, FakeServer, OnSend, OnWho, SENT_AT};
use crate::farm::{connected, logged_in, user_placed};
use crate::session::run_with;
use crate::support::{drive_logged_in, moved_after_login, ringed_farm, whole_log_confirmed};
use chat_client::connection::Connection;
use chat_client::heartbeat::Heartbeat;
use chat_client::input::Input;
use chat_client::output::{Format, LineSink, Output};
use chat_client::session::{Config, Exit, Session};
use chat_proto::codec::MAX_LOG_BATCH;
use chat_proto::{ClientFrame, MessageId, Recipient, Request};
use serde_json::{json, Value};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::watch;
use tokio::time::timeout;

/// How long a test waits for something the client should print.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the session printed so far, for the test to wait on.
#[derive(Clone)]
pub struct Screen(Arc<watch::Sender<Vec<Value>>>);

impl LineSink for Screen {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        let value: Value = serde_json::from_str(line).expect("every line is JSON");
        self.0.send_modify(|lines| lines.push(value));
        Ok(())
    }
}

impl Screen {
    pub fn lines(&self) -> Vec<Value> {
        self.0.borrow().clone()
    }

    /// Waits until the client has printed `expected`.
    pub async fn wait_for(&self, expected: &Value) {
        let mut lines = self.0.subscribe();
        let printed = lines.wait_for(|lines| lines.contains(expected));
        timeout(EVENT_TIMEOUT, printed)
            .await
            .unwrap_or_else(|_| panic!("no {expected} in time; printed {:#?}", self.lines()))
            .expect("the screen is still there");
    }

    /// Waits until the client has answered `command`, and returns the answer.
    pub async fn answer(&self, command: &str) -> Value {
        let is_answer = |line: &Value| line["command"] == command;
        let mut lines = self.0.subscribe();
        let answered = lines.wait_for(|lines| lines.iter().any(is_answer));
        timeout(EVENT_TIMEOUT, answered)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no answer to {command} in time; printed {:#?}",
                    self.lines()
                )
            })
            .expect("the screen is still there");
        self.lines()
            .into_iter()
            .find(is_answer)
            .expect("the answer is there")
    }
}

/// The session's standard input; dropping it ends the input.
pub struct Keyboard(DuplexStream);

impl Keyboard {
    pub async fn type_line(&mut self, line: &str) {
        self.0
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("the session reads its input");
    }
}

/// Runs a session that starts on `first` while `script` types and watches. The session ends
/// once the script has dropped the keyboard and every command is answered. Returns how it
/// ended, everything it printed, and what the script returned.
pub async fn drive<T, F, Fut>(
    first: &FakeServer,
    config: Config,
    script: F,
) -> (Exit, Vec<Value>, T)
where
    F: FnOnce(Keyboard, Screen) -> Fut,
    Fut: Future<Output = T>,
{
    let screen = Screen(Arc::new(watch::Sender::new(Vec::new())));
    let output = Output::new(Format::Json, Box::new(screen.clone()));
    let (connection, incoming) =
        Connection::connect(&first.addr.to_string(), &config.connect_options())
            .await
            .expect("the first server answers");
    let (keys, typed) = tokio::io::duplex(64 * 1024);
    let mut input = Input::lines(BufReader::new(typed));
    let session = Session::new(&output, config);
    let both = async {
        tokio::join!(
            session.run(connection, incoming, &mut input),
            script(Keyboard(keys), screen.clone())
        )
    };
    let (exit, returned) = timeout(Duration::from_secs(30), both)
        .await
        .expect("the session ends in time");
    (exit, screen.lines(), returned)
}

/// Every server of `servers` hands out the ring of them all.
pub fn share_ring(servers: &[FakeServer]) {
    let addrs: Vec<String> = servers
        .iter()
        .map(|server| server.addr.to_string())
        .collect();
    let ring: Vec<(&str, &str)> = servers
        .iter()
        .zip(&addrs)
        .map(|(server, addr)| (server.name.as_str(), addr.as_str()))
        .collect();
    for server in servers {
        server.set_ring(&ring);
    }
}

/// Defaults, but with `seed` as the only server named at start.
pub fn config(seed: &FakeServer) -> Config {
    Config::new(vec![seed.addr.to_string()], pinned())
}

/// A message of the fake's log, as shown when fetched from the log.
pub fn offline(idx: usize) -> Value {
    let message = &messages()[idx];
    let mut line = json!({
        "type": "message",
        "id": message.id.to_string(),
        "from": message.from,
        "text": message.text,
        "sent_at": SENT_AT,
        "offline": true,
    });
    match &message.to {
        Recipient::User(user) => line["to"] = json!(user),
        Recipient::Group(group) => line["group"] = json!(group),
    }
    line
}

/// What each fake hands over from its log, minus the message already delivered at login.
pub fn fetched_log() -> [Value; 2] {
    [offline(1), offline(2)]
}

pub fn whoami(user: &str, server: &str, home: &str, backup: &str) -> Value {
    json!({"type":"ok","command":"whoami","user":user,"server":server,"home":home,"backup":backup})
}

/// The requests a server got, without the ring requests of looks at home.
fn requests_but_ring(server: &FakeServer) -> Vec<Request> {
    let mut requests = server.requests();
    requests.retain(|request| *request != Request::Ring);
    requests
}

/// The user logs in at home (s1), sends, and s1 fails the send as `on_send` says. The client
/// must go on at the backup (s3, not the seed s2), send again with the same id, and show the
/// log that waited there once.
async fn check_send_survives(on_send: OnSend) {
    let servers = ringed_farm(["s1", "s2", "s3"]).await;
    let [s1, s2, s3] = &servers;
    let user = user_placed(&["s1", "s2", "s3"], &["s1", "s3", "s2"]);
    s1.on_send(on_send);

    let script = format!("login {user} pw\nsend bob hi\nwhoami\n");
    let (exit, lines) = run_with(s2, config(s2), &script).await;
    assert_eq!(exit, Exit::EndOfInput, "{lines:#?}");

    let sent_id: MessageId = lines
        .iter()
        .find(|line| line["command"] == "send")
        .and_then(|line| line["id"].as_str())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no send answer: {lines:#?}"));
    let mut expected = vec![connected("s2")];
    expected.extend(moved_after_login(&user, "s1", "s3"));
    expected.extend([
        json!({"type":"ok","command":"send","id":sent_id.to_string()}),
        whoami(&user, "s3", "s1", "s3"),
    ]);
    assert_eq!(lines, expected);
    // Both attempts carried the same id; the seed, which is not next in the ring, got none.
    assert_eq!(s1.sends(), vec![sent_id]);
    assert_eq!(s3.sends(), vec![sent_id]);
    assert!(s2.sends().is_empty());
    // At s3: log in again with the ticket the first login was given (the fake server's),
    // fetch and confirm the log, then send again.
    let [first, second, third] = messages();
    assert_eq!(
        requests_but_ring(s3),
        vec![
            crate::session::ticket_login(&user, b"fake"),
            Request::ReadLog { max: MAX_LOG_BATCH },
            Request::ConfirmLog {
                ids: vec![first.id, second.id]
            },
            Request::ReadLog { max: MAX_LOG_BATCH },
            Request::ConfirmLog {
                ids: vec![third.id]
            },
            Request::Send {
                id: sent_id,
                to: Recipient::User("bob".into()),
                text: "hi".into()
            },
            Request::WhoAmI,
        ]
    );
}

#[tokio::test]
async fn a_crash_mid_send_moves_to_the_backup_and_sends_again_with_the_same_id() {
    check_send_survives(OnSend::Crash).await;
}

#[tokio::test]
async fn a_send_refused_for_shutdown_is_sent_again_after_the_failover() {
    check_send_survives(OnSend::SayShuttingDown).await;
}

#[tokio::test]
async fn a_hung_server_is_declared_dead_after_the_missed_pings() {
    let servers = ringed_farm(["s1", "s2", "s3"]).await;
    let [s1, _s2, s3] = &servers;
    let user = user_placed(&["s1", "s2", "s3"], &["s1", "s3", "s2"]);
    let config = Config {
        heartbeat: Some(Heartbeat {
            interval: Duration::from_millis(100),
            misses: 3,
        }),
        // No look at the hung home during the test, so that every ping it gets is counted.
        home_poll: Duration::from_secs(600),
        ..config(s1)
    };

    let (exit, lines, hung_at) =
        drive_logged_in(s1, config, &user, |mut keys, screen| async move {
            let hung_at = s1.received().len();
            s1.hang();
            screen.wait_for(&connected("s3")).await;
            keys.type_line("whoami").await;
            hung_at
        })
        .await;
    assert_eq!(exit, Exit::EndOfInput, "{lines:#?}");
    let mut expected = moved_after_login(&user, "s1", "s3");
    expected.push(whoami(&user, "s3", "s1", "s3"));
    assert_eq!(lines, expected);
    // The client gave up on s1 once it had been silent for three ping intervals: after two or
    // three unanswered pings, depending on where in the ping cycle it hung.
    let unanswered = s1.pings_after(hung_at);
    assert!(
        (2..=3).contains(&unanswered),
        "{unanswered} unanswered pings"
    );
    assert_eq!(s3.logins(), vec![user]);
}

#[tokio::test]
async fn the_log_fetched_after_each_reconnect_shows_waiting_messages_once() {
    let servers = ringed_farm(["s1", "s2", "s3"]).await;
    let [s1, s2, s3] = &servers;
    let user = user_placed(&["s1", "s2", "s3"], &["s1", "s3", "s2"]);

    let (exit, lines, ()) = drive_logged_in(s1, config(s1), &user, |mut keys, screen| async move {
        s1.crash();
        screen.wait_for(&connected("s3")).await;
        screen.wait_for(&offline(2)).await;
        // The backup goes too; the last one left hands over the same log.
        s3.crash();
        screen.wait_for(&connected("s2")).await;
        keys.type_line("readlog").await;
    })
    .await;
    assert_eq!(exit, Exit::EndOfInput, "{lines:#?}");
    let mut expected = moved_after_login(&user, "s1", "s3");
    expected.extend([
        connected("s2"),
        json!({"type":"ok","command":"readlog","count":0}),
    ]);
    assert_eq!(lines, expected);
    // s2 handed the whole log over once more: confirmed, though not shown again.
    assert_eq!(s2.confirmed(), whole_log_confirmed());
    assert_eq!(s2.acked(), vec![messages()[0].id]);
}

#[tokio::test]
async fn the_client_returns_home_once_home_is_back() {
    let servers = ringed_farm(["s1", "s2"]).await;
    let [s1, s2] = &servers;
    let user = user_placed(&["s1", "s2"], &["s1", "s2"]);
    s1.go_down();
    let config = Config {
        home_poll: Duration::from_millis(50),
        ..config(s2)
    };

    let login_ok = logged_in(&user);
    let (exit, lines, ()) = drive_logged_in(s2, config, &user, |mut keys, screen| async move {
        // The login tried home once; a look at home tries it again while it is down.
        s1.until_accepted(2).await;
        assert_eq!(screen.lines().last(), Some(&login_ok));
        s1.come_back();
        screen.wait_for(&connected("s1")).await;
        screen.wait_for(&offline(2)).await;
        keys.type_line("whoami").await;
    })
    .await;
    assert_eq!(exit, Exit::EndOfInput, "{lines:#?}");
    let mut expected = moved_after_login(&user, "s2", "s1");
    expected.push(whoami(&user, "s1", "s1", "s2"));
    assert_eq!(lines, expected);
    assert_eq!(s1.logins(), vec![user.clone()]);
    assert_eq!(s2.logins(), vec![user]);
    assert!(!s2.requests().contains(&Request::WhoAmI));
    assert_eq!(s1.confirmed(), whole_log_confirmed());
}

#[tokio::test]
async fn a_failover_finds_a_server_that_came_back_at_a_new_address() {
    let servers = ringed_farm(["s1", "s2"]).await;
    let [s1, old_s2] = &servers;
    let user = user_placed(&["s1", "s2"], &["s1", "s2"]);
    let config = Config {
        home_poll: Duration::from_millis(50),
        ..config(s1)
    };
    // The backup restarts on another port while the user sits at home.
    let new_s2 = &FakeServer::start_named("s2", OnWho::Answer).await;

    let (exit, lines, ()) = drive_logged_in(s1, config, &user, |mut keys, screen| async move {
        old_s2.crash();
        let ring = [
            ("s1", &*s1.addr.to_string()),
            ("s2", &*new_s2.addr.to_string()),
        ];
        s1.set_ring(&ring);
        new_s2.set_ring(&ring);
        let asked_before = s1.received().len();
        // The client, at home, refreshes its ring; then home goes down.
        s1.until_received(|frames| {
            frames[asked_before..].iter().any(|frame| {
                matches!(
                    frame,
                    ClientFrame::Request {
                        body: Request::Ring,
                        ..
                    }
                )
            })
        })
        .await;
        s1.crash();
        screen.wait_for(&connected("s2")).await;
        keys.type_line("whoami").await;
    })
    .await;
    assert_eq!(exit, Exit::EndOfInput, "{lines:#?}");
    assert_eq!(lines[3], connected("s2"), "{lines:#?}");
    assert_eq!(lines.last(), Some(&whoami(&user, "s2", "s1", "s2")));
    assert_eq!(new_s2.logins(), vec![user]);
}
