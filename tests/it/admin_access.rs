//! The admin API's access rules over real HTTP: authentication, sessions and CSRF, redacted
//! arguments, a custom prefix.

use serde_json::{Value, json};

use crate::admin::{Server, admin_fails, admin_ok, error_of, ids};
use crate::support::unique;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_sessions_and_csrf() {
    let server = Server::start(|a| a.basic_auth("admin", "s3cret").bearer_token("tok-123")).await;
    let failed = server.manager.add_task(admin_fails, (unique("auth"), String::new()));
    server.finished(failed).await;

    for path in
        ["/tasks", "/tasks/metrics", "/tasks/stream", "/tasks/audit", &format!("/tasks/{failed}")]
    {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(error_of(&body), "authentication required");
    }
    let wrong = server.client.get(server.url("/tasks")).basic_auth("admin", Some("nope"));
    assert_eq!(server.send(wrong).await.0, 401);
    let basic = server.client.get(server.url("/tasks")).basic_auth("admin", Some("s3cret"));
    assert_eq!(server.send(basic).await.0, 200);
    let bearer = server.client.get(server.url("/tasks")).bearer_auth("tok-123");
    assert_eq!(server.send(bearer).await.0, 200);
    // The dashboard page is open: it shows the login.
    let page = server.client.get(server.url("/tasks/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let (_, session) = server.get("/tasks/session").await;
    assert_eq!(session["auth_required"], true);
    assert_eq!(session["user"], Value::Null);

    let (status, _) =
        server.post("/tasks/login", json!({ "username": "admin", "password": "x" })).await;
    assert_eq!(status, 401);
    let login = server
        .client
        .post(server.url("/tasks/login"))
        .json(&json!({ "username": "admin", "password": "s3cret" }));
    let response = login.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let csrf = response.json::<Value>().await.unwrap()["csrf"].as_str().unwrap().to_owned();

    let with_cookie = |request: reqwest::RequestBuilder| request.header("cookie", &cookie);
    assert_eq!(server.send(with_cookie(server.client.get(server.url("/tasks")))).await.0, 200);
    let retry = format!("/tasks/{failed}/retry");
    let (status, body) = server.send(with_cookie(server.client.post(server.url(&retry)))).await;
    assert_eq!(status, 403, "a cookie alone cannot change anything: {body}");
    assert!(error_of(&body).contains("x-taskflow-csrf"));
    let forged =
        with_cookie(server.client.post(server.url(&retry))).header("x-taskflow-csrf", "guess");
    assert_eq!(server.send(forged).await.0, 403);
    let good = with_cookie(server.client.post(server.url(&retry))).header("x-taskflow-csrf", &csrf);
    let (status, body) = server.send(good).await;
    assert_eq!(status, 201, "{body}");
    // Another site's page may not change tasks, whatever credentials the browser attaches.
    let cross = server
        .client
        .post(server.url(&retry))
        .basic_auth("admin", Some("s3cret"))
        .header("sec-fetch-site", "cross-site");
    assert_eq!(server.send(cross).await.0, 403);

    let (_, audit) =
        server.send(server.client.get(server.url("/tasks/audit")).bearer_auth("tok-123")).await;
    assert_eq!(audit["entries"][0]["actor"], "admin");
    let logout = with_cookie(server.client.post(server.url("/tasks/logout")))
        .header("x-taskflow-csrf", &csrf);
    assert_eq!(server.send(logout).await.0, 200);
    assert_eq!(server.send(with_cookie(server.client.get(server.url("/tasks")))).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_can_be_hidden_or_redacted_by_field_name() {
    let hidden = Server::start(|a| a.display_args(false)).await;
    let id = hidden.manager.add_task(admin_fails, (unique("hidden"), "hunter2".to_owned()));
    hidden.finished(id).await;
    let (_, record) = hidden.get(&format!("/tasks/{id}")).await;
    assert_eq!(record["args"], "[hidden]");
    let (_, page) = hidden.get("/tasks").await;
    assert_eq!(page["tasks"][0]["args"], "[hidden]");

    let redacted = Server::start(|a| a.redact(["SECRET"])).await;
    let id = redacted.manager.add_task(admin_fails, (unique("redacted"), "hunter2".to_owned()));
    redacted.finished(id).await;
    let (_, record) = redacted.get(&format!("/tasks/{id}")).await;
    assert_eq!(record["args"]["secret"], "[redacted]");
    assert!(record["args"]["key"].as_str().unwrap().starts_with("redacted-"));
    assert!(!record.to_string().contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_prefix_moves_every_route() {
    let server = Server::start(|a| a.prefix("/ops/jobs/")).await;
    let id = server.manager.add_task(admin_ok, unique("prefix"));
    server.finished(id).await;
    let (status, page) = server.get("/ops/jobs?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), [id.to_string()]);
    assert_eq!(server.get(&format!("/ops/jobs/{id}")).await.0, 200);
    let page = server.client.get(server.url("/ops/jobs/dashboard")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<meta name="taskflow-prefix" content="/ops/jobs">"#));
    let response = server.client.get(server.url("/tasks")).send().await.unwrap();
    assert_eq!(response.status(), 404);
}
