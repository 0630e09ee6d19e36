//! Dashboard sessions behind a load balancer with no sticky routing: two `basic_app`
//! processes on one PostgreSQL database and one session secret. A login on one is valid on
//! the other, for the dashboard and the API (state changes with the session's CSRF token);
//! a logout on either ends the session on both.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const LONG: Duration = Duration::from_secs(60);
const SECRET: &str = "a session secret shared by every instance, 48+ bytes";

/// The example binary `name`, built beside this test binary (`cargo test` builds the
/// examples; with nextest, `cargo build --examples` first).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    profile.join("examples").join(name)
}

/// Starts a `basic_app` on `url` and returns it with its base address.
async fn instance(url: &str, dir: &Path) -> (Child, String) {
    let mut command = Command::new(example("basic_app"));
    command
        .env("TASKFLOW_POSTGRES_URL", url)
        .env("TASKFLOW_DB", dir.join("unused.db"))
        .env("TASKFLOW_ADDR", "127.0.0.1:0")
        .env("TASKFLOW_ADMIN_USER", "ops")
        .env("TASKFLOW_ADMIN_PASSWORD", "correct horse")
        .env("TASKFLOW_SESSION_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("the basic_app example (cargo build --examples)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(LONG, async {
        loop {
            match lines.next_line().await.unwrap() {
                Some(line) if line.contains("listening on") => return line,
                Some(_) => {}
                None => panic!("basic_app exited before listening"),
            }
        }
    })
    .await
    .expect("basic_app listening within a minute");
    // Keep reading its output, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    (child, base)
}

/// `GET base+path` with the session cookie (if any): the status and the JSON body (or null).
async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    cookie: Option<&str>,
) -> (u16, Value) {
    let mut request = client.get(format!("{base}{path}"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A state-changing `POST base+path` from the dashboard's own page, with the cookie and CSRF
/// token.
async fn post(client: &reqwest::Client, base: &str, path: &str, cookie: &str, csrf: &str) -> u16 {
    let response = client
        .post(format!("{base}{path}"))
        .header("cookie", cookie)
        .header("x-taskflow-csrf", csrf)
        .header("origin", base)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_on_one_instance_works_on_the_other_and_a_logout_ends_it_on_both() {
    let Some(schema) = crate::conformance::postgres_schema().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_a, a) = instance(&schema.url, dir.path()).await;
    let (_b, b) = instance(&schema.url, dir.path()).await;
    let client = reqwest::Client::new();
    assert_eq!(get(&client, &b, "/tasks", None).await.0, 401, "the API needs a login");

    // Sign in on A.
    let response = client
        .post(format!("{a}/tasks/login"))
        .header("origin", &a)
        .json(&json!({ "username": "ops", "password": "correct horse" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("Max-Age="), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = response.json::<Value>().await.unwrap()["csrf"].as_str().unwrap().to_owned();

    // Used on B: the session, the dashboard, the API, a state change with the CSRF token.
    let (status, session) = get(&client, &b, "/tasks/session", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert_eq!((&session["user"], &session["csrf"]), (&json!("ops"), &json!(csrf)));
    let dashboard =
        client.get(format!("{b}/tasks/dashboard")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(dashboard.status().as_u16(), 200);
    assert_eq!(get(&client, &b, "/tasks", Some(&cookie)).await.0, 200);
    assert_eq!(post(&client, &b, "/tasks/queues/emails/pause", &cookie, &csrf).await, 200);
    assert_eq!(post(&client, &a, "/tasks/queues/emails/resume", &cookie, &csrf).await, 200);
    assert_eq!(post(&client, &b, "/tasks/queues/emails/pause", &cookie, "wrong").await, 403);
    let (_, audit) = get(&client, &a, "/tasks/audit", Some(&cookie)).await;
    assert!(audit.to_string().contains("ops"), "audited as the signed-in user: {audit}");

    // Signed out on B: refused on both, though the client keeps sending the cookie.
    assert_eq!(post(&client, &b, "/tasks/logout", &cookie, &csrf).await, 200);
    assert_eq!(get(&client, &b, "/tasks", Some(&cookie)).await.0, 401);
    assert_eq!(get(&client, &a, "/tasks", Some(&cookie)).await.0, 401, "revoked everywhere");
    let (_, session) = get(&client, &a, "/tasks/session", Some(&cookie)).await;
    assert_eq!(session["user"], Value::Null);
    // A cookie that was never issued (its seal broken) is no session either.
    let forged = format!("{}x", &cookie[..cookie.len() - 1]);
    assert_eq!(get(&client, &a, "/tasks", Some(&forged)).await.0, 401);
}
