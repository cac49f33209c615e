//! The physical floor for the coordinator bench (`scripts/bench-coordinator`): the same HTTP
//! stack as the coordinator (tokio with two workers, hyper, axum), with handlers that read the
//! body and answer a fixed JSON document without looking at anything. The load generator
//! (`load`) drives it exactly as it drives the coordinator, so the difference between the two
//! is the coordinator's own work: authentication, validation, lease rules and the store.
//!
//! Usage: `floor <listen address>`.

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

async fn answer(body: Bytes) -> impl IntoResponse {
    // Touch the body as a real handler would, so an unread request is not cheaper.
    let _ = std::hint::black_box(body.len());
    (
        [(CONTENT_TYPE, "application/json")],
        r#"{"lease":{"id":"cbx_000000000000","slug":"floor","state":"active"},"run":{"id":"run_000000000000"}}"#,
    )
}

fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18500".to_owned());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async {
            let app = Router::new().fallback(answer);
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            axum::serve(listener, app).await
        })
}
