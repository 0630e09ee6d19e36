//! `GET /tasks/metrics/prometheus`: the stats in the OpenMetrics text format, which
//! Prometheus reads, encoded by `prometheus-client`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::{FunctionStats, TaskStats};

/// A series' labels.
type Labels = Vec<(&'static str, String)>;

/// A gauge of a float figure.
type Figure = Gauge<f64, AtomicU64>;

/// Reads one figure of a function's stats.
type Field = fn(&FunctionStats) -> Option<f64>;

/// The content type of what [`prometheus`] writes.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `stats` as OpenMetrics text.
pub(crate) fn prometheus(stats: &TaskStats) -> String {
    let mut registry = Registry::with_prefix("taskflow");
    let tasks = Family::<Labels, Gauge>::default();
    for (status, count) in &stats.by_status {
        let count = i64::try_from(*count).unwrap_or(i64::MAX);
        tasks.get_or_create(&vec![("status", status.clone())]).set(count);
    }
    registry.register("tasks", "Tasks in the store, by status", tasks);
    let series: [(&str, &str, Field); 4] = [
        ("function_runs", "Tasks of the function that ran to an end", |f| Some(f.runs as f64)),
        ("function_successes", "Of those, the ones that succeeded", |f| Some(f.successes as f64)),
        ("function_failures", "Of those, the ones that failed", |f| Some(f.failures as f64)),
        ("function_success_rate", "Successes over runs", |f| Some(f.success_rate)),
    ];
    for (name, help, value) in series {
        let family = Family::<Labels, Figure>::default();
        for function in &stats.functions {
            if let Some(value) = value(function) {
                family.get_or_create(&vec![("func_name", function.func_name.clone())]).set(value);
            }
        }
        registry.register(name, help, family);
    }
    let durations = Family::<Labels, Figure>::default();
    for function in &stats.functions {
        let values = [
            ("avg", function.avg_duration),
            ("min", function.min_duration),
            ("max", function.max_duration),
            ("p95", function.p95_duration),
        ];
        for (stat, value) in values {
            if let Some(value) = value {
                let labels = vec![("func_name", function.func_name.clone()), ("stat", stat.into())];
                durations.get_or_create(&labels).set(value);
            }
        }
    }
    registry.register(
        "function_duration_seconds",
        "Run durations of the function: avg, min, max and p95",
        durations,
    );
    let mut out = String::new();
    if let Err(err) = encode(&mut out, &registry) {
        tracing::error!(error = %err, "taskflow: could not encode the metrics");
    }
    out
}
