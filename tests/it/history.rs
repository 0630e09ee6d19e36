//! The history over HTTP (`GET /tasks/metrics/history`) and the statistics read from the
//! counters (`GET /tasks/metrics`). The roll-up of old history is in the conformance suite.

use reqwest::StatusCode;
use serde_json::Value;

use crate::admin::{LONG, Server, admin_fails, admin_ok};
use crate::support::{unique, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_counts_each_outcome_in_its_minute() {
    let server = Server::start(|admin| admin).await;
    let tasks = server.manager.tasks();
    for _ in 0..3 {
        tasks.add_task(admin_ok, unique("history"));
    }
    tasks.add_task(admin_fails, (unique("history"), "s".to_owned()));
    let store = server.manager.store().clone();
    wait_until(LONG, "four tasks to end", || {
        let store = store.clone();
        async move {
            let counts = store.counts().await.unwrap();
            let ended: i64 = counts
                .iter()
                .filter(|c| c.status == "success" || c.status == "failed")
                .map(|c| c.tasks)
                .sum();
            (ended == 4).then_some(())
        }
    })
    .await;
    let (status, history) = server.get("/tasks/metrics/history?window=1h").await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let points = history["points"].as_array().unwrap();
    assert_eq!(points.len(), 60, "a point per minute");
    assert_eq!(history["step"], 60);
    let total = |field: &str| points.iter().map(|p| p[field].as_i64().unwrap()).sum::<i64>();
    assert_eq!((total("enqueued"), total("succeeded"), total("failed")), (4, 3, 1));
    assert_eq!(total("retried"), 0);
    assert_eq!(points.last().unwrap()["depth"], 0, "nothing waits now");
    let ok = history["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["func_name"].as_str().unwrap().ends_with("admin_ok"))
        .unwrap();
    assert_eq!(ok["runs"], 3);
    assert_eq!(
        ok["histogram"].as_array().unwrap().iter().map(|n| n.as_i64().unwrap()).sum::<i64>(),
        3
    );
    assert!(ok["p95"].as_f64().unwrap() <= ok["max"].as_f64().unwrap());

    // A day in quarter hours; one function only.
    let name = ok["func_name"].as_str().unwrap().to_owned();
    let day: Value =
        server.get(&format!("/tasks/metrics/history?window=24h&func_name={name}")).await.1;
    assert_eq!(day["step"], 15 * 60);
    assert_eq!(day["points"].as_array().unwrap().len(), 96);
    let day_total: i64 =
        day["points"].as_array().unwrap().iter().map(|p| p["succeeded"].as_i64().unwrap()).sum();
    assert_eq!(day_total, 3);

    // The stat cards, from the counters.
    let metrics = server.get("/tasks/metrics").await.1;
    assert_eq!(metrics["by_status"]["success"], 3);
    assert_eq!(metrics["by_status"]["failed"], 1);
    let f = metrics["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["func_name"] == name.as_str())
        .unwrap();
    assert_eq!((f["runs"].as_i64(), f["successes"].as_i64()), (Some(3), Some(3)));
    assert!(f["p95_duration"].is_number() && f["min_duration"].is_number());

    for bad in ["window=0m", "window=40d", "window=7d&step=1m", "window=soon", "step=1h&extra=1"] {
        let response = server
            .client
            .get(server.url(&format!("/tasks/metrics/history?{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    server.manager.shutdown(std::time::Duration::from_secs(5)).await;
}
