//! Headless Chromium, driven over WebDriver (chromedriver, with fantoccini), for the tests of
//! the web client: a [`Browser`] is one chromedriver, and each [`Page`] a browser of its own
//! (its own profile, so its own sessionStorage), as two people on two machines would be.
//!
//! Nothing here sleeps in place of an event: each wait polls the page for a condition, and
//! fails after [`EVENT_TIMEOUT`]. Debian's `chromium` and `chromium-driver` must be installed
//! (`scripts/test` installs them).

use crate::EVENT_TIMEOUT;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::future::Future;
use std::process::Stdio;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// What a failed wait reports of the page: the banner, the errors, where it is.
const SHOWN: &str = "return {banner: document.getElementById('banner').textContent, \
    me: document.getElementById('me').textContent, \
    error: document.getElementById('chat-error').textContent, \
    login: document.getElementById('login-error').textContent, \
    url: location.href}";

/// How often a wait looks at the page again.
const POLL: Duration = Duration::from_millis(50);

/// One chromedriver, in a process group of its own with the browsers it starts, all killed
/// when it is dropped.
pub struct Browser {
    driver: Child,
    url: String,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and waits until it answers.
    pub async fn start() -> Browser {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("its address").port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(crate::server::log_sink())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver (Debian's chromium-driver; scripts/test installs it)");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while TcpStream::connect(&addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen in time"
            );
            tokio::time::sleep(POLL).await;
        }
        Browser {
            driver,
            url: format!("http://{addr}"),
        }
    }

    /// A new headless browser at `url`.
    pub async fn open(&self, url: &str) -> Page {
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1000,640",
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(capabilities);
        let client = bounded("a browser session", builder.connect(&self.url))
            .await
            .expect("a browser session");
        bounded("the page", client.goto(url))
            .await
            .expect("open the page");
        Page { client }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver's browsers are in its process group: they go with it.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

/// One browser showing the web client.
pub struct Page {
    pub client: Client,
}

impl Page {
    /// Logs in (registering a new name) and waits for the chat to show.
    pub async fn log_in(&self, user: &str, password: &str) {
        self.type_into("#user", user).await;
        self.type_into("#password", password).await;
        self.click("#login-button").await;
        self.wait_for("#chat:not([hidden])").await;
    }

    /// Waits for an element and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        bounded("typing", element.send_keys(text))
            .await
            .expect("type");
    }

    /// Clicks the element matching `css`, found again if the page redrew it in between.
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let element = self.wait_for(css).await;
            match bounded("a click", element.click()).await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(err))
                    if err.error == fantoccini::error::ErrorStatus::StaleElementReference
                        && Instant::now() < deadline => {}
                Err(err) => panic!("click on {css}: {err}"),
            }
        }
    }

    /// Waits until an element matching `css` is on the page.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(EVENT_TIMEOUT)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css} on the page in time: {err}"))
    }

    /// Runs a script on the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        bounded("a script", self.client.execute(script, vec![]))
            .await
            .unwrap_or_else(|err| panic!("script failed: {err}\n{script}"))
    }

    /// Waits until the script `condition` returns true; `what` says what failed.
    pub async fn wait_until(&self, condition: &str, what: &str) {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            if self.eval(condition).await == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let shown = self.eval(SHOWN).await;
                panic!("{what}: not in time; the page shows {shown}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Opens the conversation with a user, or joins a group (`#ops`) and opens it.
    pub async fn open_conversation(&self, name: &str) {
        self.type_into("#open-name", name).await;
        self.click("#open").await;
        let key = if name.starts_with('#') {
            name.to_owned()
        } else {
            format!("@{name}")
        };
        self.wait_until(
            &format!(
                "return document.querySelector('#conversations .current')?.dataset.key === {key:?}"
            ),
            &format!("{name} opened"),
        )
        .await;
    }

    /// Sends `text` in the open conversation and waits until the page shows it as sent.
    pub async fn send(&self, text: &str) {
        self.type_into("#text", text).await;
        self.click("#send").await;
        self.wait_until(
            &format!(
                "return [...document.querySelectorAll('#messages li.message.mine .text')]\
                 .some(t => t.textContent === {text:?})"
            ),
            &format!("{text:?} sent"),
        )
        .await;
    }

    /// Opens a conversation from the list (`@bob`, `#ops`), which must be there.
    pub async fn select(&self, key: &str) {
        self.click(&format!("#conversations li[data-key={key:?}]"))
            .await;
    }

    /// The unread count shown for a conversation (`@bob`, `#ops`); 0 when none is shown.
    pub async fn unread(&self, key: &str) -> u64 {
        let count = self
            .eval(&format!(
                "return document.querySelector('#conversations li[data-key={key:?}] .unread')\
                 ?.textContent || ''"
            ))
            .await;
        count.as_str().and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// The messages of the open conversation, as the page shows them: `{id, from, text}`.
    pub async fn messages(&self) -> Vec<Value> {
        let shown = self
            .eval(
                "return [...document.querySelectorAll('#messages li.message')].map(li => ({\
                 id: li.dataset.id, from: li.querySelector('.from').textContent, \
                 text: li.querySelector('.text').textContent}))",
            )
            .await;
        shown.as_array().cloned().unwrap_or_default()
    }

    /// Waits until the open conversation shows a message with this text from `from`.
    pub async fn wait_message(&self, from: &str, text: &str) {
        self.wait_until(
            &format!(
                "return [...document.querySelectorAll('#messages li.message')].some(li => \
                 li.querySelector('.from').textContent === {from:?} && \
                 li.querySelector('.text').textContent === {text:?})"
            ),
            &format!("[{from}] {text:?} shown"),
        )
        .await;
    }

    /// A PNG of what the page shows.
    pub async fn screenshot(&self) -> Vec<u8> {
        bounded("a screenshot", self.client.screenshot())
            .await
            .expect("a screenshot")
    }

    /// Ends the browser.
    pub async fn close(self) {
        let _ = tokio::time::timeout(EVENT_TIMEOUT, self.client.close()).await;
    }
}

/// A WebDriver command, which must be answered within [`EVENT_TIMEOUT`] (its own timeouts,
/// such as a page load's five minutes, are far longer).
async fn bounded<T>(what: &str, command: impl Future<Output = T>) -> T {
    tokio::time::timeout(EVENT_TIMEOUT, command)
        .await
        .unwrap_or_else(|_| panic!("the browser did not answer {what} in time"))
}
