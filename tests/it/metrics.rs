//! `--metrics-listen`: the health checks mean what the deployment waits on, and the counters an
//! operator watches move with what users do.

use chat_tests::{Client, Farm, Proxy, Server, TestDb, EVENT_TIMEOUT};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

const METRICS: [&str; 2] = ["--metrics-listen", "127.0.0.1:0"];
/// How often a check of an endpoint is made again while waiting for it to change.
const POLL: Duration = Duration::from_millis(50);

/// Waits until `/readyz` answers `status` with a body containing `text`; returns the body.
async fn readyz_becomes(server: &Server, status: u16, text: &str) -> String {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let (got, body) = server.http_get("/readyz").await;
        if got == status && body.contains(text) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz of {} still answers {got} {body:?}, not {status} with {text:?}",
            server.name
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Every sample of a scrape, by its series (`name{labels}`), checking that each line is a
/// comment or a sample of the Prometheus text format.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not `name{{labels}} value`: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            value => value
                .parse()
                .unwrap_or_else(|_| panic!("not a number in {line:?}")),
        };
        check_series(series);
        samples.insert(series.to_owned(), value);
    }
    samples
}

/// A metric name, then optionally `{label="value",...}`.
#[track_caller]
fn check_series(series: &str) {
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => {
            let labels = labels
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("unclosed labels in {series:?}"));
            (name, Some(labels))
        }
        None => (series, None),
    };
    let is_name = |text: &str| {
        text.chars().enumerate().all(|(idx, ch)| {
            ch == '_' || ch == ':' || ch.is_ascii_alphabetic() || (idx > 0 && ch.is_ascii_digit())
        }) && !text.is_empty()
    };
    assert!(is_name(name), "bad metric name in {series:?}");
    for label in labels.into_iter().flat_map(|labels| labels.split(',')) {
        let (key, value) = label
            .split_once('=')
            .unwrap_or_else(|| panic!("bad label {label:?} in {series:?}"));
        assert!(is_name(key), "bad label name in {series:?}");
        assert!(
            value.len() >= 2 && value.starts_with('"') && value.ends_with('"'),
            "unquoted label value in {series:?}"
        );
    }
}

#[test]
fn the_scrape_parser_refuses_what_is_not_prometheus_text() {
    let good = "# HELP a_total A\n# TYPE a_total counter\na_total 3\nb{peer=\"s2\",x=\"y\"} 0.5\n";
    let parsed = samples(good);
    assert_eq!(parsed["a_total"], 3.0);
    assert_eq!(parsed["b{peer=\"s2\",x=\"y\"}"], 0.5);
    for bad in [
        "a_total",
        "a_total x",
        "9a 1",
        "a{peer=s2} 1",
        "a{peer=\"s2\" 1",
    ] {
        assert!(std::panic::catch_unwind(|| samples(bad)).is_err(), "{bad}");
    }
}

async fn scrape(server: &Server) -> HashMap<String, f64> {
    let (status, body) = server.http_get("/metrics").await;
    assert_eq!(status, 200, "{body}");
    samples(&body)
}

/// How much `series` moved between two scrapes (a series not there yet counts as zero).
fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    let value = |scrape: &HashMap<String, f64>| scrape.get(series).copied().unwrap_or(0.0);
    value(after) - value(before)
}

#[tokio::test]
async fn readyz_waits_for_every_live_server_and_healthz_is_alive() {
    let db = TestDb::new().await;
    // A heartbeat timeout long enough that the ghost below stays live until the test says.
    let flags = [&METRICS[..], &["--heartbeat-timeout-ms", "600000"]].concat();
    let server = Server::start_with(&db, "s1", &flags).await;
    assert_eq!(server.http_get("/healthz").await, (200, "alive\n".into()));
    readyz_becomes(&server, 200, "ready").await;

    // A live server that nobody can link with: s1 is not ready while it is in the farm.
    db.execute(
        "INSERT INTO server_info (name, host, client_port, peer_host, server_port, link_key) \
         VALUES ('ghost', '127.0.0.1', 1, '127.0.0.1', 1, repeat('0', 64))",
    )
    .await;
    let reason = readyz_becomes(&server, 503, "not linked with ghost").await;
    assert_eq!(reason, "not ready: not linked with ghost\n");
    assert_eq!(server.http_get("/healthz").await.0, 200);
    let scraped = scrape(&server).await;
    assert_eq!(scraped.get("chat_link_up{peer=\"ghost\"}"), Some(&0.0));

    db.execute("UPDATE server_info SET alive = false WHERE name = 'ghost'")
        .await;
    readyz_becomes(&server, 200, "ready").await;
    assert_eq!(server.http_get("/elsewhere").await.0, 404);
}

#[tokio::test]
async fn readyz_says_when_the_database_is_unreachable() {
    let db = TestDb::new().await;
    let proxy = Proxy::start(db.host_port()).await;
    let server = Server::start_on(&db, &db.url_via(&proxy.addr), "s1", &METRICS).await;
    readyz_becomes(&server, 200, "ready").await;
    let before = scrape(&server).await;

    proxy.cut();
    readyz_becomes(&server, 503, "cannot reach the database").await;
    assert_eq!(server.http_get("/healthz").await.0, 200);
    let errors = "chat_database_errors_total{work=\"heartbeat\"}";
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while moved(&before, &scrape(&server).await, errors) < 1.0 {
        assert!(Instant::now() < deadline, "no heartbeat error counted");
        tokio::time::sleep(POLL).await;
    }

    proxy.restore();
    readyz_becomes(&server, 200, "ready").await;
}

