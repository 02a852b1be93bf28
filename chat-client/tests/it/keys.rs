//! Server keys: a pinned key, trust on first use, servers with a wrong key passed over at
//! start and when failing over, and a frame that does not decrypt.

use crate::binary::{run, server_key_args, temp_dir};
use crate::failover::{config, drive, whoami};
use crate::fake_server::{farm_key, other_key, pinned, who, FakeServer, OnWho};
use crate::farm::{connected, farm, user_placed};
use crate::support::{drive_logged_in, logged_in_at, moved_after_login, ringed_farm, who_answer};
use chat_client::connection::{ConnectError, Connection, Incoming, RequestError};
use chat_client::farm::connect_any;
use chat_client::session::{Config, Exit};
use chat_proto::key_to_hex;
use serde_json::{json, Value};

/// An address where nothing listens.
const DEAD: &str = "127.0.0.1:1";

fn farm_hex() -> String {
    key_to_hex(&farm_key().public_key())
}

fn other_hex(seed: u8) -> String {
    key_to_hex(&other_key(seed).public_key())
}

fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect()
}

fn connection_error(message: &str) -> Value {
    json!({"type":"error","command":"connection","message":message})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_key_that_matches_connects() {
    let server = FakeServer::start(OnWho::Answer).await;
    let mut args = vec!["--server".into(), server.addr.to_string(), "--json".into()];
    args.extend(server_key_args());
    let ran = run(args, "who\n").await;
    assert_eq!(ran.code, Some(0), "{:#?} {}", ran.lines, ran.stderr);
    assert_eq!(parse(&ran.lines), [connected("fake"), who_answer()]);
    assert_eq!(ran.stderr, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_key_that_differs_is_refused_before_the_hello() {
    let server = FakeServer::start(OnWho::Answer).await;
    server.set_key(other_key(7));
    let addr = server.addr.to_string();
    let mut args = vec!["--server".into(), addr.clone(), "--json".into()];
    args.extend(server_key_args());
    let ran = run(args, "who\n").await;
    assert_eq!(ran.code, Some(1), "{:#?} {}", ran.lines, ran.stderr);
    let message = format!(
        "no server could be trusted (the key of {addr} is {}, not the farm key {} given with \
         --server-key; someone may be intercepting the connection, or the server belongs to \
         another farm)",
        other_hex(7),
        farm_hex()
    );
    assert_eq!(parse(&ran.lines), [connection_error(&message)]);
    // The handshake was made; nothing followed it.
    assert_eq!(server.accepted(), 1);
    assert_eq!(server.hellos(), 0);
    assert!(server.received().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn first_use_records_the_key_and_a_changed_key_is_refused_every_time() {
    let server = FakeServer::start(OnWho::Answer).await;
    let addr = server.addr.to_string();
    let dir = temp_dir("first-use");
    let file = dir.join("chat").join("known_servers");
    let shown_file = file.display().to_string();
    let args = vec![
        "--server".to_string(),
        addr.clone(),
        "--json".to_string(),
        "--known-servers".to_string(),
        shown_file.clone(),
    ];

    let first = run(args.clone(), "who\n").await;
    assert_eq!(first.code, Some(0), "{:#?} {}", first.lines, first.stderr);
    assert_eq!(parse(&first.lines), [connected("fake"), who_answer()]);
    let note = format!(
        "trusting the key of {addr} for the first time: {} (recorded in {shown_file})\n",
        farm_hex()
    );
    assert_eq!(first.stderr, note);
    let recorded = format!("{addr} {}\n", farm_hex());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), recorded);

    // The same key again: known, and nothing said.
    let second = run(args.clone(), "who\n").await;
    assert_eq!(
        second.code,
        Some(0),
        "{:#?} {}",
        second.lines,
        second.stderr
    );
    assert_eq!(parse(&second.lines), [connected("fake"), who_answer()]);
    assert_eq!(second.stderr, "");

    // The server at that address now presents another key.
    server.set_key(other_key(9));
    let message = format!(
        "no server could be trusted (the key of {addr} has changed: {shown_file} records {}, \
         the server presented {}. Someone may be intercepting the connection, or the farm's \
         key was replaced; if you trust the new key, delete the line for {addr} from \
         {shown_file})",
        farm_hex(),
        other_hex(9)
    );
    for _ in 0..2 {
        let refused = run(args.clone(), "who\n").await;
        assert_eq!(refused.code, Some(1), "{:#?}", refused.lines);
        assert_eq!(parse(&refused.lines), [connection_error(&message)]);
        assert_eq!(refused.stderr, "");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), recorded);
    assert_eq!(server.hellos(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn connecting_passes_over_a_server_with_a_wrong_key() {
    let servers = farm(["bad", "good"]).await;
    let [bad, good] = &servers;
    bad.set_key(other_key(7));
    let (bad, good) = (bad.addr.to_string(), good.addr.to_string());
    let options = Config::new(Vec::new(), pinned()).connect_options();

    let seeds = [bad.clone(), good];
    let (connection, _incoming) = connect_any(&seeds, &options).await.expect("good answers");
    assert_eq!(connection.server_name(), "good");
    connection.close().await;

    // Refused everywhere: the error says so. Refused and not answering: nobody answered.
    let refused = connect_any(&[bad.clone(), bad.clone()], &options).await;
    assert!(
        matches!(&refused, Err(ConnectError::NoneTrusted(errors)) if errors.len() == 2),
        "{:?}",
        refused.err()
    );
    let mixed = connect_any(&[bad, DEAD.to_string()], &options).await;
    assert!(
        matches!(&mixed, Err(ConnectError::NoneAnswered(errors)) if errors.len() == 2),
        "{:?}",
        mixed.err()
    );
}

#[tokio::test]
async fn a_failover_passes_over_a_server_with_a_wrong_key() {
    let servers = ringed_farm(["s1", "s2", "s3"]).await;
    let [s1, s2, s3] = &servers;
    s2.set_key(other_key(7));
    let user = user_placed(&["s1", "s2", "s3"], &["s1", "s2", "s3"]);

    let (exit, lines, ()) = drive_logged_in(s1, config(s1), &user, |mut keys, screen| async move {
        s1.crash();
        screen.wait_for(&connected("s3")).await;
        keys.type_line("whoami").await;
    })
    .await;
    assert_eq!(exit, Exit::EndOfInput, "{lines:#?}");
    let mut expected = moved_after_login(&user, "s1", "s3");
    expected.push(whoami(&user, "s3", "s1", "s2"));
    assert_eq!(lines, expected);
    // The backup was tried first, and refused after its handshake.
    assert!(s2.accepted() >= 1);
    assert_eq!(s2.hellos(), 0);
    assert_eq!(s3.logins(), vec![user]);
}

#[tokio::test]
async fn a_wrong_key_and_a_server_that_is_down_keep_the_failover_trying() {
    let servers = ringed_farm(["s1", "s2"]).await;
    let [s1, s2] = &servers;
    s2.set_key(other_key(7));
    let user = user_placed(&["s1", "s2"], &["s1", "s2"]);

    let (exit, lines, ()) = drive_logged_in(s1, config(s1), &user, |mut keys, screen| async move {
        s1.crash();
        // Two walks, each past the refused s2 to the lost s1, which is down.
        s2.until_accepted(2).await;
        s1.come_back();
        screen.wait_for(&connected("s1")).await;
        keys.type_line("whoami").await;
    })
    .await;
    assert_eq!(exit, Exit::EndOfInput, "{lines:#?}");
    let mut expected = moved_after_login(&user, "s1", "s1");
    expected.push(whoami(&user, "s1", "s1", "s2"));
    assert_eq!(lines, expected);
    assert_eq!(s2.hellos(), 0);
}

#[tokio::test]
async fn when_every_server_has_a_wrong_key_the_failover_stops_with_the_error() {
    let servers = ringed_farm(["s1", "s2"]).await;
    let [s1, s2] = &servers;
    s2.set_key(other_key(7));
    let user = user_placed(&["s1", "s2"], &["s1", "s2"]);

    let login = format!("login {user} pw");
    let (exit, lines, error) = drive(s1, config(s1), |mut keys, screen| async move {
        keys.type_line(&login).await;
        screen.answer("login").await;
        // Home restarts with another key.
        s1.set_key(other_key(8));
        s1.crash();
        s1.come_back();
        screen.answer("connection").await
    })
    .await;
    assert_eq!(exit, Exit::Untrusted, "{lines:#?}");
    assert_eq!(exit.code(), 1);
    let mut expected = logged_in_at(&user, "s1");
    expected.push(error.clone());
    assert_eq!(lines, expected);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("no server could be trusted (the key of "),
        "{message}"
    );
    for (server, seed) in [(s1, 8), (s2, 7)] {
        let (addr, presented) = (server.addr, other_hex(seed));
        let refusal = format!("the key of {addr} is {presented}, not the farm key");
        assert!(message.contains(&refusal), "{message}");
    }
    assert_eq!((s1.hellos(), s2.hellos()), (1, 0));
}

#[tokio::test]
async fn a_frame_that_does_not_decrypt_ends_the_connection() {
    let server = FakeServer::start(OnWho::Garble).await;
    let options = Config::new(Vec::new(), pinned()).connect_options();
    let (connection, mut incoming) = Connection::connect(&server.addr.to_string(), &options)
        .await
        .expect("the fake server answers");
    // The server goes on serving after the garbage; the client must not.
    let who = connection.request(who()).await;
    assert!(matches!(who, Err(RequestError::ConnectionLost)), "{who:?}");
    let end = incoming.recv().await;
    assert!(
        matches!(&end, Some(Incoming::Lost(reason)) if reason.contains("decryption failed")),
        "{end:?}"
    );
    connection.close().await;
    server.until_closed().await;
}
