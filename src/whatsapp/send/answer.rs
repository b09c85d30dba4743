//! Reading the Cloud API's answers: the success shapes, the error body, `Retry-After` (which the
//! gateway client reads too). Pure: bytes and header values in, values out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{Accepted, SendError};

pub(super) fn parse_accepted(body: &[u8]) -> Result<Accepted, SendError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SendError::BadResponse(format!("the Cloud API's answer is not JSON: {e}")))?;
    match value.pointer("/messages/0/id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(Accepted {
            message_id: id.to_owned(),
        }),
        // The body may list the recipient's number: describe it, never echo it.
        _ => Err(SendError::BadResponse(
            "no messages[0].id in the Cloud API's answer".into(),
        )),
    }
}

/// A read receipt is acknowledged with `{"success": true}`.
pub(super) fn parse_mark_read(body: &[u8]) -> Result<(), SendError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SendError::BadResponse(format!("the Cloud API's answer is not JSON: {e}")))?;
    match value.get("success").and_then(Value::as_bool) {
        Some(true) => Ok(()),
        _ => Err(SendError::BadResponse(
            "the Cloud API did not confirm the read receipt (no \"success\": true)".into(),
        )),
    }
}

/// The useful parts of `{error:{message, type, code, error_subcode?, error_data:{details}, fbtrace_id}}`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ApiErrorBody {
    pub code: Option<i64>,
    pub title: Option<String>,
    pub details: Option<String>,
    pub fbtrace_id: Option<String>,
}

pub(super) fn parse_error_body(body: &[u8]) -> ApiErrorBody {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return ApiErrorBody::default();
    };
    let Some(error) = value.get("error") else {
        return ApiErrorBody::default();
    };
    let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
    let code = match error.get("code") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    // `message` reads "(#131026) Message undeliverable"; keep the title after the code.
    let title = text("message").or_else(|| text("title")).map(|message| {
        match message.strip_prefix("(#").and_then(|m| m.split_once(") ")) {
            Some((_, rest)) if !rest.is_empty() => rest.to_owned(),
            _ => message,
        }
    });
    let details = match error.get("error_data") {
        Some(Value::Object(data)) => data.get("details").and_then(Value::as_str),
        Some(Value::String(details)) => Some(details.as_str()),
        _ => None,
    };
    ApiErrorBody {
        code,
        title,
        details: details.map(str::to_owned),
        fbtrace_id: text("fbtrace_id"),
    }
}

/// `Retry-After` as delay-seconds or an IMF-fixdate; `None` when it is neither.
pub(super) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7). The obsolete forms are ignored.
fn parse_imf_fixdate(value: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_weekday, rest) = value.split_once(", ")?;
    let [day, month, year, time, "GMT"] = rest.split(' ').collect::<Vec<_>>()[..] else {
        return None;
    };
    let day: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let year: i64 = year.parse().ok().filter(|_| year.len() == 4)?;
    let [h, m, s] = time.split(':').collect::<Vec<_>>()[..] else {
        return None;
    };
    let field = |f: &str, max: i64| f.parse::<i64>().ok().filter(|v| (0..=max).contains(v));
    let (h, m, s) = (field(h, 23)?, field(m, 59)?, field(s, 60)?);
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_for_code_title_details_and_trace() {
        let body = br#"{"error":{"message":"(#131026) Message undeliverable","type":"OAuthException",
            "code":131026,"error_data":{"messaging_product":"whatsapp","details":"Recipient cannot be reached"},
            "fbtrace_id":"AbC"}}"#;
        let parsed = parse_error_body(body);
        assert_eq!(parsed.code, Some(131026));
        assert_eq!(parsed.title.as_deref(), Some("Message undeliverable"));
        assert_eq!(
            parsed.details.as_deref(),
            Some("Recipient cannot be reached")
        );
        assert_eq!(parsed.fbtrace_id.as_deref(), Some("AbC"));
        let parsed = parse_error_body(br#"{"error":{"code":"190","message":"Token expired"}}"#);
        assert_eq!(
            (parsed.code, parsed.title.as_deref()),
            (Some(190), Some("Token expired"))
        );
        assert_eq!(
            parse_error_body(b"<html>bad gateway</html>"),
            ApiErrorBody::default()
        );
        assert_eq!(parse_error_body(br#"{"ok":true}"#), ApiErrorBody::default());
    }

    #[test]
    fn success_bodies_need_a_message_id() {
        let ok = br#"{"messaging_product":"whatsapp","contacts":[{"input":"1","wa_id":"1"}],"messages":[{"id":"wamid.X"}]}"#;
        assert_eq!(parse_accepted(ok).unwrap().message_id, "wamid.X");
        for bad in [
            &br#"{"messages":[]}"#[..],
            br#"{"messages":[{"id":""}]}"#,
            b"nope",
        ] {
            assert!(matches!(
                parse_accepted(bad),
                Err(SendError::BadResponse(_))
            ));
        }
    }

    #[test]
    fn read_receipts_need_success_true() {
        assert!(parse_mark_read(br#"{"success":true}"#).is_ok());
        for bad in [&br#"{"success":false}"#[..], br#"{}"#, b"ok"] {
            assert!(matches!(
                parse_mark_read(bad),
                Err(SendError::BadResponse(_))
            ));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let epoch_date = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(epoch_date)
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let now = epoch_date - Duration::from_secs(30);
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(date, now), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after(date, now + Duration::from_secs(99)),
            Some(Duration::ZERO)
        );
        for junk in [
            "soon",
            "-1",
            "1.5",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:00:00 GMT",
            "",
        ] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }
}
