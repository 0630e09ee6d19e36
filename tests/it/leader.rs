//! Leadership through the engine, on every store: of three instances sharing a store, one
//! leads the cluster-wide maintenance; when it dies (stops renewing, no resignation), another
//! takes over within about one lease. Then the same with real processes killed by SIGKILL on
//! the shared stores.

use std::sync::Arc;
use std::time::Duration;

use taskflow::{Store, TaskManager};

use crate::support::{on_every_store, wait_until};

const LONG: Duration = Duration::from_secs(60);
const LEASE: Duration = Duration::from_millis(900);

async fn instances(store: &Arc<dyn Store>, n: usize) -> Vec<Option<TaskManager>> {
    let mut managers = Vec::new();
    for _ in 0..n {
        let manager = TaskManager::builder()
            .shared_store(Arc::clone(store))
            .lease(LEASE)
            .build()
            .await
            .unwrap();
        managers.push(Some(manager));
    }
    managers
}

fn leaders(managers: &[Option<TaskManager>]) -> Vec<usize> {
    let leading = |(i, m): (usize, &Option<TaskManager>)| m.as_ref()?.is_leader().then_some(i);
    managers.iter().enumerate().filter_map(leading).collect()
}

async fn one_instance_leads_and_another_takes_over(store: Arc<dyn Store>) {
    let mut managers = instances(&store, 3).await;
    let first = wait_until(LONG, "one leader", || async {
        let leading = leaders(&managers);
        (leading.len() == 1).then(|| leading[0])
    })
    .await;
    // The leader dies: dropped without shutdown, it stops renewing its term.
    drop(managers[first].take());
    let died = tokio::time::Instant::now();
    let second = wait_until(LONG, "another leader", || async {
        let leading = leaders(&managers);
        (leading.len() == 1).then(|| leading[0])
    })
    .await;
    assert_ne!(second, first);
    println!("leader died: another took over after {:?} (lease {LEASE:?})", died.elapsed());
    // And again. (A clean shutdown would also resign at once, but it closes the store that
    // the instances here share; resigning is checked by the store conformance suite.)
    drop(managers[second].take());
    let third = wait_until(LONG, "the last instance to lead", || async {
        let leading = leaders(&managers);
        (leading.len() == 1).then(|| leading[0])
    })
    .await;
    assert!(third != first && third != second);
    if let Some(last) = managers[third].take() {
        last.shutdown(Duration::from_secs(5)).await;
    }
}

on_every_store!(one_instance_leads_and_another_takes_over);

/// A leader whose campaigns stop answering (a hung store) stops acting as leader once its
/// term has lapsed, as it has in the store, where another instance may now hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_store_hangs_stops_leading_when_its_term_lapses() {
    use taskflow::faults::{Fault, FaultyStore, Operation};
    let faulty = Arc::new(FaultyStore::new(Arc::new(taskflow::MemoryStore::new())));
    let manager = TaskManager::builder()
        .shared_store(Arc::clone(&faulty) as Arc<dyn Store>)
        .lease(LEASE)
        .build()
        .await
        .unwrap();
    wait_until(LONG, "it leads", || async { manager.is_leader().then_some(()) }).await;
    faulty.inject(Operation::Elect, Fault::Hang, 1_000);
    let hung = tokio::time::Instant::now();
    wait_until(LONG, "its term to lapse", || async { (!manager.is_leader()).then_some(()) }).await;
    assert!(faulty.hits(Operation::Elect, Fault::Hang) >= 1);
    println!("campaigns hung: it stopped leading after {:?} (lease {LEASE:?})", hung.elapsed());
}

/// Which of `apps` say they lead, asked over HTTP; a dead one does not answer.
pub(crate) async fn leading(
    http: &reqwest::Client,
    apps: &[Option<crate::crash::App>],
) -> Vec<usize> {
    let mut found = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let Some(app) = app else { continue };
        let Ok(response) = http.get(format!("{}/leader", app.base)).send().await else { continue };
        let Ok(body) = response.json::<serde_json::Value>().await else { continue };
        if body["leader"] == true {
            found.push(i);
        }
    }
    found
}

/// Three app processes on the store at `url`, lease 900 ms: the leader is killed with
/// SIGKILL (no resignation), and another takes over; then that one is killed too.
async fn killing_the_leader_process_hands_over(url: &str, backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs.log");
    let env = [("CRASH_APP_LEASE_MS", "900"), ("CRASH_APP_POLL_MS", "200")];
    let mut apps = Vec::new();
    for _ in 0..3 {
        apps.push(Some(crate::crash::start(url, &runs, &env).await));
    }
    let http = reqwest::Client::new();
    let mut killed = Vec::new();
    for round in 0..2 {
        let leader = wait_until(LONG, "one leader process", || async {
            let found = leading(&http, &apps).await;
            (found.len() == 1).then(|| found[0])
        })
        .await;
        assert!(!killed.contains(&leader), "{backend}: a killed process cannot lead");
        let mut app = apps[leader].take().unwrap();
        app.child.start_kill().unwrap();
        app.child.wait().await.unwrap();
        let died = tokio::time::Instant::now();
        killed.push(leader);
        let next = wait_until(LONG, "another leader process", || async {
            let found = leading(&http, &apps).await;
            assert!(found.len() <= 1, "{backend}: two leaders at once: {found:?}");
            (found.len() == 1).then(|| found[0])
        })
        .await;
        assert_ne!(next, leader);
        println!(
            "{backend}, round {round}: leader process {leader} killed, process {next} took \
             over after {:?} (lease 900 ms)",
            died.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_process_hands_over_on_postgres() {
    let Some(schema) = crate::conformance::postgres_schema().await else { return };
    killing_the_leader_process_hands_over(&schema.url, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_process_hands_over_on_mysql() {
    let Some(url) = crate::conformance::mysql_url().await else { return };
    killing_the_leader_process_hands_over(&url, "mysql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_process_hands_over_on_redis() {
    let Ok(url) = std::env::var("TASKFLOW_TEST_REDIS_URL") else {
        println!("skipped: TASKFLOW_TEST_REDIS_URL is not set (.ci/run sets it)");
        return;
    };
    let url = format!("{url}#leader-{}", taskflow::TaskId::new());
    killing_the_leader_process_hands_over(&url, "redis").await;
}
