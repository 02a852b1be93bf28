//! The benchmark's own binary, `chat-bench`, against a real farm of three servers, with
//! numbers small enough for the suite: its counts must be exact.

use chat_tests::{binary, Farm};
use std::collections::HashMap;
use std::time::Duration;
use tokio::process::Command;

/// How long one `chat-bench` run may take; it stops itself well before.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// One `key=value` line of chat-bench's output.
struct Phase(HashMap<String, String>);

impl Phase {
    #[track_caller]
    fn num(&self, key: &str) -> u64 {
        let value = self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in the line"));
        value
            .parse()
            .unwrap_or_else(|_| panic!("{key}={value} is not a count"))
    }
}

/// Runs `chat-bench WORKLOAD ARGS` against `farm` and returns its phases by name; fails the
/// test unless it exits successfully.
async fn run(farm: &Farm, workload: &str, args: &[&str]) -> HashMap<String, Phase> {
    let output = Command::new(binary("chat-bench"))
        .arg(workload)
        .arg("--servers")
        .arg(farm.addrs().join(","))
        .arg("--server-key-file")
        .arg(farm.db.keys.join("farm.pub"))
        .args(["--timeout-secs", "60"])
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_TIMEOUT, output)
        .await
        .expect("chat-bench stopped in time")
        .expect("run chat-bench");
    let stdout = String::from_utf8(output.stdout).expect("chat-bench prints UTF-8");
    assert!(
        output.status.success(),
        "chat-bench {workload} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let fields: HashMap<String, String> = line
                .split_whitespace()
                .filter_map(|field| field.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect();
            let phase = fields.get("phase").cloned().unwrap_or_default();
            (phase, Phase(fields))
        })
        .collect()
}

#[tokio::test]
async fn dm_delivers_every_message_once_across_servers() {
    let farm = Farm::start(3).await;
    let phases = run(&farm, "dm", &["--clients", "6", "--messages", "50"]).await;
    let login = &phases["login"];
    assert_eq!((login.num("ok"), login.num("failed")), (6, 0));
    let dm = &phases["dm"];
    assert_eq!(dm.num("clients"), 6);
    assert_eq!(dm.num("delivered"), 6 * 50);
    assert_eq!(
        (dm.num("missing"), dm.num("doubled"), dm.num("errors")),
        (0, 0, 0)
    );
    assert!(dm.num("p50_us") <= dm.num("p99_us"));
    assert!(dm.num("p99_us") <= dm.num("max_us"));
}

#[tokio::test]
async fn a_login_storm_logs_everyone_in() {
    let farm = Farm::start(3).await;
    let phases = run(&farm, "storm", &["--clients", "30", "--concurrency", "10"]).await;
    let storm = &phases["storm"];
    assert_eq!(
        (storm.num("clients"), storm.num("ok"), storm.num("failed")),
        (30, 30, 0)
    );
    assert!(storm.num("p50_ms") <= storm.num("max_ms"));
}

#[tokio::test]
async fn users_with_accounts_log_in_and_keep_their_heartbeats() {
    let farm = Farm::start(3).await;
    let args = ["--clients", "9", "--concurrency", "3", "--hold-secs", "2"];
    let phases = run(&farm, "logins", &args).await;
    assert_eq!(phases["register"].num("ok"), 9);
    let logins = &phases["logins"];
    assert_eq!(
        (
            logins.num("ok"),
            logins.num("failed"),
            logins.num("dropped")
        ),
        (9, 0, 0)
    );
    assert!(logins.num("p50_ms") <= logins.num("max_ms"));
}

#[tokio::test]
async fn lists_report_the_size_of_each_reply() {
    let farm = Farm::start(3).await;
    let args = ["--clients", "3", "--groups", "40", "--concurrency", "3"];
    let phases = run(&farm, "lists", &args).await;
    let lists = &phases["lists"];
    assert_eq!((lists.num("groups"), lists.num("failed")), (40, 0));
    // 40 names of 32 characters, each with its length byte, and the frame around them.
    assert!(
        lists.num("largest_bytes") > 40 * 33,
        "{}",
        lists.num("largest_bytes")
    );
    assert!(lists.num("largest_bytes") < lists.num("limit_bytes"));
}
