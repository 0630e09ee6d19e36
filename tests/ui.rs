//! Compile-fail tests: every error `#[task]` can emit, and misuse of the generated items, each
//! pinned with its exact message. Bless changes with `TRYBUILD=overwrite cargo test --test ui`
//! and review the diff; the messages are those of the toolchain in `rust-toolchain.toml`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    for category in [
        "call",
        "unknown-key",
        "duplicate-key",
        "bad-value",
        "unsupported-signature",
        "arg-not-serializable",
    ] {
        t.compile_fail(format!("ui/{category}/*.rs"));
    }
}
