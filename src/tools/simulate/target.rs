//! Where `simulate` sends and what it signs with, when the flags do not say: the same
//! configuration and data directory `replyd serve` uses, so the two work together with no flags.
//!
//! Order, per value: the flag (or its `REPLYD_*` variable), then the configuration
//! (`replyd.toml`, `REPLYD_*`), then the data directory's `secrets.toml`. A value found nowhere
//! is an error that says where to put it; an empty one never counts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, bail};

use super::SimulateArgs;
use crate::config::Config;
use crate::secrets_file;

/// The resolved destination of a run.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub secret: String,
    /// Only looked up for `--until-settled`.
    pub admin_token: Option<String>,
}

fn given(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

impl Target {
    pub fn resolve(args: &SimulateArgs, config_path: Option<&Path>) -> anyhow::Result<Self> {
        let (url, secret) = (given(&args.url), given(&args.secret));
        let admin_token = given(&args.admin_token);
        let needs_admin = args.until_settled && admin_token.is_none();
        if let (Some(url), Some(secret), false) = (&url, &secret, needs_admin) {
            return Ok(Self {
                url: url.clone(),
                secret: secret.clone(),
                admin_token,
            });
        }
        let mut config = Config::load(config_path).context(
            "reading the configuration for simulate's defaults (or pass --url and --secret)",
        )?;
        let file = secrets_file::fill_from_file(&mut config)?.path;
        let missing = |what: &str, flag: &str, env: &str| {
            anyhow::anyhow!(
                "no {what}: pass {flag}, set {env}, or start `replyd serve` once with this data \
                 directory ({}) so that it generates {}",
                config.data_dir.display(),
                file.display()
            )
        };
        let url = match url {
            Some(url) => url,
            None => webhook_url(config.listen)?,
        };
        let secret = match secret {
            Some(secret) => secret,
            None => Some(config.app_secret.expose().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing("app secret", "--secret", "REPLYD_APP_SECRET"))?,
        };
        let admin_token = match (admin_token, args.until_settled) {
            (Some(token), _) => Some(token),
            (None, false) => None,
            (None, true) => Some(
                Some(config.admin_token.expose().to_owned())
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| missing("admin token", "--admin-token", "REPLYD_ADMIN_TOKEN"))?,
            ),
        };
        Ok(Self {
            url,
            secret,
            admin_token,
        })
    }
}

/// `http://<listen>/webhook`, reaching a wildcard address over loopback.
fn webhook_url(listen: SocketAddr) -> anyhow::Result<String> {
    if listen.port() == 0 {
        bail!(
            "the configured listen address {listen} has port 0 (the server picks a free port at \
             start): pass --url with the address it logged (\"replyd listening\")"
        );
    }
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!(
        "http://{}/webhook",
        SocketAddr::new(ip, listen.port())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_url_follows_the_listen_address() {
        let url = |s: &str| webhook_url(s.parse().unwrap());
        assert_eq!(
            url("127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080/webhook"
        );
        assert_eq!(
            url("0.0.0.0:9000").unwrap(),
            "http://127.0.0.1:9000/webhook"
        );
        assert_eq!(url("[::]:9000").unwrap(), "http://[::1]:9000/webhook");
        assert!(
            url("127.0.0.1:0")
                .unwrap_err()
                .to_string()
                .contains("--url")
        );
    }
}
