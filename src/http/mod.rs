//! The HTTP surface: webhooks, admin API, operator console, health and metrics, all on one router.

pub mod admin;
pub mod answers;
pub mod console;
pub mod contacts;
pub mod conversations;
pub mod error;
pub mod health;
pub mod limits;
pub mod openapi;
pub mod serve;
pub mod spool;
pub mod sweep;
pub mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::domain::PhoneNumberId;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::Store;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// The gateway sessions and the secrets that identify their events.
    pub gateways: Arc<Gateways>,
    pub store: Store,
    pub ingestor: Ingestor,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// Rung when an operator action makes reply jobs due (dead-letter replay).
    pub jobs_ready: Arc<Notify>,
}

/// The configured gateway sessions, each known by the webhook secret its events carry.
#[derive(Debug, Default)]
pub struct Gateways(Vec<GatewayAuth>);

#[derive(Debug)]
struct GatewayAuth {
    session: PhoneNumberId,
    webhook_secret: Secret,
    /// Some of WASender's events name the session by its API key instead of its id.
    api_key: Secret,
}

impl Gateways {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        config
            .gateway_sessions()?
            .into_iter()
            .map(|g| {
                let session = PhoneNumberId::parse(g.session_id.clone()).map_err(|e| {
                    ConfigError::Invalid(format!("gateway `{}`: {e}", g.session_id))
                })?;
                Ok(GatewayAuth {
                    session,
                    webhook_secret: g.webhook_secret,
                    api_key: g.api_key.unwrap_or_default(),
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The session whose secret was presented. Every secret is compared (each in constant
    /// time), so the answer's timing does not tell which one, if any, matched; an empty secret
    /// never matches.
    pub fn by_secret(&self, presented: &[u8]) -> Option<&PhoneNumberId> {
        self.0.iter().fold(None, |found, g| {
            let matched = g.webhook_secret.matches(presented);
            found.or(matched.then_some(&g.session))
        })
    }

    /// Whether an event's `sessionId` names `session`: its id, or its API key.
    pub fn names(&self, session: &PhoneNumberId, named: &str) -> bool {
        named == session.as_str()
            || self
                .0
                .iter()
                .any(|g| &g.session == session && g.api_key.matches(named.as_bytes()))
    }

    pub fn is_configured(&self, session: &str) -> bool {
        self.0.iter().any(|g| g.session.as_str() == session)
    }
}

pub fn router(state: AppState) -> Router {
    // One table (`openapi::routes`) gives the admin routes and their OpenAPI document.
    let (admin, _) = openapi::router();
    let admin = admin.route_layer(middleware::from_fn_with_state(
        state.clone(),
        admin::require_admin,
    ));
    let webhooks = Router::new()
        .route(
            "/webhook",
            get(webhook::verify_handshake).post(webhook::receive_cloud),
        )
        .route("/webhook/wasender", post(webhook::receive_wasender))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes));
    let limits = limits::Limits::new(state.config.max_in_flight, state.config.body_read_timeout);
    // Liveness and metrics stay outside the in-flight bound: an overloaded server must still be
    // seen as alive and be observable.
    Router::new()
        .merge(webhooks)
        .merge(console::router(state.clone()))
        .nest("/api/v1", admin)
        .route("/readyz", get(health::readyz))
        .layer(middleware::from_fn_with_state(
            limits.clone(),
            limits::body_deadline,
        ))
        .layer(middleware::from_fn_with_state(
            limits,
            limits::limit_in_flight,
        ))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .with_state(state)
}
