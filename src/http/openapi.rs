//! The admin API's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json` (behind the same
//! bearer token as the routes it describes).
//!
//! Written by hand next to the router: every admin route in `http::mod` has a path here, and the
//! integration test `operators::openapi_documents_every_admin_route` reads the router's source
//! and fails when a route is added without being documented (or documented without existing).
//! Paths are relative to the server URL `/api/v1`, exactly as the router spells them; a route
//! with an `{action}` segment is documented once per action, since each action has its own body.

use axum::Json;
use serde_json::{Map, Value, json};

/// `GET /api/v1/openapi.json`
pub async fn document() -> Json<Value> {
    Json(spec())
}

/// The whole document.
pub fn spec() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "replyd admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every inbound WhatsApp message reaches exactly one recorded outcome: \
                replied, silent (with a reason) or dead. This API shows outcomes and gives \
                operators their controls. Every route needs `Authorization: Bearer <admin token>`.",
        },
        "servers": [{ "url": "/api/v1" }],
        "security": [{ "bearer": [] }],
        "paths": paths(),
        "components": components(),
    })
}

fn paths() -> Value {
    let mut paths = Map::new();
    // (path, method, operation, route-specific error codes)
    let mut add = |path: &str, method: &str, operation: Value, codes: &[u16]| {
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[method] = errors(operation, codes);
    };
    let conversation = || {
        vec![
            param(
                "phone_number_id",
                "The business phone number id (with `provider=wasender`: the gateway session id).",
            ),
            param("wa_id", "The user's WhatsApp id."),
            json!({
                "name": "provider", "in": "query",
                "description": "Which provider the conversation is on; a gateway session id and a phone number id that happen to be equal name different conversations.",
                "schema": {"type": "string", "enum": ["cloud", "wasender"], "default": "cloud"},
            }),
        ]
    };
    let message_id = param("message_id", "Provider message id (wamid…).");
    let summary = "Counts per outcome and reason, duplicate and first-attempt send ratios";
    let replay = "Send a dead-lettered message back through the gates, or re-ingest a payload";
    let timeline = "One conversation with its timeline: messages, outcomes, replies, statuses";
    add(
        "/messages/{message_id}",
        "get",
        op(
            "A message's outcome by provider message id",
            &[message_id],
            None,
            ok("Message"),
        ),
        &[404],
    );
    add(
        "/summary",
        "get",
        op(summary, &[], None, ok("Summary")),
        &[],
    );
    let dead_letters = op(
        "Open dead letters, newest first, without their kept bytes",
        &[limit(100, 1000)],
        None,
        ok("DeadLetters"),
    );
    add("/dead-letters", "get", dead_letters, &[400]);
    let one = op(
        "One dead letter, whatever its state, with its kept bytes",
        &[id_param()],
        None,
        ok("DeadLetter"),
    );
    add("/dead-letters/{id}", "get", one, &[404]);
    let replayed = op(replay, &[id_param()], None, ok("DeadLetterState"));
    add("/dead-letters/{id}/replay", "post", replayed, &[404, 409]);
    let discarded = op(
        "Close a dead letter without replaying it",
        &[id_param()],
        None,
        ok("DeadLetterState"),
    );
    add("/dead-letters/{id}/discard", "post", discarded, &[404, 409]);
    let list = [mode_param(), limit(100, 1000)];
    let listed = op(
        "Conversations, newest activity first",
        &list,
        None,
        ok("ConversationList"),
    );
    add("/conversations", "get", listed, &[400]);
    let detail = [conversation(), vec![limit(50, 500)]].concat();
    let detailed = op(timeline, &detail, None, ok("ConversationDetail"));
    add(
        "/conversations/{phone_number_id}/{wa_id}",
        "get",
        detailed,
        &[400, 404],
    );
    let actions = [
        (
            "takeover",
            "An operator takes the conversation: the bot stays silent",
            Some("by"),
        ),
        ("release", "Hand the conversation back to the bot", None),
        (
            "escalate",
            "Escalate the conversation: the bot stays silent",
            Some("reason"),
        ),
        ("resolve", "Close an escalation: back to the bot", None),
    ];
    for (action, summary, field) in actions {
        let body = field.map(
            |f| json!({"type": "object", "properties": {f: {"type": "string", "maxLength": 256}}}),
        );
        let path = format!("/conversations/{{phone_number_id}}/{{wa_id}}/{action}");
        let operation = op(summary, &conversation(), body, ok("ModeChange"));
        let codes: &[u16] = if field.is_some() { &[400, 422] } else { &[400] };
        add(&path, "post", operation, codes);
    }
    let consent = [
        ("opt-out", "The contact opts out: never replied to"),
        ("opt-in", "The contact opts back in"),
    ];
    for (action, summary) in consent {
        let path = format!("/contacts/{{phone_number_id}}/{{wa_id}}/{action}");
        add(
            &path,
            "post",
            op(summary, &conversation(), None, ok("Consent")),
            &[400],
        );
    }
    let dry_run = json!({
        "name": "dry_run", "in": "query", "description": "Decide without acting.",
        "schema": {"type": "boolean", "default": false},
    });
    let swept = op(
        "Run the reconcile sweep now",
        &[dry_run],
        None,
        ok("SweepReport"),
    );
    add("/sweep", "post", swept, &[409]);
    let run_id = json!({
        "name": "run_id", "in": "query", "description": "One run with its decisions.",
        "schema": {"type": "integer"},
    });
    let history = "Sweep history with counts per reason, or one run with its decisions";
    let histories = op(
        history,
        &[limit(20, 1000), run_id],
        None,
        ok("SweepHistory"),
    );
    add("/sweeps", "get", histories, &[400, 404]);
    let spool = "Replay this server's spool now (it also replays by itself at an interval); \
        503 when the store takes no writes, the spool is then kept";
    add(
        "/spool/replay",
        "post",
        op(spool, &[], None, ok("SpoolReplayReport")),
        &[],
    );
    let document = json!({
        "description": "This OpenAPI 3.1 document",
        "content": {"application/json": {"schema": {"type": "object"}}},
    });
    add(
        "/openapi.json",
        "get",
        op("This document", &[], None, document),
        &[],
    );
    Value::Object(paths)
}

