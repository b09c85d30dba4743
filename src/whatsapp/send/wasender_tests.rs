//! Reading the gateway's answers, and its URLs. (Against the fake: `tools::fake_cloud_api`.)

use super::*;

fn refusal(http_status: u16, body: &str) -> SendError {
    gateway_error(Refusal {
        http_status,
        retry_after: None,
        body: body.as_bytes(),
    })
}

#[test]
fn the_documented_success_shape_is_accepted_with_its_msg_id() {
    let ok =
        br#"{"success":true,"data":{"msgId":100000,"jid":"+123456789","status":"in_progress"}}"#;
    assert_eq!(parse_accepted(ok).unwrap().message_id, "100000");
    let as_string = br#"{"success":true,"data":{"msgId":"abc"}}"#;
    assert_eq!(parse_accepted(as_string).unwrap().message_id, "abc");
    for bad in [
        &br#"{"success":false,"message":"nope"}"#[..],
        br#"{"success":true,"data":{"jid":"+1"}}"#,
        br#"{"success":true,"data":{"msgId":""}}"#,
        br#"{"data":{"msgId":1}}"#,
        b"<html>",
    ] {
        assert!(matches!(
            parse_accepted(bad),
            Err(SendError::BadResponse(_))
        ));
    }
}

#[test]
fn error_bodies_give_title_details_and_retry_after() {
    let error = refusal(
        422,
        r#"{"success":false,"message":"The to field is required.",
            "errors":{"to":["The to field is required."],"text":["Too long.","Empty."]}}"#,
    );
    let SendError::Api {
        provider,
        http_status,
        code,
        title,
        details,
        retry_after,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        (*provider, *http_status, *code),
        (Provider::Wasender, 422, None)
    );
    assert_eq!(title.as_deref(), Some("The to field is required."));
    assert_eq!(
        details.as_deref(),
        Some("text: Too long.; text: Empty.; to: The to field is required.")
    );
    assert_eq!(*retry_after, None);
    assert_eq!(
        error.to_string(),
        "WASender gateway answered HTTP 422: The to field is required. \
         (text: Too long.; text: Empty.; to: The to field is required.)"
    );
    assert_eq!(error.code_label(), "http_422");

    // The documented 429 has no `success` key, only `message` and `retry_after`.
    let limited = refusal(
        429,
        r#"{"message":"You are on a free trial. You can only send 1 message every 1 minute.","retry_after":60}"#,
    );
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(60)));
    let header_wins = gateway_error(Refusal {
        http_status: 429,
        retry_after: Some(Duration::from_secs(2)),
        body: br#"{"retry_after":60}"#,
    });
    assert_eq!(header_wins.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(
        refusal(429, r#"{"retry_after":"1.5"}"#).retry_after(),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(refusal(429, r#"{"retry_after":-3}"#).retry_after(), None);
    let bare = refusal(502, "<html>bad gateway</html>");
    assert_eq!(bare.to_string(), "WASender gateway answered HTTP 502");
}

#[test]
fn session_status_and_message_info_answers() {
    assert_eq!(
        parse_session_status(br#"{"status":"connected"}"#).unwrap(),
        SessionStatus::Connected
    );
    assert_eq!(
        parse_session_status(br#"{"status":"NEED_SCAN"}"#).unwrap(),
        SessionStatus::NotConnected("need_scan".into())
    );
    assert!(parse_session_status(br#"{}"#).is_err());

    let info = br#"{"success":true,"data":{"remoteJid":"1@s.whatsapp.net","id":"EN82FV",
        "msgId":100000,"key":{"id":"EN82FV","fromMe":true,"remoteJid":"1@s.whatsapp.net"},
        "messageTimestamp":"1751297488","status":2}}"#;
    assert_eq!(
        parse_message_info(info).unwrap(),
        SentMessageInfo {
            msg_id: "100000".into(),
            key_id: Some("EN82FV".into()),
            status: Some(2),
        }
    );
    let queued = br#"{"success":true,"data":{"msgId":7,"status":1}}"#;
    assert_eq!(parse_message_info(queued).unwrap().key_id, None);
    assert!(parse_message_info(br#"{"success":false,"message":"x"}"#).is_err());
}

#[test]
fn urls_sit_under_api_whatever_the_base_looks_like() {
    for base in [
        "https://gw.example",
        "https://gw.example/",
        "https://gw.example/api",
        "https://gw.example/api/",
    ] {
        let client = WasenderClient::new(base, Duration::from_secs(1));
        assert_eq!(
            client.url(&["send-message"]).unwrap().as_str(),
            "https://gw.example/api/send-message",
            "{base}"
        );
    }
    let client = WasenderClient::new("http://h/prefix", Duration::from_secs(1));
    assert_eq!(
        client.url(&["messages", "7/x", "info"]).unwrap().as_str(),
        "http://h/prefix/api/messages/7%2Fx/info"
    );
    let broken = WasenderClient::new("not a url", Duration::from_secs(1));
    assert!(matches!(
        broken.url(&["status"]),
        Err(SendError::NotSent(_))
    ));
}
