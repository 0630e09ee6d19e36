//! Two `#[task]` fns sharing a name in one binary: the registry reports the clash with both
//! definitions instead of letting one silently replace the other. A binary of its own, so the
//! clash does not affect the other tests.

mod billing {
    #[taskflow::task(name = "notify")]
    pub fn notify_billing(user: u64) {
        let _ = user;
    }
}

mod support {
    #[taskflow::task(name = "notify")]
    pub async fn notify_support(ticket: String) {
        let _ = ticket;
    }
}

#[test]
fn duplicate_names_are_an_error_naming_both() {
    let registry = taskflow::registry();
    let err = registry.check().unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("two tasks are named `notify`"), "{text}");
    assert!(text.contains("duplicate_names::billing::notify_billing"), "{text}");
    assert!(text.contains("duplicate_names::support::notify_support"), "{text}");
    assert_eq!(registry.duplicates().len(), 1);
    assert_eq!(registry.iter().filter(|t| t.name() == "notify").count(), 2);
}