#[tokio::test]
async fn counters_move_with_logins_and_messages_across_servers() {
    const N_MESSAGES: usize = 3;
    let farm = Farm::start_with(2, &METRICS).await;
    let (s1, s2) = (farm.server("s1"), farm.server("s2"));
    for server in [s1, s2] {
        readyz_becomes(server, 200, "ready").await;
    }
    let (before1, before2) = (scrape(s1).await, scrape(s2).await);
    let alice = farm.users_homed_on("s1", "alice", 1).remove(0);
    let bob = farm.users_homed_on("s2", "bob", 1).remove(0);
    let mut alice_client = Client::login(s1, &alice).await;
    let mut bob_client = Client::login(s2, &bob).await;
    alice_client
        .ok_until(&format!("whois {bob}"), |reply| reply["online"] == true)
        .await;
    for idx in 0..N_MESSAGES {
        alice_client.ok(&format!("send {bob} hello {idx}")).await;
        bob_client.message(&format!("hello {idx}")).await;
    }
    let (after1, after2) = (scrape(s1).await, scrape(s2).await);

    let logins = "chat_logins_total{kind=\"password\",result=\"ok\"}";
    assert!(moved(&before1, &after1, logins) >= 1.0, "{after1:?}");
    assert!(moved(&before2, &after2, logins) >= 1.0, "{after2:?}");
    let n_messages = N_MESSAGES as f64;
    let accepted = "chat_messages_accepted_total";
    assert!(moved(&before1, &after1, accepted) >= n_messages);
    let relayed = "chat_messages_relayed_total{peer=\"s1\"}";
    let relayed_to_s2 = relayed.replace("s1", "s2");
    assert!(moved(&before1, &after1, &relayed_to_s2) >= n_messages);
    assert_eq!(moved(&before2, &after2, relayed), 0.0);
    let delivered = "chat_messages_delivered_total";
    assert!(moved(&before2, &after2, delivered) >= n_messages);
    assert_eq!(after1.get("chat_link_up{peer=\"s2\"}"), Some(&1.0));
    assert_eq!(after2.get("chat_link_up{peer=\"s1\"}"), Some(&1.0));
    assert_eq!(after1.get("chat_connections_open"), Some(&1.0));
    // Both users logged in at home: no failover.
    assert_eq!(moved(&before1, &after1, "chat_failover_logins_total"), 0.0);
}

#[tokio::test]
async fn a_metrics_port_that_cannot_be_bound_stops_the_start() {
    let db = TestDb::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let said = Server::fails_to_start(&db, "s1", &["--metrics-listen", &addr]).await;
    assert!(
        said.contains(&format!("cannot listen for metrics on {addr}")),
        "{said}"
    );
    let said = Server::fails_to_start(&db, "s1", &["--metrics-listen", "nowhere"]).await;
    assert!(
        said.contains("cannot listen for metrics on nowhere"),
        "{said}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_without_secrets() {
    let db = TestDb::new().await;
    let log_file =
        std::env::temp_dir().join(format!("chat-test-{}.log", uuid::Uuid::now_v7().simple()));
    let flags = ["--log-format", "json"];
    let server = Server::start_logging(&db, "s1", &flags, "debug", &log_file).await;
    Client::login(&server, "alice").await.ok("quit").await;
    Client::login(&server, "alice").await.ok("quit").await;
    server.stop().await;
    let log = std::fs::read_to_string(&log_file).expect("read the server's log");
    let _ = std::fs::remove_file(&log_file);
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(events
        .iter()
        .all(|event| event["level"].is_string() && event["timestamp"].is_string()));
    let logins = events
        .iter()
        .filter(|event| event["message"] == "logged in" && event["user"] == "alice")
        .count();
    assert_eq!(logins, 2, "{log}");
    assert!(!log.contains("$argon2"), "a password hash is in the log");
    assert!(!log.contains("pw-alice"), "a password is in the log");
}

#[tokio::test]
async fn a_failover_is_counted_where_the_users_land() {
    let mut farm = Farm::start_with(2, &METRICS).await;
    let user = farm.users_homed_on("s2", "moving", 1).remove(0);
    let mut client = Client::spawn(&farm.addrs());
    client.ok(&format!("login {user} pw-{user}")).await;
    // It first connected to s1, the first address, then moved home.
    let connected = client.take_events(|ev| ev["type"] == "connected");
    assert_eq!(connected.last().map(|ev| &ev["server"]), Some(&"s2".into()));
    let before = scrape(farm.server("s1")).await;

    farm.server_mut("s2").kill().await;
    client
        .event(|ev| ev["type"] == "connected" && ev["server"] == "s1")
        .await;
    let after = scrape(farm.server("s1")).await;
    let failovers = "chat_failover_logins_total";
    assert!(moved(&before, &after, failovers) >= 1.0, "{after:?}");
    let by_ticket = "chat_logins_total{kind=\"ticket\",result=\"ok\"}";
    assert!(moved(&before, &after, by_ticket) >= 1.0, "{after:?}");
    assert_eq!(after.get("chat_link_up{peer=\"s2\"}"), Some(&0.0));
}
