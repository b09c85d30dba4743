//! The admin API's routes and its OpenAPI 3.1 document, from one table.
//!
//! [`routes`] lists every handler once, through `utoipa_axum::routes!`: each handler's
//! `#[utoipa::path]` attribute gives both the route the router serves and the operation the
//! document describes, and the bodies' schemas are derived from the answer types themselves
//! (`ToSchema`). So a route cannot be served without being documented, nor documented without
//! being served, and a body's documented shape is the type that is serialized. The document is
//! served at `GET /api/v1/openapi.json` behind the same bearer token as the routes it describes.
//!
//! Paths are relative to the server URL `/api/v1`. Every operation also answers 401 (no or a
//! wrong token) and 503 (the store is unavailable): [`CommonErrors`] adds those to each.

use std::sync::Arc;

use axum::{Extension, Json};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, ToResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::answers::ErrorAnswer;
use super::{AppState, admin, contacts, conversations, spool, sweep};

/// A parameter or identifier is malformed.
#[expect(dead_code, reason = "only its schema is used")]
#[derive(ToResponse)]
#[response(description = "A parameter or identifier is malformed")]
pub struct BadRequest(ErrorAnswer);

/// Missing or wrong bearer token.
#[expect(dead_code, reason = "only its schema is used")]
#[derive(ToResponse)]
#[response(description = "Missing or wrong bearer token")]
pub struct Unauthorized(ErrorAnswer);

#[expect(dead_code, reason = "only its schema is used")]
#[derive(ToResponse)]
#[response(description = "No such resource")]
pub struct NotFound(ErrorAnswer);

#[expect(dead_code, reason = "only its schema is used")]
#[derive(ToResponse)]
#[response(description = "The resource is not in a state that allows this")]
pub struct Conflict(ErrorAnswer);

#[expect(dead_code, reason = "only its schema is used")]
#[derive(ToResponse)]
#[response(description = "A field is out of bounds (an operator note past 256 characters)")]
pub struct Unprocessable(ErrorAnswer);

#[expect(dead_code, reason = "only its schema is used")]
#[derive(ToResponse)]
#[response(description = "The store is unavailable")]
pub struct Unavailable(ErrorAnswer);

/// The document's fixed parts; the paths come from [`routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "replyd admin API",
        description = "Every inbound WhatsApp message reaches exactly one recorded outcome: \
            replied, silent (with a reason) or dead. This API shows outcomes and gives operators \
            their controls. Every route needs `Authorization: Bearer <admin token>`."
    ),
    servers((url = "/api/v1")),
    security(("bearer" = [])),
    components(
        schemas(ErrorAnswer),
        responses(BadRequest, Unauthorized, NotFound, Conflict, Unprocessable, Unavailable)
    ),
    modifiers(&Bearer)
)]
struct ApiDoc;

/// The `bearer` security scheme every operation requires.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("REPLYD_ADMIN_TOKEN"))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Adds the answers every admin operation can give: 401 and 503.
pub struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut Document) {
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                add_response(op, "401", "Unauthorized");
                add_response(op, "503", "Unavailable");
            }
        }
    }
}

fn add_response(op: &mut Operation, status: &str, name: &str) {
    op.responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
}

/// Every admin route, once: the router and the document are both built from this.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(admin::message))
        .routes(routes!(admin::summary))
        .routes(routes!(admin::dead_letters))
        .routes(routes!(admin::dead_letter))
        .routes(routes!(admin::replay_dead_letter))
        .routes(routes!(admin::discard_dead_letter))
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::detail))
        .routes(routes!(contacts::takeover))
        .routes(routes!(contacts::release))
        .routes(routes!(contacts::escalate))
        .routes(routes!(contacts::resolve))
        .routes(routes!(contacts::opt_out))
        .routes(routes!(contacts::opt_in))
        .routes(routes!(contacts::erase))
        .routes(routes!(sweep::run))
        .routes(routes!(sweep::history))
        .routes(routes!(spool::replay))
        .routes(routes!(document))
}

/// The admin router (without its bearer-token layer) and the document it serves.
pub fn router() -> (axum::Router<AppState>, Arc<Document>) {
    let (router, mut doc) = routes().split_for_parts();
    CommonErrors.modify(&mut doc);
    let doc = Arc::new(doc);
    (router.layer(Extension(doc.clone())), doc)
}

/// The whole document, as served.
pub fn spec() -> Document {
    Arc::unwrap_or_clone(router().1)
}

/// `GET /api/v1/openapi.json`
#[utoipa::path(get, path = "/openapi.json", summary = "This document",
    responses((status = 200, description = "This OpenAPI 3.1 document", body = Object)))]
pub async fn document(Extension(doc): Extension<Arc<Document>>) -> Json<Arc<Document>> {
    Json(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_every_operation_has_its_common_errors() {
        let doc = serde_json::to_value(spec()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        let text = doc.to_string();
        for piece in text.split("\"#/components/").skip(1) {
            let target = piece.split('"').next().unwrap();
            let (kind, name) = target.split_once('/').unwrap();
            assert!(
                doc["components"][kind][name].is_object(),
                "dangling $ref {target}"
            );
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for status in ["200", "401", "503"] {
                    assert!(
                        op["responses"][status].is_object(),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }
}
