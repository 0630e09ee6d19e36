//! The trap of link-time registration, pinned: this test binary depends on `external-tasks`
//! (see Cargo.toml) but never names it, so the crate is not linked and its tasks do not
//! register. `it/external.rs` shows the remedy, `use external_tasks as _;`.

#[test]
fn a_crate_that_is_never_named_does_not_register() {
    let registry = taskflow::registry();
    assert!(registry.get("external_double").is_none());
    let err = registry.invoke("external_double", serde_json::json!({"n": 1})).unwrap_err();
    assert!(err.to_string().contains("use my_tasks as _;"), "{err}");
}
