//! `GET /tasks/metrics/prometheus`: the stats in Prometheus' text format.

use std::fmt::Write;

use crate::store::{FunctionStats, TaskStats};

/// Escapes a label value.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Reads one figure of a function's stats.
type Field = fn(&FunctionStats) -> Option<f64>;

/// `stats` as Prometheus exposition text (version 0.0.4).
pub(crate) fn prometheus(stats: &TaskStats) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP taskflow_tasks Tasks in the store, by status.");
    let _ = writeln!(out, "# TYPE taskflow_tasks gauge");
    for (status, count) in &stats.by_status {
        let _ = writeln!(out, "taskflow_tasks{{status=\"{}\"}} {count}", label(status));
    }
    let series: [(&str, &str, Field); 4] = [
        ("taskflow_function_runs", "Tasks of the function that ran to an end.", |f| {
            Some(f.runs as f64)
        }),
        ("taskflow_function_successes", "Of those, the ones that succeeded.", |f| {
            Some(f.successes as f64)
        }),
        ("taskflow_function_failures", "Of those, the ones that failed.", |f| {
            Some(f.failures as f64)
        }),
        ("taskflow_function_success_rate", "Successes over runs.", |f| Some(f.success_rate)),
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for function in &stats.functions {
            if let Some(value) = value(function) {
                let _ =
                    writeln!(out, "{name}{{func_name=\"{}\"}} {value}", label(&function.func_name));
            }
        }
    }
    let name = "taskflow_function_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Run durations of the function: avg, min, max and p95.");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for function in &stats.functions {
        let values = [
            ("avg", function.avg_duration),
            ("min", function.min_duration),
            ("max", function.max_duration),
            ("p95", function.p95_duration),
        ];
        for (stat, value) in values {
            if let Some(value) = value {
                let _ = writeln!(
                    out,
                    "{name}{{func_name=\"{}\",stat=\"{stat}\"}} {value}",
                    label(&function.func_name)
                );
            }
        }
    }
    out
}
