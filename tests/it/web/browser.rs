//! The web client in a real browser (headless Chromium over WebDriver): people chatting with
//! each other and with a terminal client, a group, and a message that waited offline.

use super::WEB;
use chat_tests::{Browser, Client, Page, Server, TestDb};

/// Opens the server's page in a new browser and logs in as `user` (password `pw-<user>`).
async fn logged_in(browser: &Browser, server: &Server, user: &str) -> Page {
    let page = browser
        .open(server.web_url.as_deref().expect("web on"))
        .await;
    page.log_in(user, &format!("pw-{user}")).await;
    page
}

#[tokio::test]
async fn two_browser_users_chat_with_each_other_and_with_a_terminal_client() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &WEB).await;
    let mut carol = Client::login(&server, "carol").await;
    let browser = Browser::start().await;
    let alice = logged_in(&browser, &server, "alice").await;
    let bob = logged_in(&browser, &server, "bob").await;

    alice.open_conversation("bob").await;
    alice.send("hi bob, from the browser").await;
    // Bob sees a new conversation with one unread message, then the message itself.
    bob.wait_for("#conversations li[data-key=\"@alice\"]").await;
    assert_eq!(bob.unread("@alice").await, 1);
    bob.select("@alice").await;
    bob.wait_message("alice", "hi bob, from the browser").await;
    assert_eq!(bob.unread("@alice").await, 0);
    bob.send("hi alice").await;
    alice.wait_message("bob", "hi alice").await;

    // And with a terminal client, both ways.
    carol.ok("send alice hello from a terminal").await;
    alice
        .wait_for("#conversations li[data-key=\"@carol\"]")
        .await;
    alice.select("@carol").await;
    alice.wait_message("carol", "hello from a terminal").await;
    alice.send("hello carol").await;
    let at_carol = carol.message("hello carol").await;
    assert_eq!(at_carol["from"], "alice");

    // Each message once; what comes to another conversation counts as unread there.
    alice.select("@bob").await;
    let shown = alice.messages().await;
    assert_eq!(shown.len(), 2, "{shown:?}");
    carol.ok("send alice are you there?").await;
    alice
        .wait_until(
            "return document.querySelector('#conversations li[data-key=\"@carol\"] .unread')\
             ?.textContent === '1'",
            "one unread from carol",
        )
        .await;

    // The people at the page see who is online.
    alice
        .wait_until(
            "return [...document.querySelectorAll('#online li')].map(li => li.textContent)\
             .join(',') === 'alice,bob,carol'",
            "alice, bob and carol shown online",
        )
        .await;
    let png = alice.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    // `WEB_SCREENSHOT=docs/web-client.png` refreshes the README's picture. The page shows
    // no secret: the password field was emptied at the login, and the ticket is never shown.
    if let Some(path) = std::env::var_os("WEB_SCREENSHOT") {
        std::fs::write(path, &png).expect("save the screenshot");
    }
    let text = alice.eval("return document.body.innerText").await;
    assert!(!text.as_str().unwrap_or("").contains("pw-alice"));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_group_works_in_the_browser() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &WEB).await;
    let mut carol = Client::login(&server, "carol").await;
    carol.ok("join #ops").await;
    let browser = Browser::start().await;
    let alice = logged_in(&browser, &server, "alice").await;
    let bob = logged_in(&browser, &server, "bob").await;
    alice.open_conversation("#ops").await;
    bob.open_conversation("#ops").await;
    // Alice sees bob join.
    alice
        .wait_until(
            "return [...document.querySelectorAll('#messages li.notice')]\
             .some(li => li.textContent === 'bob joined #ops')",
            "bob's join shown",
        )
        .await;

    alice.send("deploy at noon").await;
    bob.wait_message("alice", "deploy at noon").await;
    let at_carol = carol.message("deploy at noon").await;
    assert_eq!(at_carol["group"], "ops");
    carol.ok("send #ops ready").await;
    alice.wait_message("carol", "ready").await;
    bob.wait_message("carol", "ready").await;

    // Bob leaves: the group's messages no longer reach him.
    bob.click("#leave").await;
    bob.wait_until(
        "return !document.querySelector('#conversations li[data-key=\"#ops\"]')",
        "#ops gone from bob's list",
    )
    .await;
    alice.send("bob has left").await;
    carol.message("bob has left").await;
    alice.open_conversation("bob").await;
    alice.send("sync").await;
    bob.wait_for("#conversations li[data-key=\"@alice\"]").await;
    bob.select("@alice").await;
    bob.wait_message("alice", "sync").await;
    assert!(bob
        .eval("return !document.querySelector('#conversations li[data-key=\"#ops\"]')")
        .await
        .as_bool()
        .unwrap_or(false));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn an_offline_message_waits_for_the_page_and_is_shown_once() {
    let db = TestDb::new().await;
    let server = Server::start_with(&db, "s1", &WEB).await;
    let browser = Browser::start().await;
    let dave = logged_in(&browser, &server, "dave").await;
    dave.click("#logout").await;
    dave.wait_for("#login:not([hidden])").await;
    dave.close().await;

    let mut carol = Client::login(&server, "carol").await;
    carol.ok("send dave while you were away").await;
    let dave = logged_in(&browser, &server, "dave").await;
    dave.wait_for("#conversations li[data-key=\"@carol\"]")
        .await;
    assert_eq!(dave.unread("@carol").await, 1);
    dave.select("@carol").await;
    dave.wait_message("carol", "while you were away").await;
    dave.close().await;

    // Confirmed once shown: the next login finds nothing waiting.
    let mut again = Client::connect(&server).await;
    let login = again.ok("login dave pw-dave").await;
    assert_eq!(login["waiting"], 0, "{login}");
}
