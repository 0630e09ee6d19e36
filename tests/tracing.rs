//! OpenTelemetry from request to task (feature `opentelemetry`): the span current at enqueue
//! is stored with the task (`traceparent`/`tracestate` tags), and every attempt's span is its
//! child, in one trace, also when the process that runs the task is not the one that
//! enqueued it. Spans are exported to OpenTelemetry's in-memory exporter.
//!
//! Its own test binary: the subscriber is the process's global one, so that spans entered on
//! any of the runtime's threads are seen.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use taskflow::{EnqueueOptions, TaskManager, TaskStatus, TraceLink};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

const LONG: Duration = Duration::from_secs(30);

/// The exporter every span of the process ends in (set up once).
fn exporter() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static SETUP: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("taskflow-test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).unwrap();
        (exporter, provider)
    })
}

/// Every finished span exported so far.
fn spans() -> Vec<SpanData> {
    exporter().0.get_finished_spans().unwrap()
}

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails its first attempt, succeeds on the retry.
#[taskflow::task(retries = 1, delay = "10ms")]
async fn send_receipt(order: u32) -> Result<(), String> {
    let _ = order;
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) == 0 { Err("smtp hiccup".into()) } else { Ok(()) }
}

/// Does nothing, in a span of its own.
#[taskflow::task]
async fn after_restart(order: u32) {
    let _ = order;
}

/// Where `place_order` enqueues its follow-up.
static TASKS: OnceLock<taskflow::Tasks> = OnceLock::new();

/// Enqueues a follow-up task from inside its own attempt; returns its id.
#[taskflow::task]
async fn place_order(order: u32) -> String {
    TASKS.get().unwrap().add_task(after_restart, order + 100).to_string()
}

/// The ids of the span the handler runs in, as OpenTelemetry sees it.
fn ids(span: &tracing::Span) -> (TraceId, SpanId) {
    use opentelemetry::trace::TraceContextExt;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.trace_id(), span_context.span_id())
}

/// The attempt spans of the task `id` once `count` of them have ended.
async fn attempts_of(id: taskflow::TaskId, count: usize) -> Vec<SpanData> {
    let id = id.to_string();
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let found: Vec<SpanData> = spans()
            .into_iter()
            .filter(|span| span.name == "task")
            .filter(|span| span.attributes.iter().any(|kv| kv.value.as_str() == id.as_str()))
            .collect();
        if found.len() >= count {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{count} attempt spans of {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_span_is_the_parent_of_every_attempt_also_after_a_restart() {
    exporter();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.db");

    // In one process: a handler's span, a task enqueued in it, two attempts.
    let manager = TaskManager::builder().sqlite(&path).build().await.unwrap();
    let request = tracing::info_span!("POST /orders");
    let (trace, parent) = ids(&request);
    let id = request.in_scope(|| manager.add_task(send_receipt, 7));
    assert_eq!(manager.wait_for(id, LONG).await.unwrap().status, TaskStatus::Success);
    let record = manager.store().get(&id).await.unwrap().unwrap();
    let traceparent = record.tags.get(taskflow::TRACEPARENT).expect("stored with the task");
    assert!(traceparent.contains(&trace.to_string()), "{traceparent}");
    let attempts = attempts_of(id, 2).await;
    assert_eq!(attempts.len(), 2, "two attempts, two spans");
    for attempt in &attempts {
        assert_eq!(attempt.span_context.trace_id(), trace, "one trace");
        assert_eq!(attempt.parent_span_id, parent, "each attempt is the request's child");
    }

    // A task enqueued by another task: a child of the enqueuing attempt.
    TASKS.set(manager.tasks()).unwrap();
    let outer = manager.add_task(place_order, 1);
    let done = manager.wait_for(outer, LONG).await.unwrap();
    let inner: taskflow::TaskId = done.result.unwrap().as_str().unwrap().parse().unwrap();
    manager.wait_for(inner, LONG).await.unwrap();
    let outer_span = attempts_of(outer, 1).await.remove(0);
    let inner_span = attempts_of(inner, 1).await.remove(0);
    assert_eq!(inner_span.parent_span_id, outer_span.span_context.span_id());
    assert_eq!(inner_span.span_context.trace_id(), outer_span.span_context.trace_id());

    // Enqueued by a process that runs nothing, run by the next one after a restart.
    manager.shutdown(LONG).await;
    let web =
        TaskManager::builder().sqlite(&path).run_queues([] as [&str; 0]).build().await.unwrap();
    let request = tracing::info_span!("POST /orders/8");
    let (trace, parent) = ids(&request);
    let submit = web.submit(after_restart, 8, EnqueueOptions::new());
    let later = tracing::Instrument::instrument(submit, request.clone()).await.unwrap();
    drop(request);
    web.shutdown(LONG).await;
    let worker = TaskManager::builder().sqlite(&path).build().await.unwrap();
    assert_eq!(worker.wait_for(later, LONG).await.unwrap().status, TaskStatus::Success);
    let attempt = attempts_of(later, 1).await.remove(0);
    assert_eq!(attempt.span_context.trace_id(), trace, "the trace goes on after the restart");
    assert_eq!(attempt.parent_span_id, parent);
    worker.shutdown(LONG).await;

    // Linked instead: a trace of its own that points at the request.
    let linked =
        TaskManager::builder().sqlite(&path).trace_attempts(TraceLink::Link).build().await.unwrap();
    let request = tracing::info_span!("POST /orders/9");
    let (trace, parent) = ids(&request);
    let id = request.in_scope(|| linked.add_task(after_restart, 9));
    linked.wait_for(id, LONG).await.unwrap();
    let attempt = attempts_of(id, 1).await.remove(0);
    assert_ne!(attempt.span_context.trace_id(), trace, "a trace of its own");
    let link = attempt.links.links.first().expect("a link to the request");
    assert_eq!((link.span_context.trace_id(), link.span_context.span_id()), (trace, parent));
    linked.shutdown(LONG).await;

    // No span, no context: nothing is stored.
    let plain = TaskManager::builder().sqlite(&path).build().await.unwrap();
    let id = plain.add_task(after_restart, 10);
    plain.wait_for(id, LONG).await.unwrap();
    let record = plain.store().get(&id).await.unwrap().unwrap();
    assert!(!record.tags.contains_key(taskflow::TRACEPARENT), "{:?}", record.tags);
    plain.shutdown(LONG).await;
}
