//! Property tests of the admin API's inputs: arbitrary query strings and bodies on every
//! route never panic a handler nor answer 5xx, and a `400` names what was wrong.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use taskflow::TaskManager;
use taskflow::admin::routes;
use tower::ServiceExt;

#[taskflow::task]
async fn hostile_noop() {}

/// Values shaped like the ones the API reads, and the overflows and junk around them.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[0-9]{1,25}[smhdxy]?",
        1 => "-?[0-9]{1,12}",
        1 => "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})",
        1 => "(pending|running|success|failed|cancelled|interrupted|x)",
        1 => "[a-z]{0,6}:[a-z]{0,6}",
        1 => "(%[0-9A-Fa-f]{0,2}|\\+|&|=|[^&=]){0,12}",
        1 => any::<String>(),
        2 => Just("100000000d".to_owned()),
        1 => Just("18446744073709551615s".to_owned()),
        1 => Just("-created_at".to_owned()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("status"),
        Just("func_name"),
        Just("tag"),
        Just("q"),
        Just("since"),
        Just("until"),
        Just("sort"),
        Just("limit"),
        Just("cursor"),
        Just("display"),
        Just("older_than"),
        Just("colour"),
    ]
    .prop_map(str::to_owned)
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec((name(), value(), any::<bool>()), 0..4).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(k, v, raw)| if *raw { format!("{k}={v}") } else { format!("{k}={}", encode(v)) })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        (value(), value()).prop_map(|(a, b)| format!(r#"{{"since":"{a}","until":"{b}"}}"#)),
        prop::collection::vec(value(), 0..3)
            .prop_map(|ids| serde_json::json!({ "ids": ids }).to_string()),
        (value(), value()).prop_map(|(u, p)| format!(r#"{{"username":"{u}","password":"{p}"}}"#)),
        Just(r#"{"ids": 5}"#.to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
    ]
}

async fn app() -> Router {
    let manager = TaskManager::builder().build().await.unwrap();
    manager.add_task(hostile_noop, ());
    manager.admin_router()
}

async fn check(app: &Router, method: &str, uri: String, body: String) -> Result<(), TestCaseError> {
    let request = Request::builder()
        .method(method)
        .uri(&uri)
        .header("content-type", "application/json")
        .body(Body::from(body.clone()))
        .map_err(|e| TestCaseError::reject(e.to_string()))?;
    let response = app.clone().oneshot(request).await.expect("the router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let text = String::from_utf8_lossy(&bytes);
    prop_assert!(status.as_u16() < 500, "{method} {uri} {body}: {status} {text}");
    if status == StatusCode::BAD_REQUEST {
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let error = json["error"].as_str().unwrap_or_default();
        prop_assert!(
            error.contains('`') || error.starts_with("request body"),
            "{method} {uri}: a 400 names the field: {text}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_queries_and_bodies_never_panic_nor_answer_5xx(
        route in prop_oneof![0..routes().count(), Just(0), Just(1), Just(11), Just(10)],
        query in query(),
        body in body(),
        id in prop_oneof![Just(taskflow::TaskId::new().to_string()), value()],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let app = app().await;
            let route = routes().nth(route).unwrap();
            if route.path == "/stream" {
                return Ok(()); // never ends; its parameters are the Last-Event-ID header
            }
            let path = route.path.replace("{id}", &encode(&id)).replace("{name}", &encode(&id));
            let uri = if query.is_empty() { format!("/tasks{path}") } else { format!("/tasks{path}?{query}") };
            check(&app, route.method.as_str(), uri, body).await
        })?;
    }
}
