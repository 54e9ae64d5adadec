//! The web console (`/console/`) in a real browser: headless Chromium driven through
//! chromedriver (WebDriver) by `fantoccini`. Messages published with the SDK show in the
//! console; a peek changes nothing; a message published from the console is received with
//! the SDK; the console's test-clock control makes a delayed message ready; a fault rule
//! added there is in force; a dead letter resent there is delivered again, one deleted there
//! never is; an in-flight message's NextConsumeTime counts down; no credential is ever in a
//! URL; half messages committed there are delivered and rolled-back ones never; a message's
//! trace shows as a timeline; the topic page filters by publish time and pages on past 200 (Next page); a
//! group's offset reset there gives the SDK old messages again; topics and groups are
//! created (in an instance, a group with its invisibility and maximum deliveries), updated
//! and deleted there; a delivery time and a transaction from the publish form; times show
//! their epoch ms on hover; tables work from the keyboard; logging out forgets the
//! credentials. Each page is saved as a screenshot in
//! `target/console-screenshots/`.
//!
//! The browser comes from `MQ_CHROMIUM` / `MQ_CHROMEDRIVER` or `chromium` / `chromedriver`
//! on `PATH` (`cargo xtask ci` installs Debian's `chromium` and `chromium-driver`). Without
//! them the browser tests say so and pass, unless `MQ_REQUIRE_BROWSER=1` (as in
//! `cargo xtask ci`), which makes them fail.
//!
//! The static assets and the console's publish call are also checked over plain HTTP.

mod support;

use fantoccini::key::Key;
use fantoccini::{ClientBuilder, Locator};
use mq_broker::config::AdminAccess;
use mq_broker::{Broker, Credential, ServerConfig};
use mq_tokio::{BatchSize, Client, Consumer, TopicMessage, TransCheckImmunity, WaitSeconds};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{AK, SK};

const TOKEN: &str = "console-test-admin-token-0123";

async fn start_broker() -> Broker {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        credentials: vec![Credential::new(AK, SK)],
        test_clock: true,
        faults: true,
        admin: AdminAccess::On(Some(TOKEN.parse().expect("token"))),
        // A message delivered twice and not acked becomes a dead letter.
        core: mq_broker::core::CoreConfig {
            max_deliveries: 2,
            ..mq_broker::core::CoreConfig::default()
        },
        ..ServerConfig::default()
    };
    Broker::start(config).await.expect("broker starts")
}

