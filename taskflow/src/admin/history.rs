//! `GET {p}/metrics/history?window=1h`: what happened to tasks over time, from the store's
//! per-minute counters ([`crate::store::counters`]): points of enqueued, succeeded, failed,
//! interrupted, cancelled and retried tasks with their durations, queue depth at each point,
//! and each function's duration histogram over the window. Nothing here reads the tasks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::AdminState;
use super::error::{ApiError, ErrorBody};
use super::params::{self, HistoryParams, Params};
use crate::store::counters::{
    BUCKETS, DURATION_BOUNDS, MinuteCounts, minute_of, minute_start, quantile,
};

/// The window when none is asked for.
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);

/// The longest window.
const MAX_WINDOW: Duration = Duration::from_secs(31 * 24 * 3600);

/// The most points one answer holds.
const MAX_POINTS: i64 = 1440;

/// One step of the history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Point {
    /// The step's start.
    at: DateTime<Utc>,
    enqueued: i64,
    succeeded: i64,
    failed: i64,
    interrupted: i64,
    cancelled: i64,
    retried: i64,
    /// Mean duration of the runs that ended in the step.
    avg_duration: Option<f64>,
    /// Longest of them.
    max_duration: Option<f64>,
    /// Tasks pending or running at the step's end (every queue the answer covers).
    depth: i64,
}

impl Point {
    /// The point of `sum`, the step's counts.
    fn of(sum: &MinuteCounts) -> Point {
        Point {
            at: sum.minute,
            enqueued: sum.enqueued,
            succeeded: sum.succeeded,
            failed: sum.failed,
            interrupted: sum.interrupted,
            cancelled: sum.cancelled,
            retried: sum.retried,
            avg_duration: (sum.timed > 0).then(|| sum.seconds / sum.timed as f64),
            max_duration: sum.max_duration,
            depth: 0,
        }
    }
}

/// One queue's depth at the end of each point.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueDepth {
    queue: String,
    depth: Vec<i64>,
}

/// One function's durations over the window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FunctionDurations {
    func_name: String,
    /// Runs with a duration.
    runs: i64,
    /// How many fell in each bucket of `bounds` (and one past the last).
    histogram: [i64; BUCKETS],
    min: Option<f64>,
    max: Option<f64>,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// The answer of `GET {p}/metrics/history`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct History {
    /// The window, in seconds.
    window: u64,
    /// One point's span, in seconds.
    step: u64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// The histograms' bucket bounds (seconds, inclusive).
    bounds: [f64; BUCKETS - 1],
    points: Vec<Point>,
    queues: Vec<QueueDepth>,
    functions: Vec<FunctionDurations>,
}

