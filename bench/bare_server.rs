//! Benchmark baseline: a bare axum server that takes the webhook body and answers 200, empty.
//!
//! Usage: `bare_server [ADDR]` (default `127.0.0.1:9090`). `GET /healthz` answers 200 so the
//! bench script can wait for it the same way it waits for `replyd serve`.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9090".to_string());
    let app = Router::new()
        .route("/webhook", post(|_body: Bytes| async { StatusCode::OK }))
        .route("/healthz", get(|| async { StatusCode::OK }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare_server listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
