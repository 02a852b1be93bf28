//! The `chat-client` binary in pipe mode: exit codes and printed lines.

use crate::fake_server::{messages, FakeServer, OnWho};
use crate::farm::user_placed;
use chat_proto::Request;
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs the binary with `args`, feeding `input` on standard input; returns exit code and lines.
async fn run_binary(args: Vec<String>, input: &'static str) -> (Option<i32>, Vec<String>) {
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-client"))
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("the binary finishes")
    })
    .await
    .expect("the blocking task finishes");
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    (
        output.status.code(),
        stdout.lines().map(String::from).collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pipe_mode_answers_every_command_then_exits_zero() {
    let server = FakeServer::start(OnWho::Answer).await;
    let args = vec![
        "--server".to_string(),
        "127.0.0.1:1".to_string(),
        "--server".to_string(),
        server.addr.to_string(),
        "--json".to_string(),
    ];
    let (code, lines) = run_binary(args, "login alice\nwho\nhelp\n").await;
    assert_eq!(code, Some(0), "{lines:#?}");
    assert_eq!(
        lines,
        vec![
            r#"{"type":"connected","server":"fake"}"#,
            r#"{"type":"error","command":"login","message":"password required when input is not a terminal"}"#,
            r#"{"type":"ok","command":"who","users":["alice","bob"]}"#,
            r#"{"type":"ok","command":"help","commands":["login","logout","send","join","leave","groups","readlog","who","whois","whoami","help","quit"]}"#,
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_server_answering_exits_one() {
    let args = vec!["--server".to_string(), "127.0.0.1:1".to_string()];
    let (code, lines) = run_binary(args, "who\n").await;
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("error: no server answered (cannot connect to 127.0.0.1:1: "),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ping_flags_decide_when_a_hung_server_is_left() {
    let home = FakeServer::start_named("s1", OnWho::Hang).await;
    let backup = FakeServer::start_named("s2", OnWho::Answer).await;
    let ring = [
        ("s1", &*home.addr.to_string()),
        ("s2", &*backup.addr.to_string()),
    ];
    home.set_ring(&ring);
    backup.set_ring(&ring);
    let user = user_placed(&["s1", "s2"], &["s1", "s2"]);
    let args = [
        "--server",
        &home.addr.to_string(),
        "--json",
        "--ping-interval-ms",
        "100",
        "--ping-misses",
        "2",
        // No look at the hung home, so that every ping it gets is counted.
        "--home-poll-ms",
        "600000",
    ];
    let args = args.iter().map(|arg| arg.to_string()).collect();
    let input = format!("login {user} pw\nwho\n").leak();

    let (code, lines) = run_binary(args, input).await;
    assert_eq!(code, Some(0), "{lines:#?}");
    let [first, second, third] = messages();
    let message = |id: chat_proto::MessageId, rest: &str| {
        format!(r#"{{"type":"message","id":"{id}",{rest}}}"#)
    };
    assert_eq!(
        lines,
        vec![
            r#"{"type":"connected","server":"s1"}"#.to_string(),
            message(
                first.id,
                r#""from":"bob","to":"alice","text":"hello  alice""#
            ),
            format!(
                r#"{{"type":"ok","command":"login","user":"{user}","registered":true,"waiting":3}}"#
            ),
            r#"{"type":"connected","server":"s2"}"#.to_string(),
            message(
                second.id,
                r#""from":"carol","group":"ops","text":"deploy?","offline":true"#
            ),
            message(
                third.id,
                r#""from":"bob","to":"alice","text":"are you there","offline":true"#
            ),
            r#"{"type":"ok","command":"who","users":["alice","bob"]}"#.to_string(),
        ]
    );
    // The hung home was left once it had been silent for two ping intervals: after one or two
    // unanswered pings, depending on where in the ping cycle it hung.
    let hung_at = home.frames_before(&Request::Who);
    let unanswered = home.pings_after(hung_at);
    assert!(
        (1..=2).contains(&unanswered),
        "{unanswered} unanswered pings"
    );
}
