//! The `#[task]` DSL: generated argument structs, every call shape, the registry, and running a
//! stored task from its name and JSON arguments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use taskflow::{EnqueueOptions, Error, FailureKind, Task, Tasks, task};

#[derive(Debug, thiserror::Error)]
#[error("mail server said no")]
pub(crate) struct EmailError(#[source] std::io::Error);

#[task(retries = 2)]
async fn send_email(address: String) -> Result<(), EmailError> {
    if address.contains("fail") {
        return Err(EmailError(std::io::Error::other("connection reset")));
    }
    Ok(())
}

#[task(retries = 3, delay = "1s", backoff = 2.0, name = "resize")]
fn resize_image(image_id: u64, width: u32, height: u32) -> anyhow::Result<u64> {
    Ok(image_id * u64::from(width) * u64::from(height))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    pub number: u32,
    pub lines: Vec<Line>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub cents: i64,
}

#[task(
    delay = "250ms",
    max_delay = "1h 30m",
    timeout = 30,
    priority = -5,
    eager = true,
    requeue_on_interrupt = true
)]
async fn total(invoice: Invoice, discounts: BTreeMap<String, i64>) -> i64 {
    invoice.lines.iter().map(|l| l.cents - discounts.get(&l.sku).copied().unwrap_or(0)).sum()
}

#[task(blocking = false)]
fn no_args() -> String {
    "nothing needed".to_owned()
}

#[task]
fn panics(message: String) {
    panic!("{message}");
}

#[task]
async fn fails_with_box(reason: String) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Err(reason.into())
}

#[task]
fn fails_with_string(reason: String) -> Result<(), String> {
    Err(reason)
}

fn args_of(tasks: &Tasks) -> Vec<Value> {
    tasks.recorded().into_iter().map(|t| t.args.expect("args serialise")).collect()
}

#[test]
fn args_round_trip_through_json_with_field_names_as_keys() {
    let args = resize_image::Args { image_id: 9, width: 800, height: 600 };
    let json = serde_json::to_value(&args).unwrap();
    assert_eq!(json, json!({"image_id": 9, "width": 800, "height": 600}));
    let back: resize_image::Args = serde_json::from_value(json).unwrap();
    assert_eq!((back.image_id, back.width, back.height), (9, 800, 600));

    let invoice = Invoice { number: 1, lines: vec![Line { sku: "a".into(), cents: 5 }] };
    let args = total::Args::from((invoice.clone(), BTreeMap::from([("a".to_owned(), 1)])));
    let json = serde_json::to_value(&args).unwrap();
    assert_eq!(
        json,
        json!({"invoice": {"number": 1, "lines": [{"sku": "a", "cents": 5}]}, "discounts": {"a": 1}})
    );
    let back: total::Args = serde_json::from_value(json).unwrap();
    assert_eq!(back.invoice, invoice);

    let single = send_email::Args::from("x@y.z".to_owned());
    assert_eq!(serde_json::to_value(single).unwrap(), json!({"address": "x@y.z"}));
    let none = no_args::Args::from(());
    assert_eq!(serde_json::to_value(none).unwrap(), json!({}));
}

#[test]
fn every_call_shape_stores_the_same_json() {
    let tasks = Tasks::recording();
    let email = "a@b.c".to_owned();
    let ids = [
        tasks.add_task(send_email, email.clone()),
        tasks.add_task(send_email, send_email::Args { address: email.clone() }),
        send_email::enqueue(&tasks, email.clone()),
        send_email::enqueue_with(&tasks, EnqueueOptions::new(), email.clone()),
        tasks.add_task_with(send_email, email, EnqueueOptions::new()),
    ];
    let args = args_of(&tasks);
    assert_eq!(args.len(), 5);
    assert!(args.iter().all(|a| *a == json!({"address": "a@b.c"})), "{args:?}");
    let mut unique = ids.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "every enqueue gets its own id");

    let tasks = Tasks::recording();
    tasks.add_task(resize_image, (7, 800, 600));
    tasks.add_task(resize_image, resize_image::Args { image_id: 7, width: 800, height: 600 });
    resize_image::enqueue(&tasks, 7, 800, 600);
    let args = args_of(&tasks);
    assert!(args.iter().all(|a| *a == json!({"image_id": 7, "width": 800, "height": 600})));
    assert!(tasks.recorded().iter().all(|t| t.name() == "resize"));

    let tasks = Tasks::recording();
    tasks.add_task(no_args, ());
    no_args::enqueue(&tasks);
    assert_eq!(args_of(&tasks), [json!({}), json!({})]);
}

#[test]
fn enqueue_options_override_task_defaults() {
    let tasks = Tasks::recording();
    send_email::enqueue(&tasks, "a@b.c".into());
    send_email::enqueue_with(
        &tasks,
        EnqueueOptions::new().retries(7).priority(3).eager(true).tag("user_id", 42),
        "a@b.c".into(),
    );
    let [default, custom] = <[_; 2]>::try_from(tasks.recorded()).unwrap();
    assert_eq!((default.max_retries(), default.priority(), default.eager()), (2, 0, false));
    assert_eq!((custom.max_retries(), custom.priority(), custom.eager()), (7, 3, true));
    assert_eq!(custom.options.tags_map()["user_id"], "42");
}

