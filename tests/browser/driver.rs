//! Driving the dashboard's browser test: the example app and chromedriver as child
//! processes, and waits on the page that poll rather than sleep.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long any one wait on the page or a process lasts at most.
pub(crate) const LONG: Duration = Duration::from_secs(30);

/// The example binary, built by `cargo test` beside this test's binary.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    profile.join("examples").join(name)
}

/// Starts `program` and returns it with the first stdout line containing `marker`.
pub(crate) async fn spawn_until(mut command: Command, marker: &str) -> (Child, String) {
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(LONG, async {
        loop {
            match lines.next_line().await.unwrap() {
                Some(line) if line.contains(marker) => return line,
                Some(_) => {}
                None => panic!("exited before printing `{marker}`"),
            }
        }
    })
    .await
    .expect("started in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, line)
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` (a script returning a value) until `ready` accepts its result.
pub(crate) async fn wait_js(
    client: &Client,
    what: &str,
    script: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let value = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        if ready(&value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last: {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn enqueue(http: &reqwest::Client, base: &str, email: &str) -> String {
    let url =
        reqwest::Url::parse_with_params(&format!("{base}/signup"), [("email", email)]).unwrap();
    let body: Value = http.post(url).send().await.unwrap().json().await.unwrap();
    body["task_id"].as_str().unwrap().to_owned()
}

/// Clicks the element `css` selects. The live table re-renders its rows whenever tasks
/// change, so an element found a moment ago may be gone by the click: find it again then.
pub(crate) async fn click(client: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let clicked = match client.find(Locator::Css(css)).await {
            Ok(element) => element.click().await,
            Err(err) => Err(err),
        };
        match clicked {
            Ok(()) => return,
            // Stale, or not there yet: the next render has it.
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("{css}: {err}"),
        }
    }
}

pub(crate) fn row_status(id: &str) -> String {
    format!(
        "const r = document.querySelector('#rows tr[data-id=\"{id}\"]'); return r ? r.dataset.status : null;"
    )
}