/// `GET /tasks/metrics/history?window=1h&step=1m&func_name=&queue=`.
#[utoipa::path(get, path = "/metrics/history", operation_id = "getMetricsHistory", tag = "metrics", params(HistoryParams), responses(
    (status = 200, description = "The window's points, queue depths and duration histograms.", body = History),
    (status = 400, description = "A malformed or unknown parameter, a window out of range, or too many points.", body = ErrorBody),
    (status = 503, description = "The store failed.", body = ErrorBody),
))]
pub(crate) async fn history(
    State(state): State<Arc<AdminState>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<History>, ApiError> {
    let params = Params::parse(raw.as_deref(), HistoryParams::NAMES)?;
    let window = params.parsed("window", params::age)?.unwrap_or(DEFAULT_WINDOW);
    if window > MAX_WINDOW || window < Duration::from_secs(60) {
        return Err(ApiError::BadRequest(
            "parameter `window`: from `1m` to `31d`, such as `1h` or `24h`".to_owned(),
        ));
    }
    let minutes_in = |span: Duration| (span.as_secs().div_ceil(60)).max(1) as i64;
    let window_minutes = minutes_in(window);
    let step = match params.parsed("step", params::age)? {
        Some(step) if step > window => {
            return Err(ApiError::BadRequest(
                "parameter `step`: at most the window, such as `1m` or `15m`".to_owned(),
            ));
        }
        Some(step) => minutes_in(step),
        None => default_step(window_minutes),
    };
    let points = (window_minutes + step - 1) / step;
    if points > MAX_POINTS {
        return Err(ApiError::BadRequest(format!(
            "{points} points of {step} min: at most {MAX_POINTS}; ask for a longer `step`"
        )));
    }
    // Steps aligned on multiples of their length (quarter hours for 15 min, the store's
    // rolled-up rows), the last one holding the current minute.
    let end = (minute_of(Utc::now()).div_euclid(step) + 1) * step;
    let first = end - points * step;
    let store = state.manager.store();
    let (minutes, counts) =
        tokio::try_join!(store.history(minute_start(first), step as u32), store.counts())?;
    let func = params.get("func_name");
    let queue = params.get("queue");
    let wanted = |f: &str, q: &str| func.is_none_or(|w| w == f) && queue.is_none_or(|w| w == q);
    let minutes: Vec<&MinuteCounts> =
        minutes.iter().filter(|m| wanted(&m.func_name, &m.queue)).collect();

    let mut sums: Vec<MinuteCounts> = (0..points)
        .map(|i| MinuteCounts { minute: minute_start(first + i * step), ..MinuteCounts::default() })
        .collect();
    let mut net: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut functions: BTreeMap<&str, MinuteCounts> = BTreeMap::new();
    for minute in &minutes {
        let index = (minute_of(minute.minute) - first).div_euclid(step);
        let Some(sum) = usize::try_from(index).ok().and_then(|i| sums.get_mut(i)) else {
            continue;
        };
        let at = sum.minute;
        sum.add(minute);
        sum.minute = at;
        let flow = net.entry(&minute.queue).or_insert_with(|| vec![0; points as usize]);
        flow[index as usize] += minute.enqueued - minute.ended();
        functions.entry(&minute.func_name).or_default().add(minute);
    }
    let mut now_depth: BTreeMap<&str, i64> = BTreeMap::new();
    for count in counts.iter().filter(|c| wanted(&c.func_name, &c.queue)) {
        if count.status == "pending" || count.status == "running" {
            *now_depth.entry(&count.queue).or_default() += count.tasks;
        }
    }
    let names: Vec<&str> = {
        let mut names: Vec<&str> = now_depth.keys().chain(net.keys()).copied().collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let mut queues = Vec::new();
    for name in names {
        let flow = net.get(name).cloned().unwrap_or_else(|| vec![0; sums.len()]);
        queues.push(QueueDepth {
            queue: name.to_owned(),
            depth: depth_back(now_depth.get(name).copied().unwrap_or(0), &flow),
        });
    }
    let mut series: Vec<Point> = sums.iter().map(Point::of).collect();
    for (i, point) in series.iter_mut().enumerate() {
        point.depth = queues.iter().map(|q| q.depth[i]).sum();
    }
    let functions = functions
        .into_iter()
        .map(|(name, all)| {
            let q = |q: f64| quantile(&all.histogram, q, all.min_duration, all.max_duration);
            FunctionDurations {
                func_name: name.to_owned(),
                runs: all.timed,
                histogram: all.histogram,
                min: all.min_duration,
                max: all.max_duration,
                p50: q(0.5),
                p95: q(0.95),
                p99: q(0.99),
            }
        })
        .collect();
    Ok(Json(History {
        window: window.as_secs(),
        step: step as u64 * 60,
        from: minute_start(first),
        to: minute_start(end),
        bounds: DURATION_BOUNDS,
        points: series,
        queues,
        functions,
    }))
}

/// Minutes per point for a window of `minutes`: one for up to two hours, then coarser so
/// that a day is 96 points of 15 minutes.
fn default_step(minutes: i64) -> i64 {
    match minutes {
        ..=120 => 1,
        121..=360 => 5,
        361..=1440 => 15,
        1441..=10_080 => 60,
        _ => 360,
    }
}

/// The depth at the end of each point, from the depth now and each point's net flow
/// (enqueued less ended): walking back from now, a point's end is the next point's end less
/// that point's flow. Never below zero (tasks deleted while pending are not in the flow).
fn depth_back(now: i64, flow: &[i64]) -> Vec<i64> {
    let mut depth = vec![0; flow.len()];
    let mut at_end = now;
    for i in (0..flow.len()).rev() {
        depth[i] = at_end.max(0);
        at_end -= flow[i];
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_walks_back_from_now() {
        // 5 enqueued in the first point, 3 ended in the second, 1 enqueued in the last.
        assert_eq!(depth_back(3, &[5, -3, 1]), vec![5, 2, 3]);
        assert_eq!(depth_back(0, &[-2, 0]), vec![0, 0], "never below zero");
    }

    #[test]
    fn steps_keep_points_few() {
        assert_eq!(default_step(60), 1);
        assert_eq!(1440 / default_step(1440), 96);
        assert!(44_640 / default_step(44_640) < MAX_POINTS);
    }
}
