//! The admin API's queue routes over real HTTP: the list with counts and settings, pause and
//! resume obeyed by the engine, `PATCH` of concurrency and `max_pending`, `404` for a queue
//! not declared, `400` naming the bad field, and an audit entry for each change.

use axum::Router;
use serde_json::{Value, json};
use taskflow::{EnqueueOptions, Queue, TaskManager, TaskStatus};

use crate::admin::{LONG, Server, error_of};
use crate::queues::queue_noop;

async fn server() -> Server {
    let manager = TaskManager::builder()
        .queue("emails", Queue::new().concurrency(2).max_pending(100))
        .poll_every(std::time::Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let app = Router::new().merge(manager.admin().router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server { base, client: reqwest::Client::new(), manager }
}

impl Server {
    async fn patch(&self, path: &str, body: Value) -> (reqwest::StatusCode, Value) {
        self.send(self.client.patch(self.url(path)).json(&body)).await
    }
}

fn queue<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_listed_paused_resumed_and_resized_over_http() {
    let server = server().await;
    let (status, body) = server.get("/tasks/queues").await;
    assert_eq!(status, 200);
    let emails = queue(&body, "emails");
    assert_eq!(emails["concurrency"], 2);
    assert_eq!(emails["max_pending"], 100);
    assert_eq!(emails["paused"], false);
    assert_eq!(emails["runs_here"], true);
    assert_eq!(queue(&body, "default")["max_pending"], Value::Null);

    let (status, body) = server.post("/tasks/queues/emails/pause", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queue"]["paused"], true);
    let into = EnqueueOptions::new().queue("emails");
    let id = server.manager.submit(queue_noop, 7, into).await.unwrap();
    let (_, body) = server.get("/tasks/queues").await;
    assert_eq!(queue(&body, "emails")["pending"], 1);
    assert_eq!(queue(&body, "emails")["due"], 1);
    let held = server.manager.store().get(&id).await.unwrap().unwrap();
    assert_eq!(held.status, TaskStatus::Pending, "paused: not started");

    let (status, body) = server.post("/tasks/queues/emails/resume", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queue"]["paused"], false);
    assert_eq!(server.manager.wait_for(id, LONG).await.unwrap().status, TaskStatus::Success);

    let (status, body) =
        server.patch("/tasks/queues/emails", json!({ "concurrency": 5, "max_pending": 9 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queue"]["concurrency"], 5);
    assert_eq!(body["queue"]["max_pending"], 9);
    let (status, body) = server.patch("/tasks/queues/emails", json!({ "max_pending": null })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queue"]["max_pending"], 100, "back to the builder's bound");
    assert_eq!(body["queue"]["concurrency"], 5, "the other field is kept");

    let (_, audit) = server.get("/tasks/audit").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["update-queue", "update-queue", "resume-queue", "pause-queue"]);
    assert!(audit["entries"][0]["detail"].as_str().unwrap().contains("emails"));
    server.manager.shutdown(LONG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_queues_are_404_and_bad_values_400_naming_the_field() {
    let server = server().await;
    for path in ["/tasks/queues/nope/pause", "/tasks/queues/nope/resume"] {
        let (status, body) = server.post(path, json!({})).await;
        assert_eq!(status, 404, "{path}");
        assert!(error_of(&body).contains("nope"), "{body}");
    }
    let (status, _) = server.patch("/tasks/queues/nope", json!({ "concurrency": 1 })).await;
    assert_eq!(status, 404);
    for (patch, field) in [
        (json!({ "concurrency": 0 }), "`concurrency`"),
        (json!({ "concurrency": -1 }), "`concurrency`"),
        (json!({ "concurrency": 1.5 }), "`concurrency`"),
        (json!({ "concurrency": "4" }), "`concurrency`"),
        (json!({ "concurrency": 5_000_000_000u64 }), "`concurrency`"),
        (json!({ "max_pending": 0 }), "`max_pending`"),
        (json!({ "max_pending": "many" }), "`max_pending`"),
        (json!({ "paused": true }), "`paused`"),
        (json!({}), "`concurrency`"),
    ] {
        let (status, body) = server.patch("/tasks/queues/emails", patch.clone()).await;
        assert_eq!(status, 400, "{patch}");
        // Named as `field`, or as the path serde reports (`concurrency: invalid value`).
        let bare = field.trim_matches('`');
        assert!(error_of(&body).contains(bare), "{patch}: {body}");
    }
    let not_json = server
        .client
        .patch(server.url("/tasks/queues/emails"))
        .header("content-type", "application/json")
        .body("{");
    assert_eq!(server.send(not_json).await.0, 400);
    let (_, body) = server.get("/tasks/queues").await;
    assert_eq!(queue(&body, "emails")["concurrency"], 2, "nothing changed");
    let (_, audit) = server.get("/tasks/audit").await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 0, "refusals are not actions");
    server.manager.shutdown(LONG).await;
}
