//! What an eavesdropper sees: a recording proxy between a client and a server, and between two
//! servers, captures no message text, no password and no user name.

use chat_proto::ring::DEFAULT_VNODES;
use chat_proto::Ring;
use chat_tests::{Client, Proxy, Server, TestDb};

/// True if `needle` appears anywhere in `haystack`.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Starts `name` with its peer port behind a recording proxy, which it advertises: every link
/// dialed to it crosses the proxy.
async fn start_behind_proxy(db: &TestDb, name: &str) -> (Server, Proxy) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let peer_listen = listener.local_addr().expect("its address").to_string();
    drop(listener);
    let proxy = Proxy::start(peer_listen.clone()).await;
    let flags = [
        "--peer-listen",
        &peer_listen,
        "--advertise-peer",
        &proxy.addr,
    ];
    (Server::start_with(db, name, &flags).await, proxy)
}

/// A user name with `prefix` whose home is `server` in a farm of s1 and s2.
fn homed_on(server: &str, prefix: &str) -> String {
    let ring = Ring::new(["s1", "s2"], DEFAULT_VNODES);
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|user| ring.home(user) == Some(server))
        .expect("some name")
}

#[tokio::test]
async fn the_wire_shows_no_text_password_or_name() {
    let db = TestDb::new().await;
    // s1 starts first, so s2 dials it: through the proxy.
    let (s1, link_proxy) = start_behind_proxy(&db, "s1").await;
    let s2 = Server::start(&db, "s2").await;
    let client_proxy = Proxy::start(s1.addr.clone()).await;
    let alice = homed_on("s1", "alice");
    let bob = homed_on("s2", "bob");

    // alice's client reaches her home, s1, through the proxy; bob is on s2, so what they say
    // crosses the link too.
    let mut alice_client = Client::spawn(&[&client_proxy.addr]);
    alice_client.ok(&format!("login {alice} pw-{alice}")).await;
    assert_eq!(alice_client.ok("whoami").await["server"], "s1");
    let mut bob_client = Client::login(&s2, &bob).await;
    // s1 learns over the link that bob is online a moment later; until then a message to him
    // is stored for his next login instead of pushed.
    alice_client
        .ok_until(&format!("whois {bob}"), |reply| reply["online"] == true)
        .await;
    alice_client
        .ok(&format!("send {bob} the eagle lands at dawn"))
        .await;
    bob_client.message("the eagle lands at dawn").await;
    bob_client
        .ok(&format!("send {alice} roger that, eagle"))
        .await;
    alice_client.message("roger that, eagle").await;

    let client_bytes = client_proxy.captured();
    let link_bytes = link_proxy.captured();
    assert!(!client_bytes.is_empty(), "nothing crossed the client proxy");
    assert!(!link_bytes.is_empty(), "nothing crossed the link proxy");
    let password = format!("pw-{alice}");
    for secret in [
        "the eagle lands at dawn",
        "roger that, eagle",
        password.as_str(),
        alice.as_str(),
        bob.as_str(),
    ] {
        assert!(
            !contains(&client_bytes, secret),
            "{secret:?} crossed to s1 in clear"
        );
        assert!(
            !contains(&link_bytes, secret),
            "{secret:?} crossed between servers in clear"
        );
    }
}
