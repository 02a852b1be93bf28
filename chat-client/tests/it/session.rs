//! The session, driven through the library with scripted input and captured output.

use crate::fake_server::{messages, pinned, who, FakeServer, OnWho, SENT_AT};
use crate::farm::connected;
use crate::support::{who_answer, whole_log_confirmed};
use chat_client::connection::Connection;
use chat_client::input::Input;
use chat_client::output::{Format, LineSink, Output};
use chat_client::session::{Config, Exit, Session};
use chat_proto::Request;
use serde_json::{json, Value};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Collects printed lines for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl LineSink for Captured {
    fn write_line(&mut self, line: &str) -> io::Result<()> {
        self.0.lock().expect("not poisoned").push(line.to_string());
        Ok(())
    }
}

impl Captured {
    fn json(&self) -> Vec<Value> {
        let lines = self.0.lock().expect("not poisoned").clone();
        lines
            .iter()
            .map(|line| serde_json::from_str(line).expect("every line is JSON"))
            .collect()
    }
}

pub fn login(user: &str, password: &str) -> Request {
    Request::password_login(user, password)
}

pub fn ticket_login(user: &str, ticket: &[u8]) -> Request {
    Request::Login {
        user: user.into(),
        credential: chat_proto::Credential::Ticket(chat_proto::Ticket(ticket.to_vec())),
        refused_by: None,
    }
}

/// Runs a session over `script` against a fresh fake server; returns its exit and its lines.
async fn run(on_who: OnWho, script: &str) -> (FakeServer, Exit, Vec<Value>) {
    let server = FakeServer::start(on_who).await;
    let (exit, lines) = run_on(&server, script).await;
    server.until_closed().await;
    (server, exit, lines)
}

/// As [`run`], and checks that the session ran to the end of its input.
async fn run_fresh_to_end(on_who: OnWho, script: &str) -> (FakeServer, Vec<Value>) {
    let (server, exit, lines) = run(on_who, script).await;
    assert_eq!(exit, Exit::EndOfInput, "{lines:#?}");
    (server, lines)
}

/// What a session prints when the fake drops its first connection at the first `who`: it
/// connects again, and `who` is answered there.
fn reconnected_for_who() -> Vec<Value> {
    vec![connected("fake"), connected("fake"), who_answer()]
}

/// Runs a session over `script`, connected first to `server`; returns its exit and its lines.
pub async fn run_on(server: &FakeServer, script: &str) -> (Exit, Vec<Value>) {
    let config = Config {
        // No looks at the ring, so that the requests each server got are exactly the test's.
        home_poll: Duration::from_secs(600),
        ..Config::new(vec![server.addr.to_string()], pinned())
    };
    run_with(server, config, script).await
}

/// Runs a session with `config` over `script`, connected first to `server`.
pub async fn run_with(server: &FakeServer, config: Config, script: &str) -> (Exit, Vec<Value>) {
    let captured = Captured::default();
    let output = Output::new(Format::Json, Box::new(captured.clone()));
    let (connection, incoming) =
        Connection::connect(&server.addr.to_string(), &config.connect_options())
            .await
            .expect("the fake server answers");
    let mut input = Input::lines(io::Cursor::new(script.as_bytes().to_vec()));
    let exit = Session::new(&output, config)
        .run(connection, incoming, &mut input)
        .await;
    (exit, captured.json())
}

#[tokio::test]
async fn commands_are_answered_in_order_and_messages_shown_once() {
    let script = "login alice pw\n\nsend bob hi  there\nsend nobody hi\nsend bob\njoin #ops\nreadlog\nwho\ndance\n";
    let (server, lines) = run_fresh_to_end(OnWho::Answer, script).await;

    let [first, second, third] = messages();
    let send_id = lines
        .get(3)
        .and_then(|line| line.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    assert!(send_id.is_string(), "{lines:#?}");
    let expected = vec![
        connected("fake"),
        json!({"type":"message","id":first.id.to_string(),"from":"bob","to":"alice","text":"hello  alice","sent_at":SENT_AT}),
        json!({"type":"ok","command":"login","user":"alice","registered":true,"waiting":3}),
        json!({"type":"ok","command":"send","id":send_id}),
        json!({"type":"error","command":"send","message":"no such user \"nobody\""}),
        json!({"type":"error","command":"send","message":"message text is empty"}),
        json!({"type":"ok","command":"join","group":"ops"}),
        json!({"type":"message","id":second.id.to_string(),"from":"carol","group":"ops","text":"deploy?","sent_at":SENT_AT,"offline":true}),
        json!({"type":"message","id":third.id.to_string(),"from":"bob","to":"alice","text":"are you there","sent_at":SENT_AT,"offline":true}),
        json!({"type":"ok","command":"readlog","count":2}),
        who_answer(),
        json!({"type":"error","command":"dance","message":"unknown command \"dance\"; type help for a list"}),
    ];
    assert_eq!(lines, expected);

    // The server had no ring to give, so the login stayed on this connection.
    assert_eq!(
        server.requests()[..2],
        [Request::Ring, login("alice", "pw")]
    );
    // The live message was acknowledged; every log batch was confirmed, duplicate included.
    assert_eq!(server.acked(), vec![first.id]);
    assert_eq!(server.confirmed(), whole_log_confirmed());
}

#[tokio::test]
async fn a_dropped_connection_is_replaced_and_the_command_runs_again() {
    // The fake hangs up on the first `who` only; it is the only server there is.
    let (server, lines) = run_fresh_to_end(OnWho::Hangup, "who\nwhoami\n").await;
    let mut expected = reconnected_for_who();
    expected.push(json!({"type":"ok","command":"whoami","user":"","server":"fake","home":"fake","backup":null}));
    assert_eq!(lines, expected);
    assert_eq!(
        server.requests(),
        vec![who(), Request::Ring, who(), Request::WhoAmI]
    );
}

#[tokio::test]
async fn the_servers_goodbye_leads_to_a_reconnect() {
    let (_server, lines) = run_fresh_to_end(OnWho::SayClosing, "who\n").await;
    assert_eq!(lines, reconnected_for_who());
}

#[tokio::test]
async fn quit_stops_reading() {
    let (_server, exit, lines) = run(OnWho::Answer, "quit\nwho\n").await;
    assert_eq!(exit, Exit::Quit);
    assert_eq!(
        lines,
        vec![connected("fake"), json!({"type":"ok","command":"quit"})]
    );
}

#[tokio::test]
async fn whois_and_whoami_report_placements() {
    let script = "whois bob\nwhois carol\nwhois b@d\nlogin alice pw\nwhoami\n";
    let (_server, lines) = run_fresh_to_end(OnWho::Answer, script).await;
    let expected = vec![
        connected("fake"),
        json!({"type":"ok","command":"whois","user":"bob","online":true,"server":"s2","home":"s2","backup":"s3"}),
        json!({"type":"ok","command":"whois","user":"carol","online":false,"server":null,"home":"s1","backup":null}),
        json!({"type":"error","command":"whois","message":"user name may only contain A-Z a-z 0-9 _ . - (found '@')"}),
        json!({"type":"message","id":messages()[0].id.to_string(),"from":"bob","to":"alice","text":"hello  alice","sent_at":SENT_AT}),
        json!({"type":"ok","command":"login","user":"alice","registered":true,"waiting":3}),
        json!({"type":"ok","command":"whoami","user":"alice","server":"fake","home":"fake","backup":null}),
    ];
    assert_eq!(lines, expected);
}
