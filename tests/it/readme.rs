//! The README's examples, run as written against a farm the test starts.
//!
//! Each example is the code block after a marker `<!-- tested: NAME -->` in README.md. The
//! shell examples run under `sh -c` with three things put in place, and nothing else changed:
//! `./target/release/` is the folder of the binaries under test, `127.0.0.1:7000`, `:7001` and
//! `:7002` are the addresses of the farm's s1, s2 and s3, and the `data/` of `scripts/run` is
//! the test's (its farm key and s1's admin socket). The quick-start transcripts are typed into
//! terminals (tmux), as a person would type them, and the screens must show them line for
//! line; only the clock in a timestamp (`[12:04]`) may differ.

use chat_tests::{binary, Farm, Terminal};
use serde_json::Value;
use std::path::Path;

const README: &str = include_str!("../../README.md");

/// The code block after `<!-- tested: name -->`, without its fences.
fn example(name: &str) -> Vec<&'static str> {
    let marker = format!("<!-- tested: {name} -->");
    let mut lines = README.lines().skip_while(|line| line.trim() != marker);
    assert!(lines.next().is_some(), "README.md has no {marker}");
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.starts_with("```"),
        "{marker} is not followed by a code block: {fence:?}"
    );
    lines.take_while(|line| !line.starts_with("```")).collect()
}

/// A shell example with the farm, the binaries and the data folder put in place.
fn shell(name: &str, farm: &Farm) -> String {
    let mut script = example(name).join("\n");
    let bin_dir = binary("chat-client")
        .parent()
        .expect("binaries live in a folder")
        .display()
        .to_string();
    script = script.replace("./target/release/", &format!("{bin_dir}/"));
    for (idx, server) in farm.servers.iter().enumerate() {
        script = script.replace(&format!("127.0.0.1:{}", 7000 + idx), &server.addr);
    }
    let farm_pub = farm.db.keys.join("farm.pub").display().to_string();
    script = script.replace("data/keys/farm.pub", &farm_pub);
    let socket = farm.server("s1").admin_socket.display().to_string();
    script.replace("data/run/s1.sock", &socket)
}

/// A line as the README shows it: a message's clock is written `[HH:MM]`.
fn mask_time(line: &str) -> String {
    let bytes = line.as_bytes();
    let is_clock = bytes.len() >= 7
        && bytes[0] == b'['
        && bytes[3] == b':'
        && bytes[6] == b']'
        && [1, 2, 4, 5].iter().all(|&idx| bytes[idx].is_ascii_digit());
    if is_clock {
        format!("[HH:MM]{}", &line[7..])
    } else {
        line.to_string()
    }
}

fn masked(lines: &[impl AsRef<str>]) -> Vec<String> {
    lines.iter().map(|line| mask_time(line.as_ref())).collect()
}

/// One line of a transcript, as the person at the terminal lives it.
enum Step<'a> {
    /// What the client prints.
    Output,
    /// The prompt (without its last space), then what the person types after it.
    Input { prompt: &'a str, typed: &'a str },
    /// The client asks for a password, which the screen does not show.
    Password(&'a str),
}

fn step(line: &str) -> Step<'_> {
    if line.starts_with("password for ") && line.ends_with(':') {
        return Step::Password(line);
    }
    if let Some((before, typed)) = line.split_once("> ") {
        let prompt_chars = |c: char| c.is_ascii_alphanumeric() || "_.-@".contains(c);
        if before.chars().all(prompt_chars) {
            let prompt = &line[..before.len() + 1];
            return Step::Input { prompt, typed };
        }
    }
    Step::Output
}

/// Plays `transcript` in `terminal`: before each line typed, the screen must show every line
/// of the transcript so far; the password is `password`. Returns the lines it showed.
async fn play(terminal: &Terminal, transcript: &[&str], password: &str) -> Vec<String> {
    for (idx, line) in transcript.iter().enumerate() {
        let expected = masked(&transcript[..idx]);
        let (last, typed) = match step(line) {
            Step::Output => continue,
            Step::Input { prompt, typed } => (prompt, typed),
            Step::Password(prompt) => (prompt, password),
        };
        let what = format!("the transcript up to {line:?}");
        terminal
            .wait_for(&what, |screen| {
                screen.len() == idx + 1 && masked(&screen[..idx]) == expected && screen[idx] == last
            })
            .await;
        terminal.type_line(typed).await;
    }
    let expected = masked(transcript);
    let screen = terminal
        .wait_for("the whole transcript", |screen| {
            screen.len() == transcript.len() + 1 && masked(&screen[..transcript.len()]) == expected
        })
        .await;
    screen[..transcript.len()].to_vec()
}

