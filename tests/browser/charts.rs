//! The charts, against the API they are drawn from: the throughput chart's bars, the duration
//! histogram's buckets and the queue-depth lines carry their figures (`data-*`), which must
//! equal `GET /tasks/metrics/history` for the same window. Tasks may still end while this
//! runs, so each comparison is retried until the page has caught up.

use std::time::Duration;

use fantoccini::Client;
use serde_json::{Value, json};

use super::driver::{LONG, click};

/// Reads `script` from the page and `path` from the API until `same` finds them alike.
async fn until_alike(
    client: &Client,
    http: &reqwest::Client,
    what: &str,
    script: &str,
    url: &str,
    same: impl Fn(&Value, &Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let page = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        let api: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        if same(&page, &api) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: the page has {page}, the API {api}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn charts(client: &Client, http: &reqwest::Client, base: &str) {
    // The throughput chart on the Tasks view: a bar per minute of the last hour.
    let bars = "return [...document.querySelectorAll('#chart-throughput g.point')] \
        .map(g => [g.dataset.at, Number(g.dataset.succeeded), Number(g.dataset.failed)]);";
    let points = |api: &Value| -> Value {
        api["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| json!([p["at"], p["succeeded"], p["failed"]]))
            .collect()
    };
    let hour = format!("{base}/tasks/metrics/history?window=1h");
    until_alike(client, http, "the throughput bars", bars, &hour, |page, api| {
        let ran: i64 = api["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["succeeded"].as_i64().unwrap())
            .sum();
        page.as_array().is_some_and(|bars| bars.len() == 60) && ran > 0 && *page == points(api)
    })
    .await;

    // The Metrics view: the durations of a function that ran, and the queues' depth.
    click(client, "header nav button[data-view=\"metrics\"]").await;
    let day = format!("{base}/tasks/metrics/history?window=24h");
    let buckets = "const f = document.getElementById('m-func').value; \
        return [f, [...document.querySelectorAll('#chart-durations g.bucket')] \
        .map(g => Number(g.dataset.count))];";
    until_alike(client, http, "the duration histogram", buckets, &day, |page, api| {
        let Some(name) = page[0].as_str() else { return false };
        let Some(function) =
            api["functions"].as_array().unwrap().iter().find(|f| f["func_name"] == name)
        else {
            return false;
        };
        function["runs"].as_i64().unwrap() > 0 && page[1] == function["histogram"]
    })
    .await;
    let lines = "return Object.fromEntries([...document.querySelectorAll('#chart-depth g.queue-line')] \
        .map(g => [g.dataset.queue, g.dataset.depth.split(',').map(Number)]));";
    until_alike(client, http, "the queue depth lines", lines, &day, |page, api| {
        let queues = api["queues"].as_array().unwrap();
        !queues.is_empty()
            && queues.iter().all(|q| page[q["queue"].as_str().unwrap()] == q["depth"])
            && page.as_object().is_some_and(|p| p.len() == queues.len())
    })
    .await;
    click(client, "header nav button[data-view=\"tasks\"]").await;
}

/// The fill of the first `selector` on the page, as `rgb(...)`.
pub(crate) fn fill_of(selector: &str) -> String {
    format!(
        "const e = document.querySelector('{selector}'); return e ? getComputedStyle(e).fill : null;"
    )
}
