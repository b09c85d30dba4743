//! The OpenAPI document and the router cannot drift: every documented operation is served
//! (requested over HTTP, it is routed: never a bare 404 or a 405), and every admin route is
//! documented (the admin router is built only from the `routes!` table of `http::openapi`, one
//! entry per documented operation).

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::helpers::*;

async fn document(app: &TestApp) -> Value {
    let (status, doc) = app.admin_get("/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    doc
}

/// A documented path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{message_id}", "wamid.unknown")
        .replace("{id}", "999999")
        .replace("{phone_number_id}", PHONE_NUMBER_ID)
        .replace("{wa_id}", USER)
}

#[tokio::test]
async fn every_documented_operation_is_served_behind_the_token() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["servers"], json!([{"url": "/api/v1"}]));
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            for status in ["200", "401", "503"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path}: no {status}"
                );
            }
            for param in path.split('/').filter(|s| s.starts_with('{')) {
                let name = param.trim_matches(|c| c == '{' || c == '}');
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(
                    declared,
                    "{method} {path}: path parameter {name} is not declared"
                );
            }
            let url = format!("{}/api/v1{}", app.base, concrete(path));
            let request = |token: Option<&str>| {
                let mut r = match method.as_str() {
                    "get" => app.client.get(&url),
                    "post" => app.client.post(&url),
                    other => panic!("{other} {path}: a method the admin API does not use"),
                };
                if let Some(token) = token {
                    r = r.bearer_auth(token);
                }
                r
            };
            let refused = request(None).send().await.unwrap();
            assert_eq!(refused.status(), 401, "{method} {path} without the token");
            let answer = request(Some(ADMIN_TOKEN)).send().await.unwrap();
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap();
            assert_ne!(
                status, 405,
                "{method} {path}: documented, but not that method"
            );
            if status == 404 {
                // A handler's 404 says what was not found; an unrouted path answers nothing.
                let error: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|_| panic!("{method} {path} is documented but not routed"));
                assert!(error["error"].is_string(), "{method} {path}: {body}");
            }
        }
    }
    assert!(operations >= 19, "{operations} operations");
}

#[test]
fn every_admin_route_comes_from_the_documented_table() {
    let table = include_str!("../../src/http/openapi.rs");
    let routes = &table[table.find("pub fn routes()").unwrap()..];
    let routes = &routes[..routes.find("\n}\n").unwrap()];
    assert!(
        !routes.contains(".route("),
        "a route added around the table is served but not documented"
    );
    let handlers = routes.matches("routes!(").count();
    let doc = serde_json::to_value(replyd::http::openapi::spec()).unwrap();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(handlers, operations, "one documented operation per handler");
    // The router module mounts that table as the whole admin API.
    let router = include_str!("../../src/http/mod.rs");
    let admin = &router[router.find("openapi::router()").unwrap()..];
    let admin = &admin[..admin.find("let webhooks").unwrap()];
    assert!(!admin.contains(".route("), "{admin}");
}