fn sdk(broker: &Broker) -> Client {
    Client::builder()
        .endpoint(broker.endpoint())
        .expect("endpoint")
        .credentials(mq_tokio::Credentials::new(AK, SK))
        .build()
        .expect("client")
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

// ---------------------------------------------------------------------------------------------
// The browser

/// A program from `env` or on `PATH`.
fn program(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// chromedriver (killed on drop) with a headless Chromium session.
struct Browser {
    driver: Child,
    client: fantoccini::Client,
    base: String,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium is chromedriver's child and outlives it: after a failed test (whose
        // session was not closed) end it first.
        for pid in children(self.driver.id()) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The processes whose parent is `pid` (from `/proc`; none elsewhere).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

/// A browser on `broker`'s console, or `None` (said on stderr) when chromium or
/// chromedriver is missing and `MQ_REQUIRE_BROWSER` is not `1`.
async fn browser(broker: &Broker) -> Option<Browser> {
    let (chromium, driver) = match (
        program("MQ_CHROMIUM", "chromium"),
        program("MQ_CHROMEDRIVER", "chromedriver"),
    ) {
        (Some(c), Some(d)) => (c, d),
        _ => {
            assert!(
                std::env::var("MQ_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "MQ_REQUIRE_BROWSER=1 but chromium or chromedriver is missing (Debian: \
                 `apt-get install chromium chromium-driver`; `cargo xtask ci` installs them; \
                 or set MQ_CHROMIUM and MQ_CHROMEDRIVER)"
            );
            eprintln!(
                "skipping the console's browser test: chromium or chromedriver is missing \
                 (`apt-get install chromium chromium-driver`)"
            );
            return None;
        }
    };
    // chromedriver picks a free port on 127.0.0.1 and says which.
    let mut child = Command::new(&driver)
        .args(["--port=0", "--allowed-ips=127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", driver.display()));
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|p| p.trim_end_matches('.').trim().parse::<u16>().ok())
            {
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{} did not say its port in 30 s", driver.display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--hide-scrollbars", "--no-first-run"],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("no WebDriver session with {}: {e}", chromium.display()));
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let b = Browser {
        driver: child,
        client,
        base: format!("{}/console/", broker.endpoint()),
        shots,
    };
    b.client.set_window_size(1280, 800).await.expect("window");
    Some(b)
}

/// How long the console may take to show something.
const PATIENCE: Duration = Duration::from_secs(15);

impl Browser {
    /// Ends the WebDriver session (and so Chromium).
    async fn close(self) {
        self.client
            .clone()
            .close()
            .await
            .expect("close the session");
    }

    /// Opens a page of the console (`#/…`) and waits until it has rendered.
    async fn open(&self, route: &str) {
        let before = self.ready().await;
        self.client
            .goto(&format!("{}{route}", self.base))
            .await
            .expect("goto");
        self.rendered_after(&before, route).await;
    }

    /// Waits until the console has rendered a page since its mark was `before`.
    async fn rendered_after(&self, before: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = self.ready().await;
            if now != before && !now.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "{what} did not render");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The render counter of the page shown (empty before the first page).
    async fn ready(&self) -> String {
        self.client
            .execute(
                "return document.getElementById('main')?.dataset.ready || '';",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Waits for an element matching `css` whose text contains `text`; its text.
    async fn wait_text(&self, css: &str, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(found) = self.client.find_all(Locator::Css(css)).await {
                for e in found {
                    if let Ok(t) = e.text().await
                        && t.contains(text)
                    {
                        return t;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {css} containing {text:?} in: {}",
                self.main_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn main_text(&self) -> String {
        match self.client.find(Locator::Id("main")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!("no {css}: {e}; page: {}", self.main_text().await),
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    async fn click_button(&self, label: &str) {
        self.click_xpath(&format!("//button[normalize-space(.)='{label}']"))
            .await;
    }

    /// Clicks the button `action` (its `data-action`, else its label) in the row of the
    /// table labelled `table` that contains `row_text`.
    async fn click_in_row(&self, table: &str, row_text: &str, action: &str) {
        self.click_xpath(&format!(
            "//table[@aria-label='{table}']//tr[contains(., '{row_text}')]//button[@data-action='{action}' or normalize-space(.)='{action}']"
        ))
        .await;
    }

    /// Clicks `action` in a row (as [`Self::click_in_row`]) and accepts or declines the
    /// confirm dialog it opens; its question.
    async fn confirm_in_row(
        &self,
        table: &str,
        row_text: &str,
        action: &str,
        accept: bool,
    ) -> String {
        self.click_in_row(table, row_text, action).await;
        self.answer_confirm(accept).await
    }

    /// Clicks the element at `xpath` once it shows.
    async fn click_xpath(&self, xpath: &str) {
        let found = self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::XPath(xpath))
            .await;
        match found {
            Ok(e) => e.click().await.expect("click"),
            Err(e) => panic!("nothing at {xpath}: {e}; page: {}", self.main_text().await),
        }
    }

    /// Accepts the confirm dialog the last click opened; its question.
    async fn accept_confirm(&self) -> String {
        self.answer_confirm(true).await
    }

    /// Accepts or declines the confirm dialog the last click opened; its question.
    async fn answer_confirm(&self, accept: bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let Ok(question) = self.client.get_alert_text().await else {
                assert!(Instant::now() < deadline, "no confirm dialog");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let answered = if accept {
                self.client.accept_alert().await
            } else {
                self.client.dismiss_alert().await
            };
            let Err(e) = answered else { return question };
            assert!(Instant::now() < deadline, "no confirm dialog: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no element matching `css` contains `text`.
    async fn wait_gone(&self, css: &str, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut present = false;
            if let Ok(found) = self.client.find_all(Locator::Css(css)).await {
                for e in found {
                    present |= e.text().await.is_ok_and(|t| t.contains(text));
                }
            }
            if !present {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} still contains {text:?}: {}",
                self.main_text().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets a `datetime-local` input to the time `ms` (epoch ms) in the browser's local
    /// time, to the second, as a user picking it would.
    async fn set_local_time(&self, css: &str, ms: Option<u64>) {
        self.find(css).await;
        self.client
            .execute(
                "const input = document.querySelector(arguments[0]);
                 if (arguments[1] === null) { input.value = ''; return; }
                 const d = new Date(arguments[1]);
                 const p = (n) => String(n).padStart(2, '0');
                 input.value = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;",
                vec![serde_json::json!(css), serde_json::json!(ms)],
            )
            .await
            .expect("script");
    }

    /// Logs in with the admin token, or with an AccessKey pair (signed in the browser).
    async fn log_in(&self, token: Option<&str>) {
        self.open("").await;
        match token {
            Some(t) => self.type_into("#token", t).await,
            None => {
                self.type_into("#access-key-id", AK).await;
                self.type_into("#access-key-secret", SK).await;
            }
        }
        let before = self.ready().await;
        self.find("#login").await.click().await.expect("log in");
        self.rendered_after(&before, "the page after logging in")
            .await;
        self.wait_text("h1", "Overview").await;
    }

    /// The Body column of the message table under the topic page's peek.
    async fn bodies(&self) -> Vec<String> {
        let cells = self
            .script(
                "const t = document.querySelector('[data-peek] table');
                 if (!t) return [];
                 const col = [...t.tHead.rows[0].cells].findIndex((c) => c.textContent === 'Body');
                 return [...t.tBodies[0].rows].map((r) => r.cells[col].textContent);",
            )
            .await;
        serde_json::from_value(cells).expect("strings")
    }

    /// Types each `(name, value)` into the field `name` of the form labelled `form`.
    async fn fill(&self, form: &str, fields: &[(&str, &str)]) {
        for (name, value) in fields {
            self.type_into(&format!("form[aria-label='{form}'] [name='{name}']"), value)
                .await;
        }
    }

    /// Fails when `secret` shows in the page's address or in any URL it requested.
    async fn assert_no_secret_in_urls(&self, secret: &str) {
        let urls = self
            .script(
                "return [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)];",
            )
            .await;
        let urls: Vec<String> = serde_json::from_value(urls).expect("strings");
        assert!(urls.len() > 1, "no request seen: {urls:?}");
        assert!(
            urls.iter().all(|u| !u.contains(secret)),
            "a credential in a URL: {urls:?}"
        );
    }

    /// The message id the publish page's receipt shows.
    async fn published_id(&self) -> String {
        self.find("[data-message-id]")
            .await
            .attr("data-message-id")
            .await
            .expect("attr")
            .expect("a message id")
    }

    /// Runs `js` in the page; what it returns.
    async fn script(&self, js: &str) -> serde_json::Value {
        self.client.execute(js, vec![]).await.expect("script")
    }

    /// Fails when the page links show (they must not while logged out).
    async fn assert_nav_hidden(&self) {
        let shown = self.find("#nav").await.is_displayed().await;
        assert!(
            !shown.expect("displayed"),
            "the nav bar shows when logged out"
        );
    }

    /// Fails when the page scrolls sideways or, with `tables`, when a table needs sideways
    /// scrolling in its box.
    async fn assert_fits(&self, what: &str, tables: bool) {
        let fits = self
            .client
            .execute(
                "const page = document.documentElement.scrollWidth <= window.innerWidth + 1;
                 const boxes = [...document.querySelectorAll('#main .scroll')]
                   .every((s) => s.scrollWidth <= s.clientWidth + 1);
                 return page && (!arguments[0] || boxes);",
                vec![serde_json::json!(tables)],
            )
            .await
            .expect("script");
        assert_eq!(
            fits,
            serde_json::Value::Bool(true),
            "{what} does not fit the window sideways"
        );
    }

    /// Saves the window as `target/console-screenshots/{name}.png`; fails on a page showing
    /// an error box.
    async fn shot(&self, name: &str) {
        let errors = self
            .client
            .find_all(Locator::Css("#main .error"))
            .await
            .expect("find");
        let mut shown = Vec::new();
        for e in errors {
            shown.push(e.text().await.unwrap_or_default());
        }
        assert!(shown.is_empty(), "{name} shows errors: {shown:?}");
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

/// The core's state as /stats shows it, without the server's request counters.
fn held(broker: &Broker) -> (u64, u64, Vec<mq_broker::core::TopicStats>) {
    let s = broker.stats();
    (s.published, s.acked, s.topics)
}

// ---------------------------------------------------------------------------------------------
// Browser tests

/// A broker, a browser on its console, the SDK, and a consumer of `group` on `topic`
/// registered (so it receives what is published from now on); `None` without a browser.
async fn scene(topic: &str, group: &str) -> Option<(Broker, Browser, Client, Consumer)> {
    let broker = start_broker().await;
    let b = browser(&broker).await?;
    let sdk = sdk(&broker);
    let consumer = sdk.consumer(topic.parse().unwrap(), group.parse().unwrap());
    consumer
        .receive(BatchSize::MIN, WaitSeconds::new(0).unwrap())
        .await
        .expect("registers the group");
    Some((broker, b, sdk, consumer))
}

/// A broker, a browser logged in with the admin token, and an admin client; `None`
/// without a browser.
async fn logged_in() -> Option<(Broker, Browser, support::Client)> {
    let broker = start_broker().await;
    let b = browser(&broker).await?;
    let admin = support::Client::new(broker.local_addr());
    b.log_in(Some(TOKEN)).await;
    Some((broker, b, admin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_the_sdk_published_and_a_peek_changes_nothing() {
    let Some((broker, b, sdk, consumer)) = scene("orders", "GID_billing").await else {
        return;
    };
    let producer = sdk.producer("orders".parse().unwrap());
    let receipt = producer
        .publish(
            &TopicMessage::new("order 42 created")
                .unwrap()
                .with_tag("created".parse().unwrap())
                .with_key("order-42")
                .unwrap()
                .with_property("region", "eu")
                .unwrap(),
        )
        .await
        .expect("publish");
    for i in 0..3 {
        producer
            .publish(&TopicMessage::new(format!("order {i} paid")).unwrap())
            .await
            .expect("publish");
    }
    let tx = sdk.transaction_producer("payments".parse().unwrap(), "GID_tx".parse().unwrap());
    // A group of the topic that a half message has not reached.
    sdk.consumer("payments".parse().unwrap(), "GID_pay".parse().unwrap())
        .receive(BatchSize::MIN, WaitSeconds::new(0).unwrap())
        .await
        .expect("registers the group");
    let half = tx
        .publish(
            &TopicMessage::new("charge card")
                .unwrap()
                .with_trans_check_immunity(TransCheckImmunity::new(60).unwrap()),
        )
        .await
        .expect("half message");

    // Logged in with an AccessKey pair: every admin call is signed in the browser.
    b.log_in(None).await;
    b.wait_text("[data-card='backlog']", "4").await;
    b.wait_text("[data-card='half']", "1").await;
    b.wait_text("table[aria-label='Groups'] tbody tr", "GID_billing")
        .await;
    // Rates: the chart draws once the console has read /stats a few times, while another
    // topic takes a message every 200 ms.
    let audit = sdk.producer("audit".parse().unwrap());
    let pacer = tokio::spawn(async move {
        for i in 0..30 {
            let m = TopicMessage::new(format!("audit {i}")).unwrap();
            audit.publish(&m).await.expect("publish");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    b.find(".chart svg polyline").await;
    pacer.await.expect("publisher");
    // The overview refreshes itself.
    let before = b.ready().await;
    b.rendered_after(&before, "the overview's refresh").await;
    b.wait_text("[data-card='published']", "35").await;
    b.shot("overview").await;
    b.assert_no_secret_in_urls(SK).await;

    // Keyboard: rows take the focus, arrows move it, Enter opens the row's page.
    let before = held(&broker);
    let first = b.find("table[aria-label='Topics'] tbody tr").await;
    // One tab stop a row: Tab goes from a row to the next row, not to the row's link.
    first.send_keys(&Key::Tab.to_string()).await.expect("key");
    let focused = b
        .script("const a = document.activeElement; return a.tagName + ' ' + a.textContent;")
        .await;
    assert!(
        focused
            .as_str()
            .is_some_and(|f| f.starts_with("TR") && f.contains("orders")),
        "{focused}"
    );
    first.send_keys(&Key::Down.to_string()).await.expect("key"); // audit → orders
    let shown = b.ready().await;
    b.client
        .active_element()
        .await
        .expect("focus")
        .send_keys(&Key::Enter.to_string())
        .await
        .expect("key");
    b.rendered_after(&shown, "the row's page").await;
    b.wait_text("h1", "Topic orders").await;

    // The topic page: a peek of the ready messages, filtered by tag; nothing changes.
    b.wait_text("[data-peek]", receipt.message_id.as_str())
        .await;
    b.type_into("input[name='tag']", "created").await;
    b.click_button("Peek").await;
    let shown = b.wait_text("[data-peek]", "1 of 4 shown").await;
    assert!(shown.contains("order 42 created"), "{shown}");
    b.shot("topic").await;
    b.assert_fits("the topic page at 1280 px", true).await;
    assert_eq!(
        held(&broker),
        before,
        "a peek changed what the broker holds"
    );

    // The message page: found by key; body as text and as hex; properties.
    b.open("#/message?topic=orders&key=order-42").await;
    let page = b
        .wait_text("[data-message]", receipt.message_id.as_str())
        .await;
    assert!(page.contains("region") && page.contains("eu"), "{page}");
    assert!(page.contains("GID_billing"), "{page}");
    // Times are local, with the epoch ms on hover.
    let (_, lookup) = support::Client::new(broker.local_addr())
        .admin(
            http::Method::GET,
            &format!(
                "/admin/topics/orders/messages?id={}",
                receipt.message_id.as_str()
            ),
            None,
        )
        .await
        .expect("find");
    let published = lookup["messages"][0]["publish_time"].as_u64().expect("ms");
    let hover = b
        .script(
            "const t = document.querySelector('[data-message] dd time');
             return [t.title, t.textContent === new Date(Number(t.title.split(' ')[0])).toLocaleString()];",
        )
        .await;
    assert_eq!(
        hover,
        serde_json::json!([format!("{published} (epoch ms)"), true])
    );
    b.click_button("Hex").await;
    b.wait_text("[data-body]", "6f 72 64 65 72 20 34 32").await; // "order 42"
    b.shot("message").await;
    assert_eq!(held(&broker), before, "the message page changed the broker");

    // The group page: backlog; an in-flight message with its NextConsumeTime counting down.
    let got = consumer
        .receive(BatchSize::MIN, WaitSeconds::new(0).unwrap())
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    b.open("#/group/orders/GID_billing").await;
    b.wait_text("[data-card='in flight']", "1").await;
    let countdown = b.wait_text("[data-countdown]", "in ").await;
    assert!(countdown.ends_with(" s"), "{countdown}"); // "in 4 min 59 s"
    // It counts down, second by second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = b.wait_text("[data-countdown]", "in ").await;
    assert_ne!(later, countdown, "the countdown stands still");
    b.shot("group").await;

    // Half messages and dead letters (none yet).
    b.open("#/half").await;
    b.wait_text(
        "table[aria-label='Half messages of payments']",
        "charge card",
    )
    .await;
    b.shot("half").await;
    // A half message is no group's yet: said, not shown as consumed.
    b.open(&format!("#/message?topic=payments&id={}", half.message_id))
        .await;
    let page = b.wait_text("[data-message]", "charge card").await;
    assert!(
        page.contains("GID_pay") && page.contains("not delivered yet: waiting for commit/rollback"),
        "{page}"
    );
    b.open("#/dead").await;
    b.wait_text("#main .empty", "No dead letters").await;
    b.shot("dead").await;

    // Topics & groups: listed where the broker has the call, else said to be unavailable.
    b.open("#/catalog").await;
    let text = b.main_text().await;
    assert!(
        text.contains("not available on this broker") || text.contains("Create topic"),
        "{text}"
    );
    b.shot("catalog").await;

    // A narrow window.
    b.client.set_window_size(420, 800).await.expect("resize");
    b.open("").await;
    b.wait_text("[data-card='backlog']", "4").await;
    b.shot("overview-narrow").await;
    b.assert_fits("the overview at 420 px", false).await;
    for (route, name) in [
        ("#/topic/orders", "topic-narrow"),
        ("#/group/orders/GID_billing", "group-narrow"),
        ("#/half", "half-narrow"),
        ("#/publish", "publish-narrow"),
        ("#/message?topic=orders&key=order-42", "message-narrow"),
        ("#/dead", "dead-narrow"),
        ("#/clock", "clock-narrow"),
        ("#/catalog", "catalog-narrow"),
    ] {
        b.open(route).await;
        b.find("h1").await;
        tokio::time::sleep(Duration::from_millis(300)).await; // the peek below the form
        b.shot(name).await;
        b.assert_fits(&format!("{route} at 420 px"), false).await;
    }
    // The half page's row actions are in view without scrolling sideways.
    b.open("#/half").await;
    let commit = b.find("button[data-action='rollback']").await;
    let (x, _, w, _) = commit.rectangle().await.expect("rectangle");
    assert!(x + w <= 420.0, "Roll back ends at {} px", x + w);
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_says_when_a_listed_body_is_cut() {
    let Some((_broker, b, sdk, _consumer)) = scene("bulky", "GID_bulk").await else {
        return;
    };
    let body = "x".repeat(mq_broker::core::BODY_PREVIEW_BYTES + 100);
    let message = TopicMessage::new(body.as_str())
        .unwrap()
        .with_key("big")
        .unwrap();
    let receipt = sdk
        .producer("bulky".parse().unwrap())
        .publish(&message)
        .await
        .expect("publish");
    b.log_in(None).await;
    // The topic's peek: the cell ends in "…".
    b.open("#/topic/bulky").await;
    let peek = b
        .wait_text("[data-peek]", receipt.message_id.as_str())
        .await;
    assert!(peek.contains(&format!("{}…", "x".repeat(60))), "{peek}");
    // Found by key, the body is a preview, and the page says so.
    b.open("#/message?topic=bulky&key=big").await;
    b.wait_text("[data-message]", "Only the beginning").await;
    let preview = b.wait_text("[data-body]", "xxx").await;
    assert_eq!(preview.len(), mq_broker::core::BODY_PREVIEW_BYTES);
    // By id (where the note links): all of it, without the note.
    let by_id = format!("#/message?topic=bulky&id={}", receipt.message_id.as_str());
    b.open(&by_id).await;
    let whole = b.wait_text("[data-body]", "xxx").await;
    assert_eq!(whole.len(), body.len());
    assert!(!b.main_text().await.contains("Only the beginning"));

    // More than one listing's 1 MiB budget: the peek ends before its limit, and the tag and
    // key filters still search past it, page by page.
    let count = mq_broker::core::LISTING_BUDGET_BYTES / mq_broker::core::BODY_PREVIEW_BYTES + 10;
    let producer = sdk.producer("bulky".parse().unwrap());
    for i in 0..count {
        let mut m = TopicMessage::new(body.as_str())
            .unwrap()
            .with_key("bulk")
            .unwrap();
        if i == count - 1 {
            m = m.with_tag("rare".parse().unwrap());
        }
        producer.publish(&m).await.expect("publish");
    }
    b.open("#/topic/bulky").await;
    b.wait_text("[data-summary]", "200 of 200 shown").await;
    b.type_into("input[name='tag']", "rare").await;
    b.click_button("Peek").await;
    b.wait_text(
        "[data-peek]",
        &format!(
            "Searched {} messages of the topic for tag rare: 1 ready for GID_bulk shown",
            count + 1
        ),
    )
    .await;
    b.type_into("input[name='tag']", "").await;
    // Spaces around the key are the field's, not the key's (a key with one is refused).
    b.type_into("input[name='key']", " bulk ").await;
    b.click_button("Peek").await;
    b.wait_text(
        "[data-peek]",
        &format!("Looked up by key bulk: {count} message(s) have it, {count} of them ready"),
    )
    .await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_publishes_and_moves_the_test_clock() {
    let Some((broker, b, sdk, consumer)) = scene("jobs", "GID_worker").await else {
        return;
    };
    b.log_in(Some(TOKEN)).await;

    // Published from the console, received with the SDK.
    b.open("#/publish").await;
    b.type_into("input[name='topic']", "jobs").await;
    b.type_into("input[name='key']", "job-7").await;
    b.type_into("input[name='tag']", "nightly").await;
    // One name=value a line: a value may hold a comma. A name given twice is refused, and
    // `__proto__` is a name like any other (it was dropped by a plain object's setter).
    b.type_into("textarea[name='properties']", "owner=ops\nowner=infra")
        .await;
    b.type_into("textarea[name='body']", "never sent").await;
    b.click_button("Publish").await;
    b.wait_text("[data-receipt]", "property \"owner\" is given twice")
        .await;
    b.type_into(
        "textarea[name='properties']",
        "owner=ops, infra\ntries=3\n__proto__=x",
    )
    .await;
    b.type_into("textarea[name='body']", "rebuild the index")
        .await;
    b.click_button("Publish").await;
    let id = b
        .find("[data-message-id]")
        .await
        .attr("data-message-id")
        .await
        .expect("attr")
        .expect("a message id");
    b.shot("publish").await;
    let got = consumer
        .receive(BatchSize::MAX, WaitSeconds::new(3).unwrap())
        .await
        .expect("receive");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].message_id.as_str(), id);
    assert_eq!(got[0].body, "rebuild the index");
    assert_eq!(got[0].tag.as_ref().map(|t| t.as_str()), Some("nightly"));
    assert_eq!(got[0].key(), Some("job-7"));
    assert_eq!(got[0].property("tries"), Some("3"));
    assert_eq!(got[0].property("owner"), Some("ops, infra"));
    assert_eq!(got[0].property("__proto__"), Some("x"));
    consumer.ack([&got[0].receipt_handle]).await.expect("ack");

    // A message due in an hour becomes ready when the console moves the test clock.
    let producer = sdk.producer("jobs".parse().unwrap());
    producer
        .publish(
            &TopicMessage::new("in an hour")
                .unwrap()
                .with_start_deliver_time(now_ms() + 3_600_000 - 5_000),
        )
        .await
        .expect("publish");
    assert_nothing_delivered(&consumer, 0, "delivered before its time").await;
    b.open("#/group/jobs/GID_worker").await;
    b.wait_text("[data-card='delayed']", "1").await;
    b.open("#/clock").await;
    b.click_button("+1 h").await;
    b.wait_text("#toast", "Clock moved forward 3600000 ms")
        .await;
    // The page shows the clock's new offset at once (it renders again after an action).
    b.wait_text("#main .panel", "offset 3,600,000 ms").await;
    // An empty "ms" box moves nothing (it used to move the clock "forward 0 ms").
    b.type_into("input[name='advance']", "").await;
    b.click_button("Advance").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let toasts = b
        .script("return document.getElementById('toast').textContent;")
        .await;
    assert!(
        !toasts.as_str().unwrap_or_default().contains("forward 0 ms"),
        "{toasts}"
    );
    b.wait_text("#main .panel", "offset 3,600,000 ms").await;
    let got = consumer
        .receive(BatchSize::MIN, WaitSeconds::new(3).unwrap())
        .await
        .expect("receive");
    assert_eq!(got.first().map(|m| m.body.as_str()), Some("in an hour"));

    // Faults (--faults): a rule added from the console is in force, then removed.
    b.find("select[name='operation']")
        .await
        .select_by_value("ack")
        .await
        .expect("select");
    b.click_button("Add rule").await;
    b.wait_text("table[aria-label='Active faults']", "answer Throttling")
        .await;
    b.shot("clock").await;
    let refused = consumer.ack([&got[0].receipt_handle]).await;
    assert!(
        refused.is_err(),
        "the injected Throttling did not refuse the ack"
    );
    // Removing them all asks first: declined, the rules stay.
    b.click_button("Remove all").await;
    let asked = b.answer_confirm(false).await;
    assert!(asked.contains("Remove every fault rule"), "{asked}");
    b.click_button("Remove all").await;
    b.accept_confirm().await;
    b.wait_text("#main .empty", "No fault is active").await;

    // Not acked, delivered again, not acked: a dead letter, listed with a Resend button.
    let mut admin = support::Client::new(broker.local_addr());
    let past_invisibility = "/admin/clock?advance_ms=301000"; // past 300 s
    let_die(&mut admin, &consumer, past_invisibility).await;
    b.open("#/dead").await;
    b.wait_text(
        "table[aria-label='Dead letters of GID_worker']",
        got[0].message_id.as_str(),
    )
    .await;
    b.shot("dead-letters").await;
    // Delete asks first; declined, the dead letter stays (the resend below finds it).
    b.confirm_in_row(
        "Dead letters of GID_worker",
        got[0].message_id.as_str(),
        "Delete",
        false,
    )
    .await;
    b.click_button("Resend").await;
    b.wait_text("#toast", "Resend: done (1 resent)").await;
    // Resent: delivered to the group again as a new message with the same id.
    let resent = consumer
        .receive(BatchSize::MIN, WaitSeconds::new(3).unwrap())
        .await
        .expect("receive");
    assert_eq!(
        resent
            .first()
            .map(|m| (m.message_id.as_str(), m.consumed_times)),
        Some((got[0].message_id.as_str(), 1)),
        "{resent:?}"
    );
    b.open("#/dead").await;
    b.wait_text("#main .empty", "No dead letters").await;
    // Not acked again, it dies again; deleted there (after the confirmation), it is gone
    // for good: no dead letter left, never delivered again.
    let_die(&mut admin, &consumer, past_invisibility).await;
    b.open("#/").await;
    b.open("#/dead").await;
    let asked = b
        .confirm_in_row(
            "Dead letters of GID_worker",
            got[0].message_id.as_str(),
            "Delete",
            true,
        )
        .await;
    assert!(asked.contains("cannot be resent"), "{asked}");
    b.wait_text("#toast", "Delete: done (1 deleted)").await;
    b.wait_text("#main .empty", "No dead letters").await;
    let listed = get_ok(
        &mut admin,
        "/admin/topics/jobs/groups/GID_worker/dead_letters",
    )
    .await;
    assert_eq!(listed["messages"], serde_json::json!([]), "{listed}");
    advance(&mut admin, past_invisibility).await;
    assert_nothing_delivered(&consumer, 1, "a deleted dead letter was delivered").await;

    b.assert_no_secret_in_urls(TOKEN).await;
    // Logging out forgets the credentials: the login form is back, the storage empty,
    // the page links gone.
    b.click_button("Log out").await;
    b.find("#token").await;
    b.assert_nav_hidden().await;
    assert_eq!(
        b.script("return sessionStorage.length;").await,
        serde_json::json!(0)
    );
    b.close().await;
}

/// The half-messages page decides for the producer: Commit delivers the message to an SDK
/// consumer, Roll back drops it for good; each row goes once decided. The committed
/// message's page shows its trace as a timeline: published, committed, delivered, acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_commits_and_rolls_back_half_messages() {
    let Some((broker, b, sdk, consumer)) = scene("payments", "GID_ledger").await else {
        return;
    };
    let tx = sdk.transaction_producer("payments".parse().unwrap(), "GID_tx".parse().unwrap());
    let half = |body: &str| {
        TopicMessage::new(body)
            .unwrap()
            .with_trans_check_immunity(TransCheckImmunity::new(60).unwrap())
    };
    let kept = tx.publish(&half("charge card 42")).await.expect("half");
    let dropped = tx.publish(&half("charge card 43")).await.expect("half");
    let (kept_id, dropped_id) = (kept.message_id.as_str(), dropped.message_id.as_str());
    let table = "Half messages of payments";
    let rows = format!("table[aria-label='{table}'] tbody");

    b.log_in(Some(TOKEN)).await;
    b.open("#/half").await;
    b.wait_text(&rows, "charge card 42").await;
    b.wait_text(&rows, "charge card 43").await;
    b.shot("half-waiting").await;

    b.click_in_row(table, kept_id, "commit").await;
    b.accept_confirm().await;
    b.wait_text("#toast", &format!("Committed {kept_id}")).await;
    b.wait_gone(&rows, kept_id).await;
    let got = consumer
        .receive(BatchSize::MAX, WaitSeconds::new(3).unwrap())
        .await
        .expect("receive");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].message_id.as_str(), kept_id);
    assert_eq!(got[0].body, "charge card 42");
    consumer.ack([&got[0].receipt_handle]).await.expect("ack");

    b.click_in_row(table, dropped_id, "rollback").await;
    b.accept_confirm().await;
    b.wait_text("#toast", &format!("Rolled back {dropped_id}"))
        .await;
    b.wait_text(
        "#main .empty",
        "No half message of payments is waiting any more",
    )
    .await;
    b.shot("half-decided").await;
    let payments = |broker: &Broker| {
        broker
            .stats()
            .topics
            .into_iter()
            .find(|t| t.topic == "payments")
            .expect("payments")
    };
    assert_eq!(payments(&broker).half, 0);
    // Past its check time: the rolled-back message is neither delivered nor checked.
    let mut admin = support::Client::new(broker.local_addr());
    advance(&mut admin, "/admin/clock?advance_ms=600000").await;
    assert_nothing_delivered(&consumer, 1, "a rolled-back message was delivered").await;
    let (_, trace) = admin
        .admin(
            http::Method::GET,
            &format!("/admin/messages/{dropped_id}/trace"),
            None,
        )
        .await
        .expect("trace");
    assert_eq!(trace["events"][1]["event"], "rolled_back", "{trace}");

    // The committed message's trace, as a timeline on its page.
    b.open(&format!("#/message?topic=payments&id={kept_id}"))
        .await;
    let timeline = b.wait_text(".timeline", "acked").await;
    let lines: Vec<&str> = timeline.lines().collect();
    assert_eq!(lines.len(), 4, "{timeline}");
    for (line, says) in lines.iter().zip([
        "published · by",
        "committed",
        "delivered · GID_ledger · delivery 1 · NextConsumeTime",
        "acked · GID_ledger",
    ]) {
        assert!(
            line.contains(says),
            "{line:?} does not say {says:?}: {timeline}"
        );
    }
    b.script("document.querySelector('.timeline').scrollIntoView({block: 'center'});")
        .await;
    b.shot("message-trace").await;
    b.close().await;
}

/// The topic page lists what was published in a time range (local time); the group page's
/// reset offset gives the group what was published since a time again, received with the
/// SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_filters_by_time_and_resets_an_offset() {
    let Some((broker, b, sdk, consumer)) = scene("events", "GID_replay").await else {
        return;
    };
    let mut admin = support::Client::new(broker.local_addr());
    let producer = sdk.producer("events".parse().unwrap());
    producer
        .publish(&TopicMessage::new("first event").unwrap())
        .await
        .expect("publish");
    let (_, clock) = admin
        .admin(http::Method::GET, "/admin/clock", None)
        .await
        .expect("clock");
    // An hour later (test clock), the second one; `between` separates them.
    let between = clock["now_ms"].as_u64().expect("now") + 1_800_000;
    advance(&mut admin, "/admin/clock?advance_ms=3600000").await;
    producer
        .publish(&TopicMessage::new("second event").unwrap())
        .await
        .expect("publish");
    let got = consumer
        .receive(BatchSize::MAX, WaitSeconds::new(3).unwrap())
        .await
        .expect("receive");
    assert_eq!(got.len(), 2, "{got:?}");
    consumer
        .ack(got.iter().map(|m| &m.receipt_handle))
        .await
        .expect("ack");

    b.log_in(Some(TOKEN)).await;
    b.open("#/topic/events").await;
    b.set_local_time("input[name='from']", Some(between)).await;
    b.click_button("Peek").await;
    let shown = b.wait_text("[data-peek]", "1 of 1 shown").await;
    assert!(
        shown.contains("second event") && !shown.contains("first event"),
        "{shown}"
    );
    b.shot("topic-time-range").await;
    b.set_local_time("input[name='from']", None).await;
    b.set_local_time("input[name='to']", Some(between)).await;
    b.click_button("Peek").await;
    b.wait_text("[data-peek]", "until").await;
    let shown = b.wait_text("[data-peek]", "1 of 1 shown").await;
    assert!(
        shown.contains("first event") && !shown.contains("second event"),
        "{shown}"
    );
    // Both bounds, the wrong way round: said, nothing asked.
    b.set_local_time("input[name='from']", Some(between + 60_000))
        .await;
    b.click_button("Peek").await;
    b.wait_text("#main .error", "must be after its start").await;

    // Consumed and acked; the group page resets the offset to `between`.
    b.open("#/group/events/GID_replay").await;
    b.set_local_time("input[name='time']", Some(between)).await;
    b.click_button("Reset offset").await;
    b.accept_confirm().await;
    b.wait_text("#toast", "Offset reset: 1 to deliver again, 0 skipped")
        .await;
    // The page renders again: the message is ready for the group.
    b.wait_text("[data-card='ready']", "1\nready").await;
    b.shot("group-reset-offset").await;
    let again = consumer
        .receive(BatchSize::MAX, WaitSeconds::new(3).unwrap())
        .await
        .expect("receive");
    assert_eq!(
        again.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["second event"]
    );
    b.close().await;
}

/// The topics & groups page creates a typed topic and a group subscribed to it, and
/// deletes both (after a confirmation); the admin API sees each change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_creates_and_deletes_topics_and_groups() {
    let Some((_broker, b, mut admin)) = logged_in().await else {
        return;
    };
    b.open("#/catalog").await;
    b.type_into(
        "form[aria-label='Create a topic'] input[name='topic']",
        "inventory",
    )
    .await;
    b.find("select[name='message_type']")
        .await
        .select_by_value("FIFO")
        .await
        .expect("select");
    b.click_button("Create topic").await;
    b.wait_text("table[aria-label='Topics'] tbody", "inventory")
        .await;
    let topic = get_ok(&mut admin, "/admin/topics/inventory").await;
    assert_eq!(topic["topic"]["message_type"], "FIFO", "{topic}");

    b.type_into(
        "form[aria-label='Create a group'] input[name='group']",
        "GID_stock",
    )
    .await;
    b.type_into(
        "form[aria-label='Create a group'] input[name='topic']",
        "inventory",
    )
    .await;
    b.click_button("Create group").await;
    let row = b
        .wait_text("table[aria-label='Groups'] tbody", "GID_stock")
        .await;
    assert!(row.contains("inventory"), "{row}");
    b.shot("catalog-created").await;
    let groups = |json: &serde_json::Value| -> Vec<String> {
        json["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["group"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    let (_, listed) = admin
        .admin(http::Method::GET, "/admin/groups", None)
        .await
        .expect("groups");
    assert_eq!(groups(&listed), ["GID_stock"], "{listed}");

    b.click_in_row("Groups", "GID_stock", "Delete").await;
    let asked = b.accept_confirm().await;
    assert!(
        asked.contains("group GID_stock of the default instance"),
        "the confirmation names the instance: {asked}"
    );
    b.wait_text("#main .empty", "No group.").await;
    let (_, listed) = admin
        .admin(http::Method::GET, "/admin/groups", None)
        .await
        .expect("groups");
    assert_eq!(groups(&listed), Vec::<String>::new(), "{listed}");

    b.click_in_row("Topics", "inventory", "Delete").await;
    b.accept_confirm().await;
    b.wait_text("#main .empty", "No topic.").await;
    let (status, _) = admin
        .admin(http::Method::GET, "/admin/topics/inventory", None)
        .await
        .expect("topic");
    assert_eq!(status, 404);

    // In another instance, a group with its own invisibility and maximum deliveries on two
    // topics: what the admin API takes, the forms take.
    for topic in ["ledger", "audit"] {
        b.fill("Create a topic", &[("topic", topic), ("ns", "MQ_INST_1")])
            .await;
        b.click_button("Create topic").await;
        b.wait_text("table[aria-label='Topics'] tbody", topic).await;
    }
    let topic = get_ok(&mut admin, "/admin/topics/ledger?ns=MQ_INST_1").await;
    assert_eq!(topic["topic"]["instance"], "MQ_INST_1", "{topic}");
    b.fill(
        "Create a group",
        &[
            ("group", "GID_audit"),
            ("ns", "MQ_INST_1"),
            ("topic", "ledger, audit"),
            ("invisibility_ms", "30000"),
            ("max_deliveries", "5"),
        ],
    )
    .await;
    b.click_button("Create group").await;
    let row = b
        .wait_text("table[aria-label='Groups'] tbody", "GID_audit")
        .await;
    assert!(row.contains("MQ_INST_1") && row.contains("30,000"), "{row}");
    b.shot("catalog-instance").await;
    let (_, listed) = admin
        .admin(http::Method::GET, "/admin/groups?ns=MQ_INST_1", None)
        .await
        .expect("groups");
    let group = &listed["groups"][0];
    assert_eq!(group["group"], "GID_audit", "{listed}");
    assert_eq!(group["invisibility_ms"], 30000, "{listed}");
    assert_eq!(group["max_deliveries"], 5, "{listed}");
    let topics: Vec<&str> = group["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["topic"].as_str())
        .collect();
    assert_eq!(topics.len(), 2, "{listed}");
    assert!(
        topics.contains(&"ledger") && topics.contains(&"audit"),
        "{listed}"
    );
    // An update: only the setting given changes.
    b.fill(
        "Create a group",
        &[
            ("group", "GID_audit"),
            ("ns", "MQ_INST_1"),
            ("max_deliveries", "9"),
        ],
    )
    .await;
    b.click_button("Create group").await;
    b.wait_text("table[aria-label='Groups'] tbody", "9").await;
    let (_, listed) = admin
        .admin(http::Method::GET, "/admin/groups?ns=MQ_INST_1", None)
        .await
        .expect("groups");
    assert_eq!(listed["groups"][0]["max_deliveries"], 9, "{listed}");
    assert_eq!(listed["groups"][0]["invisibility_ms"], 30000, "{listed}");
    b.click_in_row("Groups", "GID_audit", "Delete").await;
    let asked = b.accept_confirm().await;
    assert!(asked.contains("instance MQ_INST_1"), "{asked}");
    b.wait_text("#main .empty", "No group.").await;
    b.close().await;
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP

/// One request written by hand; the whole answer (status line, headers, body).
/// What a user relies on finding: a keyed or tagged message beyond the first page of a
/// peek; a topic of a non-default instance next to a same-named one; a half message's
/// groups said truthfully; a malformed address; why the console logged out; a rate chart
/// with no traffic; the publish form's topic check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_finds_beyond_the_first_page_and_in_every_instance() {
    let Some((broker, b, sdk, _consumer)) = scene("orders", "GID_scan").await else {
        return;
    };
    b.log_in(Some(TOKEN)).await;
    // Nothing published yet: the chart says so rather than a made-up peak.
    b.wait_text("[data-peak]", "no traffic").await;

    let producer = sdk.producer("orders".parse().unwrap());
    // More than the longest peek (1,000), then the one that matters.
    for i in 0..1000 {
        producer
            .publish(&TopicMessage::new(format!("filler {i}")).unwrap())
            .await
            .expect("publish");
    }
    let needle = producer
        .publish(
            &TopicMessage::new("the needle")
                .unwrap()
                .with_tag("rare".parse().unwrap())
                .with_key("needle")
                .unwrap(),
        )
        .await
        .expect("publish");
    let other = Client::builder()
        .endpoint(broker.endpoint())
        .expect("endpoint")
        .credentials(mq_tokio::Credentials::new(AK, SK))
        .instance_id("MQ_INST_1".parse().unwrap())
        .build()
        .expect("client");
    let elsewhere = other
        .producer("orders".parse().unwrap())
        .publish(&TopicMessage::new("from instance one").unwrap())
        .await
        .expect("publish");

    // A second topic for the same group, and a topic with a 64-character name.
    sdk.consumer("audit".parse().unwrap(), "GID_scan".parse().unwrap())
        .receive(BatchSize::MIN, WaitSeconds::new(0).unwrap())
        .await
        .expect("registers the group");
    let long = "T".repeat(64);
    sdk.producer(long.parse().unwrap())
        .publish(&TopicMessage::new("a long topic").unwrap())
        .await
        .expect("publish");

    // The overview counts groups, not (group, topic) pairs.
    b.open("").await;
    let groups = b.wait_text("[data-card='groups']", "groups").await;
    assert!(groups.starts_with("1\n"), "{groups:?}");
    // A long topic name wraps rather than pushing the page off a narrow window.
    b.client.set_window_size(420, 800).await.expect("resize");
    for route in ["#/".to_owned(), format!("#/topic/{long}")] {
        b.open(&route).await;
        b.wait_text("#main", &long[..20]).await;
        b.assert_fits(&format!("{route} with a 64-character topic"), false)
            .await;
    }
    // With the Instance column hidden, a topic of another instance still says which.
    b.open("#/").await;
    b.wait_text("table[aria-label='Topics']", "orders (MQ_INST_1)")
        .await;
    b.client.set_window_size(1280, 800).await.expect("resize");

    // Key and tag filters find the 1,001st message.
    b.open("#/topic/orders").await;
    b.wait_text("[data-summary]", "200 of 200 shown").await;
    b.type_into("input[name='key']", "needle").await;
    b.click_button("Peek").await;
    let shown = b.wait_text("[data-peek]", "the needle").await;
    assert!(shown.contains(needle.message_id.as_str()), "{shown}");
    b.type_into("input[name='key']", "").await;
    b.type_into("input[name='tag']", "rare").await;
    b.click_button("Peek").await;
    let shown = b
        .wait_text(
            "[data-peek]",
            "Searched 1001 messages of the topic for tag rare: 1 ready for GID_scan shown",
        )
        .await;
    assert!(shown.contains("the needle"), "{shown}");
    b.shot("topic-filter-beyond-first-page").await;

    // Past the first page: Next page goes on where the page ended, for a peek by state and
    // for a time range alike (the listing answers `next`; the console passes it as `after`).
    b.type_into("input[name='tag']", "").await;
    b.click_button("Peek").await;
    b.wait_text("[data-summary]", "200 of 200 shown. More remain")
        .await;
    b.click_button("Next page →").await;
    b.wait_text("[data-summary]", "Page 2: ").await;
    assert_eq!(b.bodies().await, fillers(200..400));
    b.set_local_time("input[name='from']", Some(now_ms() - 3_600_000))
        .await;
    b.click_button("Peek").await;
    b.wait_text("[data-summary]", "200 of 200 shown. More remain")
        .await;
    assert_eq!(b.bodies().await, fillers(0..200));
    b.click_button("Next page →").await;
    b.wait_text("[data-summary]", "Page 2: ").await;
    assert_eq!(b.bodies().await, fillers(200..400));
    b.click_button("Next page →").await;
    b.wait_text("[data-summary]", "Page 3: ").await;
    assert_eq!(b.bodies().await, fillers(400..600));
    b.shot("topic-time-range-page-3").await;
    // Changing a filter ends the paging (the next page would not follow from this one).
    b.type_into("input[name='tag']", "rare").await;
    assert_eq!(
        b.script("return document.querySelectorAll('[data-next]').length;")
            .await,
        serde_json::json!(0)
    );
    b.set_local_time("input[name='from']", None).await;
    // The group page lists the first 100 and links to the topic page, which pages on.
    b.open("#/group/orders/GID_scan").await;
    b.click_xpath("//*[@data-more]/a").await;
    b.wait_text("h1", "Topic orders").await;
    b.wait_text("[data-summary]", "200 of 200 shown. More remain")
        .await;
    assert_eq!(b.bodies().await, fillers(0..200));
    // Purged (after a confirmation), the page shows its new numbers at once.
    b.click_button("Purge topic…").await;
    b.accept_confirm().await;
    b.wait_text("#toast", "Purged 1001 message(s)").await;
    b.wait_text("[data-card='stored']", "0\nstored").await;

    // The same topic name in two instances: both offered, each searched where it lives.
    b.open("#/message").await;
    b.find("select[name='topic']")
        .await
        .select_by_label("orders (MQ_INST_1)")
        .await
        .expect("the instance's topic is offered");
    b.type_into("input[name='id']", elsewhere.message_id.as_str())
        .await;
    b.click_button("Find").await;
    let page = b.wait_text("[data-message]", "from instance one").await;
    assert!(page.contains("MQ_INST_1"), "{page}");
    b.shot("message-other-instance").await;

    // The publish form checks a topic name (its pattern compiles in the browser).
    b.open("#/publish").await;
    b.type_into("input[name='topic']", "no spaces").await;
    let mismatch = b
        .script("return document.querySelector(\"input[name='topic']\").validity.patternMismatch;")
        .await;
    assert_eq!(mismatch, serde_json::Value::Bool(true));

    // A malformed address is no page.
    b.open("#/topic/%E0%A4%A").await;
    b.wait_text("h1", "No such page").await;

    // Credentials that stop working (a restarted broker has a new token): logged out, and
    // told why.
    b.script("sessionStorage.setItem('mq-console-credentials', JSON.stringify({token: 'not-the-token-0123456789'}));").await;
    b.open("#/dead").await;
    b.wait_text("[data-logged-out]", "refused the admin token")
        .await;
    b.assert_nav_hidden().await;
    b.close().await;
}

/// A FIFO topic takes messages from the console's publish form with a sharding key, and
/// an orderly consumer receives them in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_publishes_to_a_fifo_topic_in_order() {
    let Some((broker, b, mut admin)) = logged_in().await else {
        return;
    };
    let (status, answer) = admin
        .admin(
            http::Method::POST,
            "/admin/topics?topic=ledger&message_type=FIFO",
            None,
        )
        .await
        .expect("create");
    assert_eq!(status, 200, "{answer}");
    let consumer = sdk(&broker).consumer("ledger".parse().unwrap(), "GID_ledger".parse().unwrap());
    consumer
        .receive_orderly(BatchSize::MIN, WaitSeconds::new(0).unwrap())
        .await
        .expect("registers the group");
    b.open("#/publish").await;
    b.type_into("input[name='topic']", "ledger").await;
    b.type_into("input[name='sharding_key']", "account-7").await;
    for body in ["debit 1", "debit 2", "debit 3"] {
        b.type_into("textarea[name='body']", body).await;
        // Submitting clears the last receipt at once; the next one shows once published.
        b.click_button("Publish").await;
        b.find("[data-message-id]").await;
    }
    b.shot("publish-fifo").await;
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        let got = consumer
            .receive_orderly(BatchSize::MAX, WaitSeconds::new(3).unwrap())
            .await
            .expect("receive");
        assert!(!got.is_empty(), "only {bodies:?} delivered");
        for m in &got {
            assert_eq!(m.sharding_key(), Some("account-7"));
            bodies.push(m.body.clone());
        }
        consumer
            .ack(got.iter().map(|m| &m.receipt_handle))
            .await
            .expect("ack");
    }
    assert_eq!(bodies, ["debit 1", "debit 2", "debit 3"]);

    // A delivery time picked in local time, and a transactional message: the broker holds
    // the first delayed until that second, the second as a half message.
    let at = now_ms() + 3_600_000;
    // The page's own link in the bar renders it afresh: an empty form.
    let shown = b.ready().await;
    b.click_xpath("//nav//a[normalize-space(.)='Publish']")
        .await;
    b.rendered_after(&shown, "the publish page again").await;
    assert_eq!(
        b.find("input[name='sharding_key']")
            .await
            .prop("value")
            .await
            .expect("value"),
        Some(String::new())
    );
    b.type_into("input[name='topic']", "timed").await;
    b.find("select[name='when']")
        .await
        .select_by_value("at")
        .await
        .expect("select");
    b.set_local_time("input[name='at']", Some(at)).await;
    b.click_button("Publish").await;
    let id = b.published_id().await;
    let message = found(&mut admin, "timed", &id).await;
    assert_eq!(message["start_deliver_time"], at / 1000 * 1000, "{message}");
    // The same form, now transactional and due at once.
    b.find("select[name='when']")
        .await
        .select_by_value("now")
        .await
        .expect("select");
    b.find("input[name='transactional']")
        .await
        .click()
        .await
        .expect("check");
    b.click_button("Publish").await;
    b.wait_text("[data-receipt]", "Half message").await;
    let id = b.published_id().await;
    assert_eq!(found(&mut admin, "timed", &id).await["state"], "half");
    b.close().await;
}

/// The one message in flight for `consumer` (delivered once, not acked) becomes a dead
/// letter (with `max_deliveries` 2): `advance` (past its invisibility), delivered a second
/// time and not acked, `advance` again.
async fn let_die(admin: &mut support::Client, consumer: &Consumer, by: &str) {
    advance(admin, by).await;
    let again = consumer
        .receive(BatchSize::MIN, WaitSeconds::new(3).unwrap())
        .await
        .expect("receive");
    assert_eq!(again.first().map(|m| m.consumed_times), Some(2));
    advance(admin, by).await;
}

/// `POST target` (a move of the test clock), answered 200.
async fn advance(admin: &mut support::Client, target: &str) {
    let (status, json) = admin
        .admin(http::Method::POST, target, None)
        .await
        .expect("advance");
    assert_eq!(status, 200, "{target}: {json}");
}

/// Fails with `why` when `consumer` receives a message within `wait_s` seconds.
async fn assert_nothing_delivered(consumer: &Consumer, wait_s: u8, why: &str) {
    let got = consumer
        .receive(BatchSize::MAX, WaitSeconds::new(wait_s).unwrap())
        .await
        .expect("receive");
    assert!(got.is_empty(), "{why}: {got:?}");
}

/// `GET target` of the admin API, answered 200: its JSON.
async fn get_ok(admin: &mut support::Client, target: &str) -> serde_json::Value {
    let (status, json) = admin
        .admin(http::Method::GET, target, None)
        .await
        .expect("admin call");
    assert_eq!(status, 200, "{target}: {json}");
    json
}

/// The message `id` of `topic` as the admin API finds it.
async fn found(admin: &mut support::Client, topic: &str, id: &str) -> serde_json::Value {
    get_ok(admin, &format!("/admin/topics/{topic}/messages?id={id}")).await["messages"][0].clone()
}

/// The bodies `filler {i}` for `range`, as the paging test publishes them.
fn fillers(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("filler {i}")).collect()
}

async fn raw(addr: std::net::SocketAddr, head: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{head}\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("read");
    answer
}

/// `POST path` with `Authorization: Bearer token` and `body`; the whole answer.
async fn post_with_token(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
    body: &str,
) -> String {
    let head = format!("POST {path} HTTP/1.1\r\nauthorization: Bearer {token}");
    raw(addr, &head, body).await
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer
        .split("\r\n\r\n")
        .next()?
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        })
        .map(|(_, v)| v.trim())
}

#[tokio::test]
async fn the_console_assets_are_served_with_their_types() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    assert_eq!(
        broker.console_url(),
        Some(format!("{}/console/", broker.endpoint()))
    );
    let redirect = raw(addr, "GET /console HTTP/1.1", "").await;
    assert!(redirect.starts_with("HTTP/1.1 308"), "{redirect}");
    assert_eq!(header(&redirect, "location"), Some("/console/"));
    for (path, content_type, contains) in [
        (
            "/console/",
            "text/html;charset=utf-8",
            "<script type=\"module\" src=\"app.js\">",
        ),
        ("/console/app.js", "text/javascript;charset=utf-8", "import"),
        (
            "/console/api.js",
            "text/javascript;charset=utf-8",
            "crypto.subtle",
        ),
        ("/console/console.css", "text/css;charset=utf-8", ":root"),
        ("/console/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let answer = raw(addr, &format!("GET {path} HTTP/1.1"), "").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
        assert_eq!(
            header(&answer, "content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(header(&answer, "cache-control"), Some("no-cache"), "{path}");
        assert_eq!(header(&answer, "x-content-type-options"), Some("nosniff"));
        assert!(answer.contains(contains), "{path}");
    }
    let missing = raw(addr, "GET /console/nothing.js HTTP/1.1", "").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let post = raw(addr, "POST /console/ HTTP/1.1", "").await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");

    // With --admin off there is nothing to show it with: no console address.
    let off = Broker::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin: AdminAccess::Off,
        ..ServerConfig::default()
    })
    .await
    .expect("broker");
    assert_eq!(off.console_url(), None);
    let page = raw(off.local_addr(), "GET /console/ HTTP/1.1", "").await;
    assert!(page.starts_with("HTTP/1.1 404"), "{page}");
    assert!(page.contains("--admin off"), "{page}");
}

#[tokio::test]
async fn publishing_from_the_console_is_an_authenticated_admin_call() {
    let broker = start_broker().await;
    let addr = broker.local_addr();
    let target = "/admin/topics/orders/messages";
    let body = r#"{"body":"from the console","key":"k1","properties":{"a":"b"},"delay_ms":60000}"#;

    // A group, so that the topic keeps what is published.
    let mut c = support::Client::new(addr);
    let (topic, group) = ("orders".parse().unwrap(), "GID_a".parse().unwrap());
    c.consume(&topic, &group, mq_proto::ConsumeKind::Normal, 1, 0)
        .await
        .expect("io")
        .expect("registers the group");

    // Refused without credentials, with a wrong token, and when badly signed.
    let none = raw(addr, &format!("POST {target} HTTP/1.1"), body).await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    assert!(none.contains("MissingAuthorizationHeader"), "{none}");
    let wrong = post_with_token(addr, target, "not-the-token-at-all", body).await;
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");
    assert_eq!(broker.stats().published, 0);

    // Signed as the console signs (the date as x-mq-date): published, delayed a minute.
    let date = mq_proto::sign::format_http_date(SystemTime::now());
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("x-mq-date", date.parse().unwrap());
    // The date line of the string to sign is x-mq-date's value (no Date header is sent).
    headers.insert("date", date.parse().unwrap());
    let to_sign = mq_proto::sign::string_to_sign(&http::Method::POST, &headers, target);
    let signed = |secret: &str| {
        format!(
            "POST {target} HTTP/1.1\r\ncontent-type: application/json\r\nx-mq-date: {date}\r\nauthorization: MQ {AK}:{}",
            mq_proto::sign::signature(secret, &to_sign)
        )
    };
    let bad = raw(addr, &signed("not-the-secret"), body).await;
    assert!(bad.starts_with("HTTP/1.1 403"), "{bad}");
    assert!(bad.contains("SignatureDoesNotMatch"), "{bad}");
    let ok = raw(addr, &signed(SK), body).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let json: serde_json::Value =
        serde_json::from_str(ok.split("\r\n\r\n").nth(1).expect("body")).expect("json");
    assert_eq!(
        json["message_id"].as_str().map(str::len),
        Some(32),
        "{json}"
    );
    assert_eq!(json["receipt_handle"], serde_json::Value::Null);
    let stats = broker.stats();
    assert_eq!(stats.published, 1);

    // The same backend call as a protocol publish: the group holds it, delayed a minute.
    let (status, peek) = c
        .admin(
            http::Method::GET,
            &format!("{target}?id={}", json["message_id"].as_str().unwrap()),
            None,
        )
        .await
        .expect("find");
    assert_eq!(status, 200, "{peek}");
    let found = &peek["messages"][0];
    assert_eq!(found["body"], "from the console");
    assert_eq!(found["properties"]["a"], "b");
    assert_eq!(found["properties"]["KEYS"], "k1");
    let at = found["start_deliver_time"].as_u64().expect("scheduled");
    let published = found["publish_time"].as_u64().expect("publish time");
    assert!((59_000..=61_000).contains(&(at - published)), "{found}");

    // Bad input: the protocol's reason, as JSON; nothing published.
    for (bad, says) in [
        ("{", "not a message"),
        (r#"{"body":""}"#, "empty"),
        (r#"{"body":"x","delay":5}"#, "unknown field"),
        (r#"{"body":"x","tag":"a||b"}"#, "tag"),
    ] {
        let answer = post_with_token(addr, target, TOKEN, bad).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        assert!(answer.contains("InvalidArgument"), "{bad}: {answer}");
        assert!(answer.to_lowercase().contains(says), "{bad}: {answer}");
    }
    let half = post_with_token(
        addr,
        "/admin/topics/payments/messages",
        TOKEN,
        r#"{"body":"charge","transactional":true,"check_immunity_s":30}"#,
    )
    .await;
    assert!(half.starts_with("HTTP/1.1 200"), "{half}");
    assert!(!half.contains("\"receipt_handle\": null"), "{half}");
    assert_eq!(broker.stats().published, 2);
}
