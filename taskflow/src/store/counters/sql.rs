//! SQL text shared by the SQL stores' counters: the histogram's
//! columns and the test that puts a duration in one of its buckets.

use super::BUCKETS;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use super::DURATION_BOUNDS;

/// The histogram's column names, `h0` to `h17`.
pub(crate) fn histogram_columns() -> Vec<String> {
    (0..BUCKETS).map(|bucket| format!("h{bucket}")).collect()
}

/// The histogram's columns as a list: `h0, h1, ...`.
pub(crate) fn histogram_list() -> String {
    histogram_columns().join(", ")
}

/// The histogram's column definitions: `h0 <ty> NOT NULL DEFAULT 0, ...`.
pub(crate) fn histogram_definitions(ty: &str) -> String {
    histogram_columns()
        .iter()
        .map(|column| format!("{column} {ty} NOT NULL DEFAULT 0"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A condition that holds when the duration `d` (an SQL expression, not null) falls in
/// `bucket`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn in_bucket(d: &str, bucket: usize) -> String {
    let last = BUCKETS - 1;
    match bucket {
        0 => format!("{d} <= {}", DURATION_BOUNDS[0]),
        b if b == last => format!("{d} > {}", DURATION_BOUNDS[last - 1]),
        b => format!("({d} > {} AND {d} <= {})", DURATION_BOUNDS[b - 1], DURATION_BOUNDS[b]),
    }
}

/// For each bucket, `then` applied to its condition on `d`: `CASE WHEN ... THEN 1 ELSE 0
/// END`, or an aggregate such as `count(*) FILTER (WHERE ...)`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn per_bucket(d: &str, then: impl Fn(&str) -> String) -> String {
    (0..BUCKETS).map(|bucket| then(&in_bucket(d, bucket))).collect::<Vec<_>>().join(", ")
}

/// `assign(column)` for each histogram column, joined by commas (an upsert's `SET` list).
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn each_column(assign: impl Fn(&str) -> String) -> String {
    histogram_columns().iter().map(|column| assign(column)).collect::<Vec<_>>().join(", ")
}

/// The figures of a history row that add up (besides the histogram's): every one but the
/// least and greatest duration.
pub(crate) const ADDED: [&str; 8] =
    ["enqueued", "succeeded", "failed", "interrupted", "cancelled", "retried", "timed", "seconds"];

/// `assign(column)` for each figure of a history row that adds up, the histogram's too,
/// joined by commas: the part of an upsert's `SET` list that adds one row into another.
pub(crate) fn adding(assign: impl Fn(&str) -> String) -> String {
    let mut all: Vec<String> = ADDED.iter().map(|column| assign(column)).collect();
    all.extend(histogram_columns().iter().map(|column| assign(column)));
    all.join(", ")
}

/// The select list and grouping that read `taskflow_minutes`-shaped rows in steps: `bucket`
/// is the SQL expression of an entry's step (its first minute), `total` wraps each sum (a
/// cast where the server's sum is not an integer). Columns: the step, `func_name`, `queue`,
/// the sums of `enqueued`, `succeeded`, `failed`, `interrupted`, `cancelled`, `retried`,
/// `timed` and `seconds`, the least `min_duration`, the greatest `max_duration`, then the
/// histogram's sums; the shards and minutes of a step come out as one row.
pub(crate) fn grouped(bucket: &str, total: impl Fn(&str) -> String) -> String {
    let sums = ADDED[..ADDED.len() - 1]
        .iter()
        .map(|column| total(&format!("sum({column})")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{bucket}, func_name, queue, {sums}, sum(seconds), min(min_duration), max(max_duration), {}",
        histogram_columns()
            .iter()
            .map(|h| total(&format!("sum({h})")))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    fn every_duration_falls_in_one_bucket() {
        assert_eq!(in_bucket("d", 0), "d <= 0.001");
        assert_eq!(in_bucket("d", 1), "(d > 0.001 AND d <= 0.0025)");
        assert_eq!(in_bucket("d", BUCKETS - 1), "d > 1800");
        assert_eq!(histogram_columns().len(), BUCKETS);
    }
}
