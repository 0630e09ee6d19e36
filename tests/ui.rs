//! Compile-fail tests: every error `#[task]` can emit, and misuse of the generated items, each
//! pinned with its exact message. Bless changes with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/*/*.rs");
}
