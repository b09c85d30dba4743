//! No empty secret ever authenticates anything: a webhook signed with the empty key, an empty
//! bearer token, an empty verify token are all refused when the secret they would match is unset.

use replyd::secret::Secret;
use replyd::whatsapp::signature;

use crate::fixtures::*;
use crate::helpers::*;

#[tokio::test]
async fn without_an_app_secret_a_body_signed_with_the_empty_key_is_refused_and_not_stored() {
    let app = spawn_app_with(|c| c.app_secret = Secret::default()).await;
    let body = text_notification("wamid.EMPTY.1", "signed with nothing");
    let empty_key = signature::sign(b"", &body);
    let r = app.post_webhook_with(body.clone(), Some(&empty_key)).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.text().await.unwrap().contains("REPLYD_APP_SECRET"),
        "the refusal says how to fix it"
    );
    // Nor does the escaped form or no header at all get through.
    let unicode = text_notification("wamid.EMPTY.2", "äöå");
    let escaped_sig = signature::sign(b"", &signature::escape_unicode(&unicode).unwrap());
    assert_eq!(
        app.post_webhook_with(unicode, Some(&escaped_sig))
            .await
            .status(),
        401
    );
    assert_eq!(app.post_webhook_with(body, None).await.status(), 401);

    let summary = app.summary().await;
    assert_eq!(summary["inbound"], 0, "{summary}");
    assert_eq!(summary["dead_letters"], 0, "{summary}");
    assert!(app.message("wamid.EMPTY.1").await.is_none());
    assert_eq!(
        app.metric(r#"replyd_webhooks_rejected_total{reason="secret_unset"}"#)
            .await,
        3.0
    );
    let spooled = std::fs::read_dir(&app.config.spool_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                // The owner's lock file is not a spooled payload.
                .filter(|e| e.file_name() != "spool.lock")
                .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(spooled, 0, "nothing spooled either");
}

#[tokio::test]
async fn without_an_admin_token_an_empty_bearer_is_refused() {
    let app = spawn_app_with(|c| c.admin_token = Secret::default()).await;
    for value in ["Bearer ", "Bearer", "bearer  ", ""] {
        let r = app
            .client
            .get(format!("{}/api/v1/summary", app.base))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{value:?}");
    }
}

#[tokio::test]
async fn without_a_verify_token_an_empty_hub_verify_token_never_matches() {
    let app = spawn_app_with(|c| c.verify_token = Secret::default()).await;
    assert_eq!(
        app.handshake("subscribe", "", "challenge").await.status(),
        403
    );
    let bare = app
        .client
        .get(format!(
            "{}/webhook?hub.mode=subscribe&hub.verify_token=&hub.challenge=c",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 403);
}

#[tokio::test]
async fn without_a_wasender_secret_an_empty_header_finds_no_endpoint() {
    let app = spawn_app_with(|c| {
        c.wasender_secret = Secret::default();
        c.wasender_session_id = None;
    })
    .await;
    assert_eq!(
        app.post_wasender(b"{}".to_vec(), Some("")).await.status(),
        404
    );
    assert_eq!(app.post_wasender(b"{}".to_vec(), None).await.status(), 404);
    assert_eq!(app.summary().await["inbound"], 0);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = app
            .client
            .get(format!("{}/api/v1/summary", app.base))
            .header("authorization", format!("{scheme} {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let basic = app
        .client
        .get(format!("{}/api/v1/summary", app.base))
        .header("authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
}