/// The prompt the transcript leaves up: that of its last line typed.
fn last_prompt<'a>(transcript: &[&'a str]) -> &'a str {
    transcript
        .iter()
        .rev()
        .find_map(|line| match step(line) {
            Step::Input { prompt, .. } => Some(prompt),
            _ => None,
        })
        .expect("a transcript types something")
}

/// A terminal running the quick start's client command.
async fn quick_start_client(farm: &Farm, config_home: &Path) -> Terminal {
    let command = shell("quick-start-client", farm);
    let config_home = config_home.display().to_string();
    let env = [("XDG_CONFIG_HOME", config_home.as_str())];
    Terminal::start(Path::new("/bin/sh"), &["-c", &command], &env).await
}

/// Runs a shell example; returns its exit status and standard output.
async fn run_shell(name: &str, farm: &Farm, config_home: &Path) -> (Option<i32>, String) {
    let output = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(shell(name, farm))
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("RUST_LOG")
        .output();
    let output = tokio::time::timeout(chat_tests::EVENT_TIMEOUT, output)
        .await
        .unwrap_or_else(|_| panic!("the {name} example did not finish in time"))
        .expect("run sh");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    (output.status.code(), stdout)
}

/// A JSON line with the fields that differ from run to run (a message id) blanked.
fn json_shape(line: &str) -> Value {
    let mut value: Value =
        serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON: {line:?}: {err}"));
    if value.get("id").is_some() {
        value["id"] = Value::Null;
    }
    value
}

#[tokio::test]
async fn the_readme_examples_run_as_written() {
    let farm = Farm::start(3).await;
    let home = std::env::temp_dir().join(format!(
        "chat-test-readme-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&home).expect("create the home folder");

    // The quick start: alice in one terminal, then bob in another.
    let alice_transcript = example("quick-start-alice");
    let alice = quick_start_client(&farm, &home).await;
    play(&alice, &alice_transcript, "pw-alice").await;
    let bob = quick_start_client(&farm, &home).await;
    play(&bob, &example("quick-start-bob"), "pw-bob").await;
    // What bob sent shows in alice's terminal, above her prompt.
    let mut expected = masked(&alice_transcript);
    expected.extend(masked(&example("quick-start-alice-sees")));
    expected.push(last_prompt(&alice_transcript).to_string());
    alice
        .wait_for("bob's messages in alice's terminal", |screen| {
            masked(screen) == expected
        })
        .await;

    // The JSON example, exactly as its output is shown (but for the message's id).
    let (code, stdout) = run_shell("json-example", &farm, &home).await;
    assert_eq!(code, Some(0), "{stdout}");
    let shown: Vec<Value> = example("json-example-output")
        .into_iter()
        .map(json_shape)
        .collect();
    let printed: Vec<Value> = stdout.lines().map(json_shape).collect();
    assert_eq!(printed, shown, "{stdout}");
    let delivered = "[HH:MM] [carol] hello from a script";
    alice
        .wait_for("carol's message in alice's terminal", |screen| {
            masked(screen).iter().any(|line| line == delivered)
        })
        .await;

    // Asking a server in the background.
    let (code, stdout) = run_shell("admin-example", &farm, &home).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("ring: 3 live, V=64"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn transcripts_read_as_a_person_types() {
    assert!(matches!(step("connected to s2"), Step::Output));
    assert!(matches!(
        step("> login alice"),
        Step::Input {
            prompt: ">",
            typed: "login alice"
        }
    ));
    assert!(matches!(
        step("alice@s1> send #ops a > b"),
        Step::Input {
            prompt: "alice@s1>",
            typed: "send #ops a > b"
        }
    ));
    assert!(matches!(step("[12:04] [bob] a> b"), Step::Output));
    assert!(matches!(
        step("password for alice:"),
        Step::Password("password for alice:")
    ));
    assert_eq!(mask_time("[12:04] [bob] hi"), "[HH:MM] [bob] hi");
    assert_eq!(mask_time("[bob] hi"), "[bob] hi");
}
