//! WASender gateway sessions: `[[gateways]]` in replyd.toml, plus the one the
//! `REPLYD_WASENDER_*` variables define. Validated when the configuration is loaded, failing
//! closed: every gateway has a session id and a non-empty secret, and no two share either (an
//! event must belong to exactly one session).

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError};
use crate::secret::Secret;
use crate::worker::responder::ResponderConfig;

/// The public WASender API.
pub const WASENDER_BASE_URL: &str = "https://www.wasenderapi.com";

/// The kinds of gateway replyd speaks to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GatewayKind {
    Wasender,
}

/// One gateway session (`[[gateways]]` in replyd.toml). Its events are recognised by the secret
/// they carry and attributed to its session; its replies go back through it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub kind: GatewayKind,
    pub session_id: String,
    /// The `X-Webhook-Signature` value its webhooks carry. Required and non-empty.
    pub webhook_secret: Secret,
    /// Bearer key of the session's send API. Unset: its replies are recorded, not sent (sandbox).
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default = "default_wasender_base_url")]
    pub base_url: String,
    #[serde(default)]
    pub send_rate_per_second: Option<u32>,
    /// Answer messages written in group chats (default: no, recorded as `silent:group`).
    #[serde(default)]
    pub answer_groups: bool,
    #[serde(default)]
    pub responder: Option<ResponderConfig>,
}

fn default_wasender_base_url() -> String {
    WASENDER_BASE_URL.to_owned()
}

impl GatewayConfig {
    /// Whether replies through this gateway are recorded only (no API key).
    pub fn sandbox(&self) -> bool {
        self.api_key.as_ref().is_none_or(|k| k.expose().is_empty())
    }
}

