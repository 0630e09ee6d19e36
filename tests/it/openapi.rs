//! The admin API's OpenAPI description (`GET {p}/openapi.json`) over real HTTP, against the
//! route table the router is built from: every route is described under the router's prefix
//! with its method, the guard's answers and the configured credentials are in it, and the
//! query parameters it names are the ones the handlers accept. (CI also fuzzes the running
//! example against it with schemathesis: `.ci/schemathesis`.)

use serde_json::Value;
use taskflow::admin::{Access, routes};

use crate::admin::{Server, error_of};

/// The description an admin router with `configure` serves at `{prefix}/openapi.json`.
async fn description(server: &Server, prefix: &str, basic: bool) -> Value {
    let mut request = server.client.get(server.url(&format!("{prefix}/openapi.json")));
    if basic {
        request = request.basic_auth("ops", Some("s3cret"));
    }
    let (status, body) = server.send(request).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The operation of `method` on `path` (under the prefix) in `document`.
fn operation<'d>(document: &'d Value, prefix: &str, path: &str, method: &str) -> &'d Value {
    let full = match format!("{prefix}{path}") {
        full if full.is_empty() => "/".to_owned(),
        full => full,
    };
    let operation = &document["paths"][&full][method.to_ascii_lowercase()];
    assert!(operation.is_object(), "{method} {full} is described");
    operation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_described_once_under_the_prefix() {
    let server = Server::start(|a| a).await;
    let document = description(&server, "/tasks", false).await;
    assert_eq!(document["openapi"], "3.1.0");
    let mut ids = std::collections::HashSet::new();
    for route in routes() {
        let operation = operation(&document, "/tasks", route.path, route.method.as_str());
        let id = operation["operationId"].as_str().expect("an operation id");
        assert!(ids.insert(id.to_owned()), "operation id {id} is unique");
        let answers = operation["responses"].as_object().unwrap();
        assert!(answers.keys().any(|code| code.starts_with('2')), "{id}: a success answer");
        // Without credentials configured nothing asks for them (the login answers 401: there
        // is nothing to sign in with).
        assert!(operation.get("security").is_none(), "{id}");
        assert_eq!(answers.contains_key("401"), route.path == "/login", "{id}");
        if route.changes_state() {
            assert!(answers.contains_key("403"), "{id}: cross-origin changes are refused");
        }
        for (code, answer) in answers.iter().filter(|(code, _)| code.as_str() >= "400") {
            let schema = &answer["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(schema, "#/components/schemas/ErrorBody", "{id} {code}");
        }
    }
    let described: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(described, routes().count(), "nothing described that is not routed");
    assert!(document["components"]["securitySchemes"].is_null());
    let change = &document["components"]["schemas"]["QueueChange"];
    assert_eq!((&change["minProperties"], &change["maxProperties"]), (&1.into(), &Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_prefix_are_those_of_the_router() {
    let server = Server::start(|a| a.prefix("/ops/").basic_auth("ops", "s3cret")).await;
    let (status, body) = server.get("/ops/openapi.json").await;
    assert_eq!((status.as_u16(), error_of(&body)), (401, "authentication required"));
    let document = description(&server, "/ops", true).await;
    assert_eq!(document["components"]["securitySchemes"]["basic"]["scheme"], "basic");
    assert_eq!(document["components"]["securitySchemes"]["session"]["in"], "cookie");
    assert!(document["paths"].as_object().unwrap().keys().all(|path| path.starts_with("/ops")));
    for route in routes() {
        let operation = operation(&document, "/ops", route.path, route.method.as_str());
        let answers = operation["responses"].as_object().unwrap();
        let guarded = route.access == Access::Credentials;
        assert_eq!(operation.get("security").is_some(), guarded, "{}", route.path);
        assert_eq!(answers.contains_key("401"), guarded || route.path == "/login");
        if guarded {
            assert!(answers["429"]["headers"]["retry-after"].is_object(), "{}", route.path);
        }
    }
}

/// Each described query parameter is one the handler takes, and a parameter the description
/// does not name is refused: the two cannot drift apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn described_query_parameters_are_the_accepted_ones() {
    let server = Server::start(|a| a).await;
    let document = description(&server, "/tasks", false).await;
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "delete"] {
            let Some(parameters) = item[method]["parameters"].as_array() else { continue };
            let query: Vec<&str> = parameters
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            if query.is_empty() || path.contains('{') {
                continue;
            }
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let unknown = format!("{path}?undescribed=1");
            let response =
                server.client.request(method.clone(), server.url(&unknown)).send().await.unwrap();
            assert_eq!(response.status(), 400, "{unknown}");
            for name in query {
                // A value that may be invalid for the parameter but is never unknown.
                let url = server.url(&format!("{path}?{name}=1"));
                let response = server.client.request(method.clone(), url).send().await.unwrap();
                let body = response.text().await.unwrap();
                assert!(!body.contains("unknown parameter"), "{path} takes `{name}`: {body}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 16, "the list, export, metrics, history and delete parameters: {checked}");
}
