//! One cluster, one view: three instances on one shared store; A runs no queue and enqueues
//! nothing, yet an SSE client on A sees every task that B and C enqueue and run, and a client
//! that reconnects to B with the `Last-Event-ID` it had from A gets exactly what followed,
//! under the same ids. On PostgreSQL (LISTEN/NOTIFY), Redis (pub/sub) and MySQL/MariaDB
//! (polling).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use taskflow::{EnqueueOptions, task};

use crate::multi::{Instance, Shared, instance_with, serve_admin as serve};

/// Generous: a busy 2-core machine running a debug build.
const PATIENCE: Duration = Duration::from_secs(60);

#[task]
async fn seen_everywhere(n: u32) -> u32 {
    n
}

/// An SSE client: the events read so far, as (id, kind, task id).
struct Sse {
    response: reqwest::Response,
    buffer: String,
    events: Vec<(u64, String, String)>,
}

impl Sse {
    async fn connect(base: &str, last_event_id: Option<u64>) -> Sse {
        let mut request = reqwest::Client::new().get(format!("{base}/stream"));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Sse { response, buffer: String::new(), events: Vec::new() }
    }

    /// Reads until `done` holds for the events read (`true`), or for at most [`PATIENCE`].
    async fn until(&mut self, what: &str, done: impl Fn(&[(u64, String, String)]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(&self.events) {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            let seen = self.events.len();
            let Ok(chunk) = chunk else {
                eprintln!("timed out waiting for {what} ({seen} events read)");
                return false;
            };
            self.buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("open")));
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame.lines().find_map(|line| line.strip_prefix(name)).map(str::to_owned)
                };
                if let (Some(id), Some(data)) = (field("id: "), field("data: ")) {
                    let data: Value = serde_json::from_str(&data).unwrap();
                    let kind = data["kind"].as_str().unwrap().to_owned();
                    let task = data["task_id"].as_str().unwrap().to_owned();
                    self.events.push((id.parse().unwrap(), kind, task));
                }
            }
        }
        true
    }
}

fn succeeded(events: &[(u64, String, String)]) -> HashSet<String> {
    events.iter().filter(|(_, kind, _)| kind == "succeeded").map(|(_, _, t)| t.clone()).collect()
}

async fn every_instance_sees_the_whole_cluster(shared: Shared) {
    let quick = |b: taskflow::TaskManagerBuilder| b.poll_every(Duration::from_millis(200));
    let a: Instance = instance_with(shared.clone(), move |b| quick(b).run_queues([] as [&str; 0]));
    let b: Instance = instance_with(shared.clone(), quick);
    let c: Instance = instance_with(shared, quick);
    let (on_a, on_b) = (serve(&a.manager).await, serve(&b.manager).await);
    let mut sse = Sse::connect(&on_a, None).await;

    // Until C has heard that a feed is served (its next read of the heartbeats), its events
    // go nowhere: enqueue one task at a time from C until A shows C's enqueue of one.
    let mut probes: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let id = c.manager.submit(seen_everywhere, 0, EnqueueOptions::new()).await.unwrap();
        probes.push(id.to_string());
        let enqueued_by_c = |events: &[(u64, String, String)]| {
            events.iter().any(|(_, kind, task)| kind == "enqueued" && probes.contains(task))
        };
        let read =
            tokio::time::timeout(Duration::from_millis(500), sse.until("a probe", enqueued_by_c))
                .await;
        if read == Ok(true) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no event of C reached A");
    }

    // Now every task C enqueues (B and C run them) is seen on A.
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(c.manager.submit(seen_everywhere, n, EnqueueOptions::new()).await.unwrap());
    }
    let all_done = sse.until("every task's success", |events| {
        let done = succeeded(events);
        ids.iter().all(|id| done.contains(&id.to_string()))
    });
    if !all_done.await {
        let done = succeeded(&sse.events);
        let missing = ids.iter().filter(|id| !done.contains(&id.to_string())).count();
        panic!("{missing} of {} tasks' successes never reached A", ids.len());
    }
    let ours: Vec<&(u64, String, String)> =
        sse.events.iter().filter(|(_, _, t)| ids.iter().any(|id| id.to_string() == *t)).collect();
    assert!(ours.iter().any(|(_, kind, _)| kind == "enqueued"), "C's enqueues");
    assert!(ours.iter().any(|(_, kind, _)| kind == "started"), "B's and C's starts");
    assert!(sse.events.windows(2).all(|pair| pair[0].0 < pair[1].0), "ids increase");

    // A client that reconnects to B with the id it had from A gets what followed, same ids.
    let middle = sse.events.len() / 2;
    let (resume_at, following) = (sse.events[middle].0, sse.events[middle + 1].clone());
    let mut resumed = Sse::connect(&on_b, Some(resume_at)).await;
    assert!(resumed.until("the replay on B", |events| !events.is_empty()).await);
    assert_eq!(resumed.events[0], following, "B replays from A's id, under the same ids");

    for instance in [a, b, c] {
        instance.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_live_feed_on_postgres() {
    if let Some(shared) = Shared::postgres().await {
        every_instance_sees_the_whole_cluster(shared).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_live_feed_on_redis() {
    if let Some(shared) = Shared::redis().await {
        every_instance_sees_the_whole_cluster(shared).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_live_feed_on_mysql() {
    if let Some(shared) = Shared::mysql().await {
        every_instance_sees_the_whole_cluster(shared).await;
    }
}
