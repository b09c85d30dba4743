//! Doctor's broker check: is Redis reachable, and will its queue survive a restart (AOF)?
//!
//! A minimal RESP2 exchange over TCP (`AUTH`, `PING`, `CONFIG GET`) rather than a Redis client
//! crate: doctor needs three commands, and nothing else in replyd speaks to Redis yet. TLS
//! (`rediss://`) is not spoken here and is reported as not checked.

use std::time::Duration;

use reqwest::Url;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{Check, Subject};
use crate::secret::redact_password;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Replies larger than this are not what these commands answer.
const MAX_BULK: usize = 64 * 1024;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Reply>>),
}

struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    async fn command(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.stream.get_mut().write_all(out.as_bytes()).await?;
        Box::pin(read_reply(&mut self.stream)).await
    }

    /// `CONFIG GET name` → its value, or why it could not be read.
    async fn config_get(&mut self, name: &str) -> Result<String, String> {
        match self.command(&["CONFIG", "GET", name]).await {
            Ok(Reply::Array(Some(items))) => match items.as_slice() {
                [_, Reply::Bulk(Some(value))] => Ok(value.clone()),
                _ => Err(format!("`{name}` is not reported")),
            },
            Ok(Reply::Error(e)) => Err(e),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

async fn read_line(stream: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Err(invalid("the connection closed"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn read_reply(stream: &mut BufReader<TcpStream>) -> std::io::Result<Reply> {
    let line = read_line(stream).await?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| invalid(format!("bad length `{rest}`")))
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Reply::Bulk(None),
            Ok(len) if len > MAX_BULK => return Err(invalid("a reply too large")),
            Ok(len) => {
                let mut data = vec![0; len + 2];
                stream.read_exact(&mut data).await?;
                data.truncate(len);
                Reply::Bulk(Some(String::from_utf8_lossy(&data).into_owned()))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Reply::Array(None),
            Ok(n) if n > 1024 => return Err(invalid("a reply too large")),
            Ok(n) => {
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(Box::pin(read_reply(stream)).await?);
                }
                Reply::Array(Some(items))
            }
        },
        _ => return Err(invalid(format!("not a RESP reply: `{line}`"))),
    })
}

/// Connects, authenticates when the URL carries credentials, and PINGs.
async fn connect(url: &Url) -> Result<Connection, String> {
    let host = url.host_str().ok_or("the URL names no host")?;
    let port = url.port().unwrap_or(6379);
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| e.to_string())?;
    let mut conn = Connection {
        stream: BufReader::new(stream),
    };
    if let Some(password) = url.password() {
        let user = url.username();
        let args: Vec<&str> = if user.is_empty() {
            vec!["AUTH", password]
        } else {
            vec!["AUTH", user, password]
        };
        match conn.command(&args).await.map_err(|e| e.to_string())? {
            Reply::Simple(_) => {}
            Reply::Error(e) => return Err(format!("AUTH refused: {e}")),
            other => return Err(format!("AUTH: unexpected reply {other:?}")),
        }
    }
    match conn.command(&["PING"]).await.map_err(|e| e.to_string())? {
        Reply::Simple(pong) if pong == "PONG" => Ok(conn),
        Reply::Error(e) => Err(format!("PING refused: {e}")),
        other => Err(format!("PING: unexpected reply {other:?}")),
    }
}

/// The broker and its persistence.
pub(super) async fn broker(raw_url: &str) -> Vec<Check> {
    let shown = redact_password(raw_url);
    let fix = "start Redis, or correct REPLYD_REDIS_URL (redis://[:password@]host:port)";
    let url = match Url::parse(raw_url) {
        Ok(url) if url.scheme() == "redis" => url,
        Ok(url) if url.scheme() == "rediss" => {
            return vec![Check::warn(
                Subject::Broker,
                format!("{shown}: not checked (doctor does not speak TLS to Redis)"),
                "check it with `redis-cli --tls PING` and `CONFIG GET appendonly`",
            )];
        }
        Ok(_) | Err(_) => {
            return vec![Check::fail(
                Subject::Broker,
                format!("`{shown}` is not a redis:// URL"),
                fix,
            )];
        }
    };
    let mut conn = match tokio::time::timeout(TIMEOUT, connect(&url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(why)) => {
            return vec![Check::fail(
                Subject::Broker,
                format!("cannot reach {shown}: {why}"),
                fix,
            )];
        }
        Err(_) => {
            return vec![Check::fail(
                Subject::Broker,
                format!(
                    "cannot reach {shown}: no answer within {}s",
                    TIMEOUT.as_secs()
                ),
                fix,
            )];
        }
    };
    let reachable = Check::pass(Subject::Broker, format!("{shown} answers PING"));
    let settings = tokio::time::timeout(TIMEOUT, async {
        let appendonly = conn.config_get("appendonly").await?;
        let fsync = conn.config_get("appendfsync").await?;
        Ok::<_, String>((appendonly, fsync))
    })
    .await
    .unwrap_or_else(|_| Err("no answer in time".into()));
    vec![reachable, persistence(settings)]
}

fn persistence(settings: Result<(String, String), String>) -> Check {
    let subject = Subject::BrokerPersistence;
    match settings {
        Err(why) => Check::warn(
            subject,
            format!("cannot read the AOF settings: {why}"),
            "check that append-only persistence is on in your Redis provider's settings",
        ),
        Ok((appendonly, _)) if appendonly != "yes" => Check::warn(
            subject,
            "AOF is off: a Redis restart loses the queued jobs (the outbox and the sweep recover \
             them, late)",
            "`CONFIG SET appendonly yes`, and `appendonly yes` in redis.conf to keep it",
        ),
        Ok((_, fsync)) if fsync == "no" => Check::warn(
            subject,
            "AOF is on, but appendfsync is `no`: the OS decides when writes reach the disk",
            "`CONFIG SET appendfsync everysec` (and in redis.conf)",
        ),
        Ok((_, fsync)) => Check::pass(subject, format!("AOF on (appendfsync {fsync})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::doctor::Status;

    #[test]
    fn persistence_passes_only_with_aof_that_reaches_the_disk() {
        let check = |a: &str, f: &str| persistence(Ok((a.into(), f.into()))).status;
        assert_eq!(check("yes", "everysec"), Status::Pass);
        assert_eq!(check("yes", "always"), Status::Pass);
        assert_eq!(check("yes", "no"), Status::Warn);
        assert_eq!(check("no", "everysec"), Status::Warn);
        assert_eq!(persistence(Err("refused".into())).status, Status::Warn);
    }

    #[tokio::test]
    async fn a_closed_port_fails_and_a_bad_url_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let checks = broker(&format!("redis://:pw@127.0.0.1:{port}")).await;
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, Status::Fail);
        assert!(checks[0].detail.contains("cannot reach"));
        assert!(!checks[0].detail.contains("pw"), "{}", checks[0].detail);
        assert_eq!(broker("http://x").await[0].status, Status::Fail);
    }
}
