//! The `chat-client` binary in pipe mode: exit codes and printed lines.

use crate::fake_server::{FakeServer, OnWho};
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
