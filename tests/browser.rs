//! The dashboard in a real browser: headless Chromium, driven through chromedriver, against
//! the running `basic_app` example. Needs `TASKFLOW_TEST_CHROMEDRIVER` (the chromedriver
//! binary; `.ci/run` installs Debian's `chromium` and `chromium-driver` and sets it); without
//! it the test says it skipped and why.

use std::path::Path;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::Command;

#[path = "browser/charts.rs"]
mod charts;
#[path = "browser/driver.rs"]
mod driver;

use driver::{LONG, click, enqueue, example, free_port, row_status, spawn_until, wait_js};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_updates_live_shows_errors_retries_and_escapes() {
    let Some(chromedriver) = std::env::var_os("TASKFLOW_TEST_CHROMEDRIVER") else {
        println!(
            "skipped: TASKFLOW_TEST_CHROMEDRIVER is not set (the chromedriver binary; .ci/run sets it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut app = Command::new(example("basic_app"));
    app.env("TASKFLOW_DB", dir.path().join("tasks.db")).env("TASKFLOW_ADDR", "127.0.0.1:0");
    let (_app, line) = spawn_until(app, "listening on").await;
    let base = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();

    let port = free_port();
    let mut driver = Command::new(chromedriver);
    driver.arg(format!("--port={port}"));
    let (_driver, _) = spawn_until(driver, "started successfully").await;

    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": std::env::var("TASKFLOW_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--no-first-run", "--disable-dev-shm-usage", "--window-size=1400,1000"],
        }
    });
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromedriver session");

    client.goto(&format!("{base}/tasks/dashboard")).await.unwrap();
    wait_js(&client, "the live stream", "return document.getElementById('live').className;", |v| {
        v == "on"
    })
    .await;

    // A new task appears and turns success without a reload.
    let http = reqwest::Client::new();
    let marker = client.execute("window.__same_page = 42; return 1;", vec![]).await.unwrap();
    assert_eq!(marker, 1);
    let ok = enqueue(&http, &base, "ada@example.com").await;
    wait_js(&client, "the new row to succeed", &row_status(&ok), |v| v == "success").await;
    let same = client.execute("return window.__same_page;", vec![]).await.unwrap();
    assert_eq!(same, 42, "the page was not reloaded");
    progress_bar(&client, &http, &base).await;

    // A `<script>` argument is shown as text, and runs nothing.
    let script = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned=2\">";
    let hostile = enqueue(&http, &base, script).await;
    wait_js(&client, "the hostile row", &row_status(&hostile), |v| v == "success").await;
    click(&client, &format!("#rows tr[data-id=\"{hostile}\"]")).await;
    let detail_of = "const m = document.querySelector('#detail .mono'); return m && m.textContent;";
    wait_js(&client, "its detail", detail_of, |v| v.as_str() == Some(hostile.as_str())).await;
    let shown = wait_js(
        &client,
        "the detail panel",
        "const p = document.querySelector('#tab-body pre'); return p ? p.textContent : null;",
        |v| v.is_string(),
    )
    .await;
    let shown: Value = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    assert_eq!(shown["address"], script, "the arguments are shown as they are, as text");
    let pwned = client.execute("return window.__pwned || null;", vec![]).await.unwrap();
    assert_eq!(pwned, Value::Null, "nothing from the arguments ran");
    let injected = client
        .execute(
            "return document.querySelectorAll('#detail script, #detail img, #rows img').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, 0);

    // A failed task: its error tab, then retry, and the new task shows up.
    let failed = enqueue(&http, &base, "bob@bounce.example").await;
    // While it waits in the store for a retry, its row says which and when.
    let note = format!(
        "const n = document.querySelector('#rows tr[data-id=\"{failed}\"] .wait-note'); return n ? n.textContent : null;"
    );
    let waiting = wait_js(&client, "the retry's note", &note, |v| v.is_string()).await;
    let waiting = waiting.as_str().unwrap();
    let (head, time) = waiting.rsplit_once(" at ").expect("retry N of 2 at HH:MM:SS");
    assert!(head == "retry 1 of 2" || head == "retry 2 of 2", "{waiting}");
    assert!(time.len() == 8 && time.chars().filter(|c| *c == ':').count() == 2, "{waiting}");
    wait_js(&client, "the task to fail", &row_status(&failed), |v| v == "failed").await;
    click(&client, &format!("#rows tr[data-id=\"{failed}\"]")).await;
    wait_js(&client, "its detail", "return document.querySelector('#detail .mono') && document.querySelector('#detail .mono').textContent;", |v| v.as_str() == Some(failed.as_str())).await;
    click(&client, "#detail button[data-tab=\"error\"]").await;
    let error = wait_js(
        &client,
        "the error tab",
        "const e = document.getElementById('error-message'); return e ? e.textContent : null;",
        |v| v.is_string(),
    )
    .await;
    assert!(
        error.as_str().unwrap().contains("the mail server refused bob@bounce.example"),
        "{error}"
    );
    let chain = client.find(Locator::Id("stacktrace")).await.unwrap().text().await.unwrap();
    assert!(chain.contains("mail server refused"), "{chain}");
    click(&client, "#retry").await;
    let new_id = wait_js(
        &client,
        "the retry to be selected",
        "const e = document.querySelector('#detail .mono'); return e ? e.textContent : null;",
        |v| v.as_str().is_some_and(|id| id != failed),
    )
    .await;
    let new_id = new_id.as_str().unwrap().to_owned();
    wait_js(&client, "the retry's row", &row_status(&new_id), |v| v.is_string()).await;
    let record: Value =
        http.get(format!("{base}/tasks/{new_id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(record["retry_of"], failed.as_str());
    assert_eq!(record["source"], "retry");

    // The dead-letter view lists the failed task, ready for a bulk replay.
    click(&client, "header nav button[data-view=\"dead\"]").await;
    let dead = format!(
        "const r = document.querySelector('#rows tr[data-id=\"{failed}\"]'); \
         return r ? [r.dataset.status, !!r.querySelector('input[type=checkbox]'), \
         !document.getElementById('dead-actions').classList.contains('hidden')] : null;"
    );
    wait_js(&client, "the dead letter", &dead, |v| v == &json!(["failed", true, true])).await;
    let listed = client
        .execute(
            "return [...document.querySelectorAll('#rows tr')].map(r => r.dataset.status);",
            vec![],
        )
        .await
        .unwrap();
    assert!(listed.as_array().unwrap().iter().all(|s| s == "failed"), "{listed}");
    // The audit log shows the retry.
    click(&client, "header nav button[data-view=\"audit\"]").await;
    wait_js(
        &client,
        "the audit entry",
        "return document.getElementById('audit-rows').textContent;",
        |v| v.as_str().is_some_and(|t| t.contains("retry") && t.contains(&failed)),
    )
    .await;
    // The retried task fails again after its own retries: until then it counts as pending in
    // the emails queue, whose counts the Queues tab checks.
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let record: Value =
            http.get(format!("{base}/tasks/{new_id}")).send().await.unwrap().json().await.unwrap();
        if record["status"] == "failed" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the retried task never ended: {record}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    queues_tab(&client, &http, &base).await;
    schedules_tab(&client, &http, &base).await;
    charts::charts(&client, &http, &base).await;
    click(&client, "header nav button[data-view=\"tasks\"]").await;
    wait_js(&client, "the table", &row_status(&ok), |v| v == "success").await;
    // The queue filter: only the emails queue's tasks.
    client
        .execute(
            "const s = document.getElementById('f-queue'); s.value = 'emails'; \
             s.dispatchEvent(new Event('change')); return 1;",
            vec![],
        )
        .await
        .unwrap();
    let queues = "const rows = [...document.querySelectorAll('#rows tr[data-id]')]; \
        return rows.length ? rows.map(r => r.children[2].textContent) : null;";
    let shown = wait_js(&client, "the filtered table", queues, |v| {
        v.as_array().is_some_and(|q| q.iter().all(|q| q == "emails"))
    })
    .await;
    assert!(!shown.as_array().unwrap().is_empty());
    client
        .execute(
            "const s = document.getElementById('f-queue'); s.value = ''; \
             s.dispatchEvent(new Event('change')); return 1;",
            vec![],
        )
        .await
        .unwrap();

    click(&client, &format!("#rows tr[data-id=\"{failed}\"]")).await;
    wait_js(
        &client,
        "the failed task's error",
        "const e = document.getElementById('error-message'); return e ? e.textContent : null;",
        |v| v.is_string(),
    )
    .await;
    let png = client.screenshot().await.unwrap();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("dashboard.png"), png).unwrap();
    dark_mode(&client).await;
    client.close().await.unwrap();
}

/// A long task's progress bar shows in its row and advances as the task reports, without a
/// reload; the detail panel shows it too.
async fn progress_bar(client: &Client, http: &reqwest::Client, base: &str) {
    let rows = 5_000.0;
    let body: Value =
        http.post(format!("{base}/report?rows=5000")).send().await.unwrap().json().await.unwrap();
    let id = body["task_id"].as_str().unwrap().to_owned();
    let done = format!(
        "const b = document.querySelector('#rows tr[data-id=\"{id}\"] .progress'); \
         return b ? Number(b.dataset.done) : null;"
    );
    let first = wait_js(client, "a progress bar part way", &done, |v| {
        v.as_f64().is_some_and(|done| done > 0.0 && done < rows)
    })
    .await;
    let first = first.as_f64().unwrap();
    wait_js(client, "the bar to advance", &done, |v| v.as_f64().is_some_and(|done| done > first))
        .await;
    let width = format!(
        "const f = document.querySelector('#rows tr[data-id=\"{id}\"] .progress-fill'); \
         return f ? parseFloat(f.style.width) : null;"
    );
    wait_js(client, "a filled share", &width, |v| v.as_f64().is_some_and(|w| w > 0.0)).await;
    click(client, &format!("#rows tr[data-id=\"{id}\"]")).await;
    wait_js(
        client,
        "the detail's bar",
        "return document.querySelectorAll('#detail .progress').length;",
        |v| v.as_u64() == Some(1),
    )
    .await;
    let same = client.execute("return window.__same_page;", vec![]).await.unwrap();
    assert_eq!(same, 42, "the page was not reloaded");
}

/// The header's toggle turns the page dark (the body, the table, the inputs), the choice
/// outlives a reload, and the toggle turns it light again.
async fn dark_mode(client: &Client) {
    let background = "const c = getComputedStyle(document.body).backgroundColor.match(/\\d+/g) \
                      .slice(0, 3).map(Number); return c[0] + c[1] + c[2];";
    let light = client.execute(background, vec![]).await.unwrap().as_f64().unwrap();
    assert!(light > 600.0, "a light page to begin with: {light}");
    click(client, "#theme").await;
    wait_js(client, "a dark page", background, |v| v.as_f64().is_some_and(|sum| sum < 150.0)).await;
    let table = "const c = getComputedStyle(document.querySelector('table')).backgroundColor \
                 .match(/\\d+/g).slice(0, 3).map(Number); return c[0] + c[1] + c[2];";
    let dark_table = client.execute(table, vec![]).await.unwrap().as_f64().unwrap();
    assert!(dark_table < 200.0, "the table is dark too: {dark_table}");
    // The chart's colours follow: the dark theme's green (#16a34a) for succeeded.
    let bar = charts::fill_of("#chart-throughput rect.c-succeeded");
    wait_js(client, "a dark chart", &bar, |v| v == "rgb(22, 163, 74)").await;
    client.refresh().await.unwrap();
    wait_js(client, "still dark after a reload", background, |v| {
        v.as_f64().is_some_and(|sum| sum < 150.0)
    })
    .await;
    click(client, "#theme").await;
    wait_js(client, "light again", background, |v| v.as_f64().is_some_and(|sum| sum > 600.0)).await;
    wait_js(client, "a light chart", &bar, |v| v == "rgb(21, 128, 61)").await;
}

/// The Queues tab: counts that follow the store without a reload, pause and resume that the
/// engine obeys, a resize; then the registered tasks with their options.
async fn queues_tab(client: &Client, http: &reqwest::Client, base: &str) {
    click(client, "header nav button[data-view=\"queues\"]").await;
    let emails = "const r = document.querySelector('#queue-rows tr[data-queue=\"emails\"]'); \
        return r ? [r.dataset.paused, r.querySelector('.q-pending').textContent] : null;";
    wait_js(client, "the emails queue, idle", emails, |v| v == &json!(["false", "0"])).await;
    click(client, "#queue-rows tr[data-queue=\"emails\"] .queue-toggle").await;
    wait_js(client, "the pause", emails, |v| v == &json!(["true", "0"])).await;
    let held = [
        enqueue(http, base, "held-1@example.com").await,
        enqueue(http, base, "held-2@example.com").await,
    ];
    wait_js(client, "the live count of held tasks", emails, |v| v == &json!(["true", "2"])).await;
    for id in &held {
        let record: Value =
            http.get(format!("{base}/tasks/{id}")).send().await.unwrap().json().await.unwrap();
        assert_eq!(record["status"], "pending", "paused: not started");
    }
    click(client, "#queue-rows tr[data-queue=\"emails\"] .queue-toggle").await;
    wait_js(client, "the resume and the queue drained", emails, |v| v == &json!(["false", "0"]))
        .await;
    for id in &held {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let record: Value =
                http.get(format!("{base}/tasks/{id}")).send().await.unwrap().json().await.unwrap();
            if record["status"] == "success" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{id}: {record}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Typed and sent in one step: the live table may re-render the row in between.
    client
        .execute(
            "const r = document.querySelector('#queue-rows tr[data-queue=\"emails\"]'); \
             r.querySelector('.queue-size').value = '6'; r.querySelector('.queue-resize').click(); return 1;",
            vec![],
        )
        .await
        .unwrap();
    let size = "const r = document.querySelector('#queue-rows tr[data-queue=\"emails\"] .queue-size'); \
        return r ? r.value : null;";
    wait_js(client, "the resize", size, |v| v == "6").await;
    let queues: Value =
        http.get(format!("{base}/tasks/queues")).send().await.unwrap().json().await.unwrap();
    let emails = queues["queues"].as_array().unwrap().iter().find(|q| q["name"] == "emails");
    assert_eq!(emails.unwrap()["concurrency"], 6);

    click(client, "header nav button[data-view=\"registered\"]").await;
    let registered = "const r = document.querySelector('#registered-rows tr[data-task=\"build_report\"]'); \
        return r ? [...r.children].map(c => c.textContent) : null;";
    let row = wait_js(client, "the registered tasks", registered, |v| v.is_array()).await;
    assert_eq!(row[1], "default");
    assert_eq!(row[4], "2", "its concurrency");
    assert_eq!(row[6], "blocking");
    assert_eq!(row[7], "–", "no schedule declared");
    let email = "const r = document.querySelector('#registered-rows tr[data-task=\"send_email\"]'); \
        return r ? r.children[1].textContent : null;";
    wait_js(client, "send_email's queue", email, |v| v == "emails").await;

    click(client, "header nav button[data-view=\"instances\"]").await;
    let instances = "return [...document.querySelectorAll('#instance-rows tr')].map(r => r.children[4].textContent);";
    let listed = wait_js(client, "the instance list", instances, |v| {
        v.as_array().is_some_and(|rows| rows.len() == 1)
    })
    .await;
    assert_eq!(listed[0], "default, emails", "the one instance runs both queues");
}

/// The Schedules tab: the declared and the runtime schedule with their next run; pause, which
/// the store keeps; "run now", whose task appears as the last run and opens in the detail
/// panel.
async fn schedules_tab(client: &Client, http: &reqwest::Client, base: &str) {
    click(client, "header nav button[data-view=\"schedules\"]").await;
    let purge = "const r = document.querySelector('#schedule-rows tr[data-schedule=\"purge_sessions\"]'); \
        return r ? [r.dataset.paused, r.children[2].textContent, r.querySelector('.s-next').textContent] : null;";
    let row = wait_js(client, "the declared schedule", purge, |v| v.is_array()).await;
    assert_eq!(row[0], "false");
    assert_eq!(row[1], "cron `0 3 * * *` in Europe/Paris");
    assert_ne!(row[2], "–", "its next run");
    let weekly =
        "return !!document.querySelector('#schedule-rows tr[data-schedule=\"weekly-report\"]');";
    wait_js(client, "the runtime schedule", weekly, |v| v == &json!(true)).await;

    click(client, "#schedule-rows tr[data-schedule=\"purge_sessions\"] .schedule-toggle").await;
    wait_js(client, "the pause", purge, |v| v[0] == "true").await;
    let stored: Value =
        http.get(format!("{base}/tasks/schedules")).send().await.unwrap().json().await.unwrap();
    let listed = stored["schedules"].as_array().unwrap();
    let purge_stored = listed.iter().find(|s| s["name"] == "purge_sessions").unwrap();
    assert_eq!(purge_stored["paused"], true, "kept in the store");

    click(client, "#schedule-rows tr[data-schedule=\"purge_sessions\"] .schedule-trigger").await;
    let last = "const a = document.querySelector('#schedule-rows tr[data-schedule=\"purge_sessions\"] .s-last-task'); \
        return a ? a.textContent : null;";
    let shown = wait_js(client, "the triggered run", last, |v| v.is_string()).await;
    click(client, "#schedule-rows tr[data-schedule=\"purge_sessions\"] .s-last-task").await;
    let panel = "const p = document.getElementById('detail'); \
        return p && !p.classList.contains('hidden') ? p.querySelector('.mono').textContent : null;";
    // The panel may still show the task selected before until it renders the new one.
    let short = shown.as_str().unwrap().to_owned();
    let id = wait_js(client, "the task's detail", panel, |v| {
        v.as_str().is_some_and(|id| id.ends_with(&short))
    })
    .await;
    let id = id.as_str().unwrap().to_owned();
    assert!(id.ends_with(shown.as_str().unwrap()), "{id} is the task shown");
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let record: Value =
            http.get(format!("{base}/tasks/{id}")).send().await.unwrap().json().await.unwrap();
        if record["status"] == "success" {
            assert_eq!(record["source"], "scheduled");
            assert_eq!(record["tags"]["schedule"], "purge_sessions");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{id}: {record}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    http.post(format!("{base}/tasks/schedules/purge_sessions/resume")).send().await.unwrap();
}
