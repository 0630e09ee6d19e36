//! Trace context from the enqueue to every attempt (feature `opentelemetry`): the current
//! span's OpenTelemetry context is written into the task's tags as the W3C headers
//! `traceparent` and `tracestate`, so it is stored with the task on every backend and read
//! back wherever and whenever the task runs; each attempt's span takes it as its parent (or
//! links to it). Without the feature, nothing is captured and no OpenTelemetry crate is built.

use std::collections::BTreeMap;

/// The tag that holds a task's W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";

/// The tag that holds a task's W3C `tracestate`, when the trace has one.
pub const TRACESTATE: &str = "tracestate";

/// The longest `tracestate` kept (the W3C limit: 32 entries of at most 256 bytes would be
/// more, but propagators are asked to keep 512).
#[cfg(feature = "opentelemetry")]
const MAX_TRACESTATE: usize = 512;

/// How an attempt's span relates to the span that enqueued its task (see
/// [`TaskManagerBuilder::trace_attempts`](crate::TaskManagerBuilder::trace_attempts)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TraceLink {
    /// The attempt is a child of the enqueueing span: one trace from the request to every
    /// attempt of its tasks.
    #[default]
    Parent,
    /// The attempt starts a trace of its own that links to the enqueueing span: for tasks
    /// that run long after the request, where one trace would span hours.
    Link,
}

/// Writes the current span's trace context into `tags`, unless they carry a `traceparent`
/// already (one given by the caller, or copied from the task being retried).
pub(crate) fn capture(tags: &mut BTreeMap<String, String>) {
    #[cfg(feature = "opentelemetry")]
    if !tags.contains_key(TRACEPARENT) {
        use opentelemetry::propagation::TextMapPropagator;
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let context = tracing::Span::current().context();
        if context.span().span_context().is_valid() {
            let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
            propagator.inject_context(&context, &mut Headers(tags));
            // W3C lets a carrier drop a `tracestate` it cannot keep whole.
            if tags.get(TRACESTATE).is_some_and(|state| state.len() > MAX_TRACESTATE) {
                tags.remove(TRACESTATE);
            }
        }
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = tags;
}

/// Makes the context stored in `tags` the parent of `span` (or a link of it), if they hold a
/// valid one; `span` must not have been entered yet.
pub(crate) fn attach(span: &tracing::Span, tags: &BTreeMap<String, String>, how: TraceLink) {
    #[cfg(feature = "opentelemetry")]
    if tags.contains_key(TRACEPARENT) {
        use opentelemetry::propagation::TextMapPropagator;
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
        let context = propagator.extract(&Stored(tags));
        let remote = context.span().span_context().clone();
        if !remote.is_valid() {
            return;
        }
        match how {
            TraceLink::Parent => {
                if let Err(err) = span.set_parent(context) {
                    tracing::debug!(error = %err, "taskflow: could not parent an attempt's span");
                }
            }
            TraceLink::Link => span.add_link(remote),
        }
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, tags, how);
}

/// Tags to write the W3C trace headers into.
#[cfg(feature = "opentelemetry")]
struct Headers<'a>(&'a mut BTreeMap<String, String>);

/// Tags to read the W3C trace headers from.
#[cfg(feature = "opentelemetry")]
struct Stored<'a>(&'a BTreeMap<String, String>);

#[cfg(feature = "opentelemetry")]
impl opentelemetry::propagation::Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

#[cfg(feature = "opentelemetry")]
impl opentelemetry::propagation::Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}
