//! Leadership through the engine, on every store: of three instances sharing a store, one
//! leads the cluster-wide maintenance; when it dies (stops renewing, no resignation), another
//! takes over within about one lease.

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
