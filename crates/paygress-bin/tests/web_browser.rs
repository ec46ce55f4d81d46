//! The buyer's web page in headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver): open the dev stack's page, pay by pasting a token, see the
//! ssh command and the countdown, run `echo` in the browser terminal, top up and see the
//! new expiry. Screenshots of each step go to `target/web-screenshots/`.
//!
//! Skips (with a message) only when `chromium` or `chromedriver` is not installed;
//! `cargo xtask ci` installs both.

#![cfg(feature = "dev")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use paygress_cashu::testkit::TokenFormat;
use paygress_testkit::dev::{DevOptions, DevStack};
use serde_json::json;

/// Where the Debian packages put the browser and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any one step may take before the test gives up (a bound, not a measure).
const STEP: Duration = Duration::from_secs(60);

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `chromedriver` on a free port of 127.0.0.1, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(driver: &Driver) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            // A phone-sized window: the page must work there.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=412,1400"],
        }
    });
    let caps = caps.as_object().unwrap().clone();
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let attempt = ClientBuilder::new(hyper_connector())
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await;
        match attempt {
            Ok(c) => return c,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    }
}

fn hyper_connector() -> hyper_util::client::legacy::connect::HttpConnector {
    hyper_util::client::legacy::connect::HttpConnector::new()
}

/// Polls `check` until it returns `Some`, up to [`STEP`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn attr(c: &Client, css: &str, name: &str) -> Option<String> {
    let e = c.find(Locator::Css(css)).await.ok()?;
    e.attr(name).await.ok().flatten()
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(name), png).unwrap();
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

fn is_countdown(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8
        && s.split(':').count() == 3
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == 'd' || c == ' ')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_pays_logs_in_and_tops_up_in_the_browser() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        eprintln!(
            "SKIPPED: {CHROMIUM} or {CHROMEDRIVER} is not installed (apt-get install chromium \
             chromium-driver; `cargo xtask ci` installs them)"
        );
        return;
    }
    let stack = DevStack::start(&DevOptions {
        data_dir: None,
        http_port: 0,
        port_range: "2485-2489".to_owned(),
        unsandboxed: false,
    })
    .await
    .expect("dev stack starts");
    let driver = Driver::start();
    let c = connect(&driver).await;

    // 1. The offer.
    c.goto(&format!("{}/", stack.http_url)).await.unwrap();
    let heading = text(&c, "h1").await;
    assert_eq!(heading, "paygress-dev");
    assert!(text(&c, ".terms").await.contains(stack.mint.url().as_str()));
    fill(&c, "#duration", "10").await;
    until("the price", || async {
        (text(&c, "#price").await == "10 sat").then_some(())
    })
    .await;
    shot(&c, "01-offer.png").await;

    // 2. The payment request (QR and text) on the lease's secret page.
    click(&c, "#order-button").await;
    let request = until("the payment request", || async {
        let v = c
            .find(Locator::Css("#pay-request"))
            .await
            .ok()?
            .prop("value")
            .await
            .ok()??;
        v.starts_with("creqA").then_some(v)
    })
    .await;
    assert!(!request.is_empty());
    let url = c.current_url().await.unwrap();
    assert_eq!(url.path(), "/lease");
    assert_eq!(
        url.fragment().map(str::len),
        Some(64),
        "secret in the fragment"
    );
    assert!(
        c.find(Locator::Css("#pay-qr svg")).await.is_ok(),
        "QR shown"
    );
    shot(&c, "02-pay.png").await;

    // 3. Pay by pasting a token (15 sat for 10 sat: 5 sat change).
    let token = stack.mint.mint_token(15, TokenFormat::V4).await.unwrap();
    fill(&c, "#token", token.expose()).await;
    click(&c, "#token-form button").await;
    let ssh = until("the ssh command", || async {
        let t = text(&c, "#ssh-command").await;
        t.starts_with("ssh -p ").then_some(t)
    })
    .await;
    assert!(ssh.ends_with("@127.0.0.1"), "{ssh}");
    let first = until("a running countdown", || async {
        let t = text(&c, "#countdown").await;
        is_countdown(&t).then_some(t)
    })
    .await;
    until("the countdown to move", || async {
        let t = text(&c, "#countdown").await;
        (t != first && is_countdown(&t)).then_some(())
    })
    .await;
    assert!(!text(&c, "#password").await.is_empty());
    let change = c
        .find(Locator::Css(".saved-token"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert!(change.starts_with("cashu"), "change token shown");
    assert!(text(&c, ".money").await.contains("they are money"));
    shot(&c, "03-lease.png").await;

    // 4. The terminal: `echo` runs in the lease and its output shows in the page.
    click(&c, "#terminal-open").await;
    until("the terminal to connect", || async {
        (text(&c, "#terminal-status").await == "Connected.").then_some(())
    })
    .await;
    let input = c
        .find(Locator::Css(".xterm-helper-textarea"))
        .await
        .unwrap();
    let enter = char::from(fantoccini::key::Key::Enter);
    input
        .send_keys(&format!("echo web-$((6*7))-ok{enter}"))
        .await
        .unwrap();
    until("echo's output in the terminal", || async {
        text(&c, ".xterm-rows")
            .await
            .contains("web-42-ok")
            .then_some(())
    })
    .await;
    shot(&c, "04-terminal.png").await;

    // 5. Top up by pasting a token: 10 sat, 10 more minutes.
    let before = attr(&c, "#expires", "datetime").await.unwrap();
    let more = stack.mint.mint_token(10, TokenFormat::V4).await.unwrap();
    fill(&c, "#topup-token", more.expose()).await;
    click(&c, "#topup-token-form button").await;
    let after = until("the new expiry", || async {
        let now = attr(&c, "#expires", "datetime").await?;
        (now != before).then_some(now)
    })
    .await;
    let before: jiff::Timestamp = before.parse().unwrap();
    let after: jiff::Timestamp = after.parse().unwrap();
    assert_eq!(after.duration_since(before).as_secs(), 600);
    shot(&c, "05-topped-up.png").await;

    c.close().await.unwrap();
    drop(driver);
    stack.shutdown().await;
}
