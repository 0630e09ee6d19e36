//! Every admin route, taken from the route table the router is built from (so a route added
//! later is covered without editing this file): refuses missing and wrong credentials, refuses
//! cross-origin state changes whatever the credentials, and sends `nosniff`; failed sign-ins
//! are throttled.

use axum::Router;
use base64::Engine;
use reqwest::{Method, StatusCode};
use taskflow::TaskManager;
use taskflow::admin::{Access, routes};

const USER: &str = "admin";
const PASSWORD: &str = "s3cret";

struct Server {
    base: String,
    client: reqwest::Client,
    host: String,
}

/// A server with Basic credentials; with `connect_info`, it throttles by client address too.
async fn start(connect_info: bool) -> Server {
    let manager = TaskManager::builder().build().await.unwrap();
    let app = Router::new().merge(manager.admin().basic_auth(USER, PASSWORD).router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    if connect_info {
        let service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    } else {
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    Server { base: format!("http://{host}"), client: reqwest::Client::new(), host }
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// The route's path under the default prefix, with a real-looking id.
fn concrete(path: &str) -> String {
    let path = path.replace("{id}", &taskflow::TaskId::new().to_string());
    format!("/tasks{}", path.replace("{name}", taskflow::DEFAULT_QUEUE))
}

impl Server {
    fn request(&self, method: &Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method.clone(), format!("{}{path}", self.base))
    }
}

async fn status_and_nosniff(request: reqwest::RequestBuilder, what: &str) -> StatusCode {
    let response = request.send().await.unwrap();
    assert_eq!(
        response.headers().get("x-content-type-options").map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{what}: every response says nosniff"
    );
    response.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_missing_and_wrong_credentials_and_foreign_origins() {
    // Without connect info: each wrong attempt below uses a user name of its own, so none is
    // throttled and each must be refused as unauthorised.
    let server = start(false).await;
    let all: Vec<_> = routes().collect();
    assert!(all.len() >= 16, "the table lists every route");
    for (n, route) in all.iter().enumerate() {
        let path = concrete(route.path);
        let what = format!("{} {path}", route.method);
        let bare = status_and_nosniff(server.request(&route.method, &path), &what).await;
        let wrong = server
            .request(&route.method, &path)
            .header("authorization", basic(&format!("intruder{n}"), "guess"));
        let wrong = status_and_nosniff(wrong, &what).await;
        match route.access {
            Access::Credentials => {
                assert_eq!(bare, 401, "{what} without credentials");
                assert_eq!(wrong, 401, "{what} with wrong credentials");
            }
            _ => assert!(bare != 401 && bare.as_u16() < 500, "{what} is open: {bare}"),
        }
        if !route.changes_state() {
            continue;
        }
        for (name, value) in [
            ("origin", "http://evil.example"),
            ("origin", "null"),
            ("referer", "http://evil.example/page"),
            ("sec-fetch-site", "same-site"),
            ("sec-fetch-site", "cross-site"),
        ] {
            let request = server
                .request(&route.method, &path)
                .header("authorization", basic(USER, PASSWORD))
                .header(name, value)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("ids=1");
            let status = status_and_nosniff(request, &what).await;
            assert_eq!(status, 403, "{what} with `{name}: {value}` and valid credentials");
        }
        // The same request from the server's own page goes through the origin check.
        let own = server
            .request(&route.method, &path)
            .header("authorization", basic(USER, PASSWORD))
            .header("origin", format!("http://{}", server.host))
            .header("sec-fetch-site", "same-origin");
        let status = status_and_nosniff(own, &what).await;
        assert_ne!(status, 403, "{what} from the server's own origin");
    }
    let unknown = status_and_nosniff(server.request(&Method::GET, "/tasks/a/b/c"), "404").await;
    assert_eq!(unknown, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_throttled_per_user_and_address() {
    let server = start(true).await;
    let login = |user: &str, password: &str| {
        server
            .request(&Method::POST, "/tasks/login")
            .json(&serde_json::json!({ "username": user, "password": password }))
    };
    assert_eq!(login(USER, PASSWORD).send().await.unwrap().status(), 200);
    for attempt in 0..10 {
        let status = login(USER, &format!("wrong{attempt}")).send().await.unwrap().status();
        assert_eq!(status, 401, "attempt {attempt}");
    }
    let locked = login(USER, PASSWORD).send().await.unwrap();
    assert_eq!(locked.status(), 429, "locked out, even with the right password");
    let retry_after: u64 =
        locked.headers()["retry-after"].to_str().unwrap().parse().expect("Retry-After seconds");
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    // Basic credentials are the same password: guessing through them is throttled too.
    let basic_guess = server
        .request(&Method::GET, "/tasks")
        .header("authorization", basic(USER, PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(basic_guess.status(), 429);
    // The address is locked as well (connect info is on): another user name from it too.
    let other = login("someone-else", "x").send().await.unwrap();
    assert_eq!(other.status(), 429, "the client address made 10 failed attempts");
}
