//! Secrets from configuration: never printed, only compared in constant time. URLs that may
//! carry credentials (a database URL with a password, a bot's URL with a token in its path)
//! are printed only in redacted form.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time equality against a presented value (a token, a header).
    pub fn matches(&self, presented: &[u8]) -> bool {
        !self.0.is_empty() && bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(unset)"
        } else {
            "Secret(***)"
        })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A database URL. `Display` and `Debug` hide its password (`postgres://u:***@host/db`), so
/// it can go into logs and error messages; [`DatabaseUrl::expose`] gives the real one to
/// the driver.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_password(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

const HIDDEN: &str = "***";

/// `url` with the password of its user info and any `password=` query value replaced by `***`.
/// Works on any `scheme://` URL, parsable or not, so a malformed one is not printed in clear.
pub fn redact_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    // The user info ends at the last `@` before any query: a password holding an unencoded
    // `/` or `@` is still hidden whole.
    let head = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let host_start = head.rfind('@').map_or(0, |at| at + 1);
    let authority_len = host_start
        + head[host_start..]
            .find('/')
            .unwrap_or(head.len() - host_start);
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..authority_start]);
    let authority = &rest[..authority_len];
    match authority.rfind('@') {
        Some(at) => {
            let user_info = &authority[..at];
            match user_info.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(HIDDEN);
                }
                None => out.push_str(user_info),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_len..];
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}={HIDDEN}")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

/// `url` reduced to scheme, host and port: a bot's URL may carry a token in its user info,
/// path or query, none of which a log reader needs.
pub fn redact_to_origin(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}/{HIDDEN}", url.scheme()),
        (Some(host), None) => format!("{}://{host}/{HIDDEN}", url.scheme()),
        _ => format!("{}:{HIDDEN}", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_never_show_their_password() {
        let url =
            DatabaseUrl::from("postgres://replyd:s3cr%40t@db.local:5432/replyd?sslmode=require");
        assert_eq!(
            url.to_string(),
            "postgres://replyd:***@db.local:5432/replyd?sslmode=require"
        );
        assert!(!format!("{url:?}").contains("s3cr"));
        assert_eq!(
            redact_password("postgres://db/replyd?user=a&password=hunter2&sslmode=disable"),
            "postgres://db/replyd?user=a&password=***&sslmode=disable"
        );
        assert_eq!(
            redact_password("postgres://only-user@db/x"),
            "postgres://only-user@db/x"
        );
        assert_eq!(
            redact_password("sqlite://./replyd-data/replyd.db"),
            "sqlite://./replyd-data/replyd.db"
        );
        // A password holding `@` or `/` is hidden whole.
        assert_eq!(
            redact_password("postgres://u:p@ss@h/d"),
            "postgres://u:***@h/d"
        );
        assert_eq!(
            redact_password("postgres://u:p/ss@h/d"),
            "postgres://u:***@h/d"
        );
        assert_eq!(
            url.expose(),
            "postgres://replyd:s3cr%40t@db.local:5432/replyd?sslmode=require"
        );
    }

    #[test]
    fn origins_drop_user_info_path_and_query() {
        let url =
            reqwest::Url::parse("https://user:pw@bot.example:8443/hook/TOKEN?key=abc").unwrap();
        let shown = redact_to_origin(&url);
        assert_eq!(shown, "https://bot.example:8443/***");
        for secret in ["pw", "TOKEN", "abc"] {
            assert!(!shown.contains(secret));
        }
    }

    #[test]
    fn matches_only_the_same_bytes_and_never_when_unset() {
        let s = Secret::new("tok");
        assert!(s.matches(b"tok"));
        assert!(!s.matches(b"tok2"));
        assert!(!s.matches(b"to"));
        assert!(!Secret::default().matches(b""));
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
