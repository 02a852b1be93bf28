//! The client at a terminal, driven through tmux as a person at a keyboard: the prompt that
//! says where you are, tab completion, timestamps, IRC's `/` commands, and a history that
//! outlives the process and never holds a password.

use chat_tests::{binary, Client, Server, Terminal, TestDb};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A POSIX rule for India's time, UTC+05:30 all year: a zone whose offset is not whole hours,
/// and which needs no time zone database on the machine.
const TZ_INDIA: &str = "IST-5:30";

/// A fresh folder for a test's files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chat-test-{name}-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary folder");
    dir
}

/// `chat-client` of `server` in a terminal, its folder `config_home/chat-client`, its time
/// zone `tz`, the farm's key pinned.
async fn client_terminal(
    db: &TestDb,
    server: &Server,
    config_home: &Path,
    tz: &str,
    flags: &[&str],
) -> Terminal {
    let key = db.farm_public_key();
    let mut args = vec!["--server", &server.addr, "--server-key", &key];
    args.extend_from_slice(flags);
    let config_home = config_home.display().to_string();
    let env = [("XDG_CONFIG_HOME", config_home.as_str()), ("TZ", tz)];
    Terminal::start(&binary("chat-client"), &args, &env).await
}

/// The local time in India of an ISO 8601 UTC time such as `2026-12-02T03:04:05.678Z`.
fn india_hh_mm(sent_at: &str) -> String {
    let time = sent_at.split('T').nth(1).expect("a date and a time");
    let hours: u32 = time[..2].parse().expect("hours");
    let minutes: u32 = time[3..5].parse().expect("minutes");
    let local = (hours * 60 + minutes + 5 * 60 + 30) % (24 * 60);
    format!("{:02}:{:02}", local / 60, local % 60)
}

#[tokio::test]
async fn a_person_completes_names_sees_times_and_types_irc_commands() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut alice = Client::login(&server, "alice").await;
    let mut carol = Client::login(&server, "carol").await;
    alice.ok("join ops").await;
    carol.ok("join ops").await;
    let home = temp_dir("terminal-home");
    let bob = client_terminal(&db, &server, &home, TZ_INDIA, &[]).await;

    bob.wait_for_last_line("> ").await;
    bob.type_line("login bob pw-bob").await;
    // The prompt says who is logged in where.
    let screen = bob.wait_for_last_line("bob@s1> ").await;
    assert!(
        screen.contains(&"registered and logged in as bob; 0 messages waiting".to_string()),
        "{screen:#?}"
    );

    // Names from `who` complete.
    bob.type_line("who").await;
    bob.wait_for_line("who: alice, bob, carol").await;
    bob.type_text("send al").await;
    bob.press("Tab").await;
    bob.wait_for_last_line("bob@s1> send alice ").await;
    bob.type_line("hi alice").await;
    alice.message("hi alice").await;

    // Groups complete once joined, with IRC's `/join`.
    bob.type_text("/jo").await;
    bob.press("Tab").await;
    bob.wait_for_last_line("bob@s1> /join ").await;
    bob.type_line("ops").await;
    bob.wait_for_line("joined #ops").await;
    bob.type_text("send #o").await;
    bob.press("Tab").await;
    bob.wait_for_last_line("bob@s1> send #ops ").await;
    bob.type_line("ready").await;
    carol.message("ready").await;

    // A message shows the local time it was sent.
    alice.ok("send #ops hello ops").await;
    let sent_at = carol.message("hello ops").await["sent_at"]
        .as_str()
        .expect("JSON messages carry sent_at")
        .to_owned();
    let stamped = format!("[{}] [#ops alice] hello ops", india_hh_mm(&sent_at));
    bob.wait_for_line(&stamped).await;

    // Someone who wrote to you completes, though `who` did not list them.
    let mut dave = Client::login(&server, "dave").await;
    dave.ok("send bob psst").await;
    bob.wait_for("dave's message", |screen| {
        screen.iter().any(|line| line.ends_with("] [dave] psst"))
    })
    .await;
    bob.type_text("whois d").await;
    bob.press("Tab").await;
    bob.wait_for_last_line("bob@s1> whois dave ").await;
    bob.press("Enter").await;
    bob.wait_for_line("whois dave: online on s1 (home s1, no backup)")
        .await;

    // `/me` goes where the last message went; `/msg` is `send`; `/part` leaves.
    bob.type_line("/me waves").await;
    carol.message("* bob waves").await;
    bob.type_line("/msg carol see you").await;
    carol.message("see you").await;
    bob.type_text("/part #o").await;
    bob.press("Tab").await;
    bob.wait_for_last_line("bob@s1> /part #ops ").await;
    bob.press("Enter").await;
    bob.wait_for_line("left #ops").await;
    bob.type_line("/quit").await;
    assert_eq!(bob.wait_exit().await, 0);
    let _ = std::fs::remove_dir_all(&home);
}

