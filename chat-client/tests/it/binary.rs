//! The `chat-client` binary in pipe mode: exit codes and printed lines.

use crate::fake_server::{farm_key, messages, who, FakeServer, OnWho, SENT_AT};
use crate::farm::user_placed;
use chat_proto::key_to_hex;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a run of the binary left.
pub struct Ran {
    pub code: Option<i32>,
    /// Standard output, by lines.
    pub lines: Vec<String>,
    pub stderr: String,
}

/// The flag that pins the fake farm's key.
pub fn server_key_args() -> [String; 2] {
    ["--server-key".into(), key_to_hex(&farm_key().public_key())]
}

/// A fresh, empty folder, named after `name`, this process and a count.
pub fn temp_dir(name: &str) -> PathBuf {
    static N_DIRS: AtomicUsize = AtomicUsize::new(0);
    let idx = N_DIRS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "chat-client-test-{}-{idx}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    dir
}

/// Runs the binary with `args`, feeding `input` on standard input; returns exit code and lines.
async fn run_binary(args: Vec<String>, input: &'static str) -> (Option<i32>, Vec<String>) {
    let ran = run(args, input).await;
    (ran.code, ran.lines)
}

/// Runs the binary with `args`, feeding `input` on standard input. Its configuration folder
/// is a temporary one, so that no run touches the real known-servers file.
pub async fn run(args: Vec<String>, input: &'static str) -> Ran {
    let config_home = temp_dir("config-home");
    let child_config_home = config_home.clone();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-client"))
            .args(&args)
            .env("XDG_CONFIG_HOME", child_config_home)
            // Standard error is checked: no logs on it.
            .env_remove("RUST_LOG")
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
    let _ = std::fs::remove_dir_all(config_home);
    let stdout = String::from_utf8(output.stdout).expect("stdout is UTF-8");
    Ran {
        code: output.status.code(),
        lines: stdout.lines().map(String::from).collect(),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pipe_mode_answers_every_command_then_exits_zero() {
    let server = FakeServer::start(OnWho::Answer).await;
    let mut args = vec![
        "--server".to_string(),
        "127.0.0.1:1".to_string(),
        "--server".to_string(),
        server.addr.to_string(),
        "--json".to_string(),
    ];
    args.extend(server_key_args());
    let (code, lines) = run_binary(args, "login alice\nwho\nhelp\n").await;
    assert_eq!(code, Some(0), "{lines:#?}");
    assert_eq!(
        lines,
        vec![
            r#"{"type":"connected","server":"fake"}"#,
            r#"{"type":"error","command":"login","message":"password required when input is not a terminal"}"#,
            r#"{"type":"ok","command":"who","users":["alice","bob"]}"#,
            r#"{"type":"ok","command":"help","commands":["login","logout","passwd","send","join","leave","groups","members","me","readlog","who","whois","whoami","help","quit"]}"#,
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_whose_last_command_failed_exits_one() {
    let server = FakeServer::start(OnWho::Answer).await;
    let mut args = vec![
        "--server".to_string(),
        server.addr.to_string(),
        "--json".to_string(),
    ];
    args.extend(server_key_args());
    // The fake knows no user "nobody"; a failure before the last command does not count.
    for (input, expected) in [
        ("login alice pw\nsend nobody hi\n", Some(1)),
        ("login alice pw\ndance\n", Some(1)),
        ("login alice pw\nsend nobody hi\nwho\n", Some(0)),
        ("dance\nquit\n", Some(0)),
    ] {
        let (code, lines) = run_binary(args.clone(), input).await;
        assert_eq!(code, expected, "{input:?}: {lines:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_server_answering_exits_one() {
    let mut args = vec!["--server".to_string(), "127.0.0.1:1".to_string()];
    args.extend(server_key_args());
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
    let mut args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    args.extend(server_key_args());
    let input = format!("login {user} pw\nwho\n").leak();

    let (code, lines) = run_binary(args, input).await;
    assert_eq!(code, Some(0), "{lines:#?}");
    let [first, second, third] = messages();
    // `sent_at` comes after the text, `offline` last.
    let message = |id: chat_proto::MessageId, rest: &str, offline: bool| {
        let offline = if offline { r#","offline":true"# } else { "" };
        format!(r#"{{"type":"message","id":"{id}",{rest},"sent_at":"{SENT_AT}"{offline}}}"#)
    };
    assert_eq!(
        lines,
        vec![
            r#"{"type":"connected","server":"s1"}"#.to_string(),
            message(
                first.id,
                r#""from":"bob","to":"alice","text":"hello  alice""#,
                false,
            ),
            format!(
                r#"{{"type":"ok","command":"login","user":"{user}","registered":true,"waiting":3}}"#
            ),
            r#"{"type":"connected","server":"s2"}"#.to_string(),
            message(
                second.id,
                r#""from":"carol","group":"ops","text":"deploy?""#,
                true,
            ),
            message(
                third.id,
                r#""from":"bob","to":"alice","text":"are you there""#,
                true,
            ),
            r#"{"type":"ok","command":"who","users":["alice","bob"]}"#.to_string(),
        ]
    );
    // The hung home was left once it had been silent for two ping intervals: after one or two
    // unanswered pings, depending on where in the ping cycle it hung.
    let hung_at = home.frames_before(&who());
    let unanswered = home.pings_after(hung_at);
    assert!(
        (1..=2).contains(&unanswered),
        "{unanswered} unanswered pings"
    );
}
