//! Tasks defined in a library crate of their own. The test binary never calls anything here: it
//! only names the crate with `use external_tasks as _;`, the documented remedy for link-time
//! registration across crates.

use taskflow::task;

/// Doubles a number.
#[task(retries = 1, name = "external_double")]
pub fn double(n: i64) -> i64 {
    n * 2
}

mod nested {
    use taskflow::task;

    /// A private task in a private module still registers.
    #[task]
    pub(crate) async fn external_hidden(label: String) -> String {
        format!("hidden:{label}")
    }
}
