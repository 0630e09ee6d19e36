//! Tasks defined in a separate library crate register through the link-time registry, provided
//! the binary names the crate (the remedy documented in `taskflow::registry`).

use external_tasks as _;
use serde_json::json;

#[tokio::test]
async fn tasks_of_a_crate_named_only_by_use_register() {
    let registry = taskflow::registry();
    let double = registry.get("external_double").expect("external_double is registered");
    assert_eq!(double.options().max_retries(), 1);
    assert_eq!(double.path(), "external_tasks::double");
    let outcome = registry.invoke("external_double", json!({"n": 21})).unwrap().run().await;
    assert_eq!(outcome, Ok(Some(json!(42))));

    let hidden = registry.invoke("external_hidden", json!({"label": "x"})).unwrap().run().await;
    assert_eq!(hidden, Ok(Some(json!("hidden:x"))));
}