impl Config {
    /// Every configured gateway: `[[gateways]]` plus the one the `REPLYD_WASENDER_*` variables
    /// define. Fails closed: a gateway without a secret or a session id, or two gateways sharing a
    /// secret or a session (an event must belong to exactly one), is a configuration error.
    pub fn gateway_sessions(&self) -> Result<Vec<GatewayConfig>, ConfigError> {
        let mut all = self.gateways.clone();
        let env_session = self
            .wasender_session_id
            .as_deref()
            .filter(|s| !s.is_empty());
        match (self.wasender_secret.expose().is_empty(), env_session) {
            (true, None) => {}
            (false, Some(session)) => all.push(GatewayConfig {
                kind: GatewayKind::Wasender,
                session_id: session.to_owned(),
                webhook_secret: self.wasender_secret.clone(),
                api_key: Some(self.wasender_api_key.clone()),
                base_url: self.wasender_base_url.clone(),
                send_rate_per_second: None,
                answer_groups: false,
                responder: None,
            }),
            (false, None) => {
                return Err(ConfigError::Invalid(
                    "wasender_secret is set but wasender_session_id is not: set \
                     REPLYD_WASENDER_SESSION_ID to the gateway session's id (its events are \
                     attributed to that session, and its replies go out through it)"
                        .into(),
                ));
            }
            (true, Some(_)) => {
                return Err(ConfigError::Invalid(
                    "wasender_session_id is set but wasender_secret is empty: set \
                     REPLYD_WASENDER_SECRET to the session's webhook secret (an empty secret \
                     authenticates nothing)"
                        .into(),
                ));
            }
        }
        for (i, g) in all.iter().enumerate() {
            if g.session_id.trim().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "gateway #{}: session_id is empty; set it to the gateway session's id",
                    i + 1
                )));
            }
            crate::domain::PhoneNumberId::parse(g.session_id.clone()).map_err(|e| {
                ConfigError::Invalid(format!("gateway `{}`: session_id: {e}", g.session_id))
            })?;
            if g.webhook_secret.expose().is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "gateway `{}`: webhook_secret is empty; an empty secret authenticates \
                     nothing, set the secret the gateway sends in X-Webhook-Signature",
                    g.session_id
                )));
            }
            for other in &all[..i] {
                if other.session_id == g.session_id {
                    return Err(ConfigError::Invalid(format!(
                        "gateway session `{}` is configured twice",
                        g.session_id
                    )));
                }
                if other.webhook_secret.expose() == g.webhook_secret.expose() {
                    return Err(ConfigError::Invalid(format!(
                        "gateways `{}` and `{}` share a webhook secret: an event must belong to \
                         exactly one session, give each its own",
                        other.session_id, g.session_id
                    )));
                }
            }
        }
        Ok(all)
    }

    /// No access token anywhere: replies are recorded and shown, never sent.
    pub fn sandbox(&self) -> bool {
        self.access_token.expose().is_empty()
            && self.numbers.iter().all(|n| {
                n.access_token
                    .as_ref()
                    .is_none_or(|t| t.expose().is_empty())
            })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail fixes the closure's error type"
    )]
    fn gateways_come_from_the_file_and_one_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "gw.toml",
                r#"
                [[gateways]]
                kind = "wasender"
                session_id = "5511"
                webhook_secret = "s1"
                api_key = "k1"
                send_rate_per_second = 1
                answer_groups = true
                responder = { kind = "http", url = "http://127.0.0.1:9/bot", secret = "s" }

                [[numbers]]
                phone_number_id = "111"
                read_receipts = false
                "#,
            )?;
            jail.set_env("REPLYD_WASENDER_SECRET", "s2");
            jail.set_env("REPLYD_WASENDER_SESSION_ID", "5522");
            jail.set_env("REPLYD_WASENDER_API_KEY", "k2");
            let c = Config::load(Some(Path::new("gw.toml"))).expect("loads");
            let gateways = c.gateway_sessions().unwrap();
            assert_eq!(gateways.len(), 2);
            assert_eq!(gateways[0].base_url, WASENDER_BASE_URL);
            assert!(gateways[0].answer_groups && !gateways[1].answer_groups);
            assert_eq!(
                (gateways[1].session_id.as_str(), gateways[1].sandbox()),
                ("5522", false)
            );
            assert!(!c.read_receipts_for("111") && c.read_receipts_for("222"));
            Ok(())
        });
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment::Jail fixes the closure's error type"
    )]
    fn a_gateway_without_its_secret_or_session_or_sharing_one_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REPLYD_WASENDER_SECRET", "s");
            let error = Config::load(None).expect_err("no session id").to_string();
            assert!(error.contains("REPLYD_WASENDER_SESSION_ID"), "{error}");
            jail.set_env("REPLYD_WASENDER_SECRET", "");
            jail.set_env("REPLYD_WASENDER_SESSION_ID", "5511");
            assert!(
                Config::load(None).is_err(),
                "a session with an empty secret"
            );
            jail.set_env("REPLYD_WASENDER_SESSION_ID", "");
            for (name, file) in [
                (
                    "empty.toml",
                    "[[gateways]]\nkind = \"wasender\"\nsession_id = \"1\"\nwebhook_secret = \"\"",
                ),
                (
                    "twice.toml",
                    "[[gateways]]\nkind = \"wasender\"\nsession_id = \"1\"\nwebhook_secret = \"a\"\n[[gateways]]\nkind = \"wasender\"\nsession_id = \"1\"\nwebhook_secret = \"b\"",
                ),
                (
                    "shared.toml",
                    "[[gateways]]\nkind = \"wasender\"\nsession_id = \"1\"\nwebhook_secret = \"a\"\n[[gateways]]\nkind = \"wasender\"\nsession_id = \"2\"\nwebhook_secret = \"a\"",
                ),
                (
                    "kind.toml",
                    "[[gateways]]\nkind = \"telegram\"\nsession_id = \"1\"\nwebhook_secret = \"a\"",
                ),
            ] {
                jail.create_file(name, file)?;
                assert!(Config::load(Some(Path::new(name))).is_err(), "{name}");
            }
            Ok(())
        });
    }
}