#[tokio::test]
async fn history_outlives_the_client_and_never_holds_a_password() {
    let db = TestDb::new().await;
    let server = Server::start(&db, "s1").await;
    let mut alice = Client::login(&server, "alice").await;
    let home = temp_dir("history-home");
    let bob = client_terminal(&db, &server, &home, TZ_INDIA, &[]).await;
    bob.wait_for_last_line("> ").await;
    bob.type_line("login bob pw-bob").await;
    bob.wait_for_last_line("bob@s1> ").await;
    bob.type_line("who").await;
    bob.wait_for_line("who: alice, bob").await;
    // Up twice finds `who` and nothing older: the login with its password is not there.
    // The `x` typed after them shows when both were read.
    bob.press("Up").await;
    bob.press("Up").await;
    bob.type_text("x").await;
    bob.wait_for_last_line("bob@s1> whox").await;
    bob.press("C-u").await;
    bob.wait_for_last_line("bob@s1> ").await;
    bob.type_line("send alice remember me").await;
    alice.message("remember me").await;
    bob.type_line("quit").await;
    assert_eq!(bob.wait_exit().await, 0);

    // On disk, in the client's folder, for its user alone.
    let path = home.join("chat-client").join("history");
    let mode = std::fs::metadata(&path)
        .expect("the history file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{:o}", mode & 0o777);
    let kept = std::fs::read_to_string(&path).expect("read the history");
    assert!(!kept.contains("pw-bob"), "{kept}");
    for line in ["who", "send alice remember me", "quit"] {
        assert!(
            kept.lines().any(|kept| kept == line),
            "{line:?} not in {kept}"
        );
    }

    // The next run starts with it; a password asked for at the prompt stays out too.
    let bob = client_terminal(&db, &server, &home, TZ_INDIA, &["--no-timestamps"]).await;
    bob.wait_for_last_line("> ").await;
    bob.press("Up").await;
    bob.wait_for_last_line("> quit").await;
    bob.press("Up").await;
    bob.wait_for_last_line("> send alice remember me").await;
    bob.press("C-u").await;
    bob.type_line("login bob").await;
    bob.wait_for_last_line("password for bob:").await;
    bob.type_line("pw-bob").await;
    bob.wait_for_last_line("bob@s1> ").await;
    // Without timestamps, as asked.
    alice.ok("send bob hello again").await;
    bob.wait_for_line("[alice] hello again").await;
    // Ctrl-D once the prompt is drawn again below the message: a key that arrives while the
    // editor redraws around a printed message can be taken before the prompt is back.
    bob.wait_for_last_line("bob@s1> ").await;
    bob.press("C-d").await;
    assert_eq!(bob.wait_exit().await, 0);
    let kept = std::fs::read_to_string(&path).expect("read the history");
    assert!(!kept.contains("pw-bob"), "{kept}");
    assert!(kept.lines().any(|kept| kept == "login bob"), "{kept}");
    let _ = std::fs::remove_dir_all(&home);
}
