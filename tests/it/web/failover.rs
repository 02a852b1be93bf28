//! The page outlives its server: killed (SIGKILL), the page logs in on the user's backup with
//! its ticket, without asking for the password, and shows every message once; when home is
//! back, the page follows its session home.

use super::WEB;
use chat_tests::{Browser, Client, Farm};

/// Messages sent before the kill, and as many again after it.
const HALF: usize = 10;

#[tokio::test]
async fn killing_the_pages_server_moves_it_to_the_backup_and_then_home() {
    let mut farm = Farm::start_with(2, &WEB).await;
    let alice = farm.users_homed_on("s1", "alice", 1).remove(0);
    let bob = farm.users_homed_on("s2", "bob", 1).remove(0);
    let mut bob_client = Client::spawn_trusting(&farm.addrs(), &[]);
    bob_client.ok(&format!("login {bob} pw-{bob}")).await;

    let browser = Browser::start().await;
    let home_url = farm.server("s1").web_url.clone().unwrap();
    let page = browser.open(&home_url).await;
    page.log_in(&alice, &format!("pw-{alice}")).await;
    page.wait_until(
        &format!("return document.getElementById('me').textContent === '{alice}@s1'"),
        "alice at home on s1",
    )
    .await;
    page.open_conversation(&bob).await;

    let mut sent = Vec::new();
    for idx in 0..HALF {
        let text = format!("before {idx}");
        bob_client.ok(&format!("send {alice} {text}")).await;
        sent.push(text);
    }
    page.wait_message(&bob, &sent[HALF - 1]).await;
    // Every text the banner shows from now on, however briefly.
    page.eval(
        "window.banners = []; new MutationObserver(() => { const b = \
         document.getElementById('banner'); if (!b.hidden) window.banners.push(b.textContent); \
         }).observe(document.getElementById('banner'), {attributes: true, childList: true, \
         characterData: true, subtree: true}); return true",
    )
    .await;
    farm.server_mut("s1").kill().await;
    // Sent while the page moves: each is live, stored, or read from the log.
    for idx in 0..HALF {
        let text = format!("after {idx}");
        bob_client.ok(&format!("send {alice} {text}")).await;
        sent.push(text);
    }
    page.wait_until(
        &format!("return document.getElementById('me').textContent === '{alice}@s2'"),
        "alice moved to her backup s2",
    )
    .await;
    page.wait_message(&bob, &sent[2 * HALF - 1]).await;
    check_each_once(&page, &bob, &sent).await;
    let banners = page.eval("return window.banners").await;
    assert!(
        banners.as_array().is_some_and(|seen| seen
            .iter()
            .any(|b| b.as_str().is_some_and(|b| b.contains("reconnecting")))),
        "no reconnecting banner: {banners}"
    );
    assert!(
        page.eval("return document.getElementById('banner').hidden")
            .await
            .as_bool()
            .unwrap_or(false),
        "the banner is gone once the page is back"
    );
    assert!(
        page.eval("return document.getElementById('login').hidden")
            .await
            .as_bool()
            .unwrap_or(false),
        "the page asked for the password again"
    );

    // Home again, at the web address it had (the page's origin): the farm calls alice's
    // session home, and the page follows it.
    let web_addr = home_url.trim_start_matches("http://");
    farm.start_again_with("s1", &["--web-listen", web_addr])
        .await;
    page.wait_until(
        &format!("return document.getElementById('me').textContent === '{alice}@s1'"),
        "alice back home on s1",
    )
    .await;
    bob_client.ok(&format!("send {alice} home again")).await;
    sent.push("home again".to_owned());
    page.wait_message(&bob, "home again").await;
    check_each_once(&page, &bob, &sent).await;
    page.close().await;
}

/// The conversation with `from` shows exactly `sent`, each once. (Not always in order: what
/// was stored during the move may come after what is live on the new server.)
async fn check_each_once(page: &chat_tests::Page, from: &str, sent: &[String]) {
    let shown = page.messages().await;
    let mut texts: Vec<&str> = shown.iter().filter_map(|m| m["text"].as_str()).collect();
    let mut expected: Vec<&str> = sent.iter().map(String::as_str).collect();
    texts.sort_unstable();
    expected.sort_unstable();
    assert_eq!(texts, expected, "what the page shows of {from}'s messages");
    let mut ids: Vec<&str> = shown.iter().filter_map(|m| m["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), sent.len(), "each message once");
}