/// One operation: its parameters, optional JSON body, the success answer and the errors every
/// admin route can give (401 without the token, 503 when the store is unavailable). Route-specific
/// errors are added with [`errors`].
fn op(summary: &str, parameters: &[Value], body: Option<Value>, success: Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": success,
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "503": {"$ref": "#/components/responses/Unavailable"},
        },
    });
    if let Some(schema) = body {
        op["requestBody"] =
            json!({"required": false, "content": {"application/json": {"schema": schema}}});
    }
    op
}

/// Adds route-specific error answers: 400 (bad parameter), 404, 409, 422 (field out of bounds).
fn errors(mut op: Value, codes: &[u16]) -> Value {
    for code in codes {
        let name = match code {
            400 => "BadRequest",
            404 => "NotFound",
            422 => "Unprocessable",
            _ => "Conflict",
        };
        op["responses"][code.to_string()] =
            json!({ "$ref": format!("#/components/responses/{name}") });
    }
    op
}

fn ok(schema: &str) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": schema_ref(schema)}}})
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn param(name: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true, "description": description,
        "schema": {"type": "string"},
    })
}

fn id_param() -> Value {
    json!({
        "name": "id", "in": "path", "required": true, "description": "Dead letter id.",
        "schema": {"type": "integer"},
    })
}

fn limit(default: i64, max: i64) -> Value {
    json!({
        "name": "limit", "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": max, "default": default},
    })
}

fn mode_param() -> Value {
    json!({
        "name": "mode", "in": "query", "schema": schema_ref("ConversationMode"),
        "description": "Only conversations in this mode (no conversations row means `bot`).",
    })
}

fn components() -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": schema_ref("Error")}},
        })
    };
    json!({
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "REPLYD_ADMIN_TOKEN"},
        },
        "responses": {
            "BadRequest": error("A parameter or identifier is malformed"),
            "Unprocessable": error("A field is out of bounds (an operator note past 256 characters)"),
            "Unauthorized": error("Missing or wrong bearer token"),
            "NotFound": error("No such resource"),
            "Conflict": error("The resource is not in a state that allows this"),
            "Unavailable": error("The store is unavailable"),
        },
        "schemas": schemas(),
    })
}

/// The bodies' schemas (JSON Schema 2020-12: `"type": [t, "null"]` for nullable fields), kept
/// as data next to this file: easier to read and diff than nested `json!` macros.
fn schemas() -> Value {
    serde_json::from_str(include_str!("openapi_schemas.json"))
        .expect("openapi_schemas.json is valid JSON (checked by a unit test)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_every_schema_is_used() {
        let doc = spec();
        let text = doc.to_string();
        let mut referenced = std::collections::BTreeSet::new();
        for piece in text.split("\"#/components/").skip(1) {
            let target = piece.split('"').next().unwrap();
            let (kind, name) = target.split_once('/').unwrap();
            assert!(
                doc["components"][kind][name].is_object(),
                "dangling $ref {target}"
            );
            referenced.insert(name.to_owned());
        }
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(referenced.contains(name), "schema {name} is never used");
        }
    }
}