#[test]
fn registry_lists_every_task_with_its_options() {
    let registry = taskflow::registry();
    registry.check().expect("no duplicate names in this binary");
    let names: Vec<_> = registry.iter().map(|t| t.name()).collect();
    for name in ["send_email", "resize", "total", "no_args", "panics", "external_double"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(!names.contains(&"resize_image"), "the `name` key replaces the fn name");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    let resize = registry.get("resize").unwrap().options();
    assert_eq!(resize.max_retries(), 3);
    assert_eq!(resize.initial_delay(), std::time::Duration::from_secs(1));
    assert_eq!(resize.backoff_factor(), 2.0);
    assert!(resize.is_blocking(), "sync fns run on the blocking pool by default");

    let total_task = registry.get("total").unwrap();
    let o = total_task.options();
    assert_eq!(o.initial_delay(), std::time::Duration::from_millis(250));
    assert_eq!(
        o.max_retry_delay(),
        Some(std::time::Duration::from_secs(5400)),
        "humantime's syntax"
    );
    assert_eq!(o.attempt_timeout(), Some(std::time::Duration::from_secs(30)));
    assert_eq!(o.default_priority(), -5);
    assert!(o.is_eager() && o.requeues_on_interrupt() && !o.is_blocking());
    assert_eq!(total_task.path(), "it::dsl::total");
    assert!(total_task.location().contains("dsl.rs:"), "{}", total_task.location());

    assert!(!registry.get("no_args").unwrap().options().is_blocking());
    assert_eq!(
        <send_email::send_email as Task>::options(),
        registry.get("send_email").unwrap().options()
    );
}

#[tokio::test]
async fn stored_tasks_run_from_name_and_json() {
    let registry = taskflow::registry();
    let run = |name: &str, args: Value| {
        let invocation = registry.invoke(name, args).expect("valid stored task");
        invocation.run()
    };
    assert_eq!(
        run("resize", json!({"image_id": 2, "width": 3, "height": 4})).await,
        Ok(Some(json!(24)))
    );
    assert_eq!(run("send_email", json!({"address": "ok@x.y"})).await, Ok(None));
    assert_eq!(run("no_args", json!({})).await, Ok(Some(json!("nothing needed"))));
    let invoice =
        json!({"number": 3, "lines": [{"sku": "a", "cents": 500}, {"sku": "b", "cents": 300}]});
    assert_eq!(
        run("total", json!({"invoice": invoice, "discounts": {"b": 100}})).await,
        Ok(Some(json!(700)))
    );

    // Typed invocation through the trait gives the same outcome.
    let typed = <resize_image::resize_image as Task>::invoke((2, 3, 4).into()).run().await;
    assert_eq!(typed, Ok(Some(json!(24))));
    assert_eq!(resize_image::call(2, 3, 4).unwrap(), 24);
}

#[tokio::test]
async fn failures_and_panics_are_outcomes() {
    let registry = taskflow::registry();
    let failure =
        registry.invoke("send_email", json!({"address": "fail@x.y"})).unwrap().run().await;
    let failure = failure.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Error);
    assert_eq!(failure.message, "mail server said no");
    assert_eq!(failure.stacktrace, "mail server said no\ncaused by: connection reset");

    let panic = registry.invoke("panics", json!({"message": "kaboom"})).unwrap().run().await;
    let panic = panic.unwrap_err();
    assert_eq!(panic.kind, FailureKind::Panic);
    assert_eq!(panic.message, "panic: kaboom");
    assert!(panic.stacktrace.contains("dsl.rs"), "{}", panic.stacktrace);

    let boxed = registry.invoke("fails_with_box", json!({"reason": "boxed"})).unwrap().run().await;
    assert_eq!(boxed.unwrap_err().message, "boxed");
    let text =
        registry.invoke("fails_with_string", json!({"reason": "plain"})).unwrap().run().await;
    assert_eq!(text.unwrap_err().message, "plain");
}

#[test]
fn bad_json_args_name_the_field() {
    let registry = taskflow::registry();
    let err = registry
        .invoke("resize", json!({"image_id": 1, "width": "wide", "height": 2}))
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidArgs { path, .. } if path == "width"), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid arguments for task `resize`: field `width`: invalid type: string \"wide\", expected u32"
    );

    let err = registry.invoke("resize", json!({"image_id": 1, "width": 2})).unwrap_err();
    assert_eq!(err.to_string(), "invalid arguments for task `resize`: missing field `height`");

    let err = registry
        .invoke("total", json!({"invoice": {"number": 1, "lines": [{"sku": "a", "cents": "x"}]}, "discounts": {}}))
        .unwrap_err();
    assert!(err.to_string().contains("field `invoice.lines[0].cents`"), "{err}");

    let err = registry.invoke("resize", json!([1, 2])).unwrap_err();
    assert!(matches!(err, Error::InvalidArgs { .. }), "{err:?}");

    let err = registry.invoke("renamed_after_deploy", json!({})).unwrap_err();
    assert!(matches!(&err, Error::UnknownTask { name } if name == "renamed_after_deploy"));
}

#[test]
fn unserialisable_args_are_kept_as_an_error_not_a_panic() {
    let tasks = Tasks::recording();
    // A map with non-string keys cannot be a JSON object.
    let bad = BTreeMap::from([(UnitKey(1, 2), 3)]);
    tasks.add_task(takes_map, bad);
    let recorded = tasks.recorded();
    let err = recorded[0].args.as_ref().unwrap_err();
    assert!(err.contains("key must be a string"), "{err}");
}

#[task]
fn takes_map(map: BTreeMap<UnitKey, i32>) {
    let _ = map;
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UnitKey(u8, u8);
