//! The node's HTTP endpoints (axum):
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/health` | `ok` while the node runs |
//! | GET | `/status` | JSON: node, protocol state, recent outputs, peers, faults |
//! | GET | `/metrics` | Prometheus text |
//! | POST | `/input` | JSON body: one protocol input |
//! | GET, PUT | `/faults` | the transport fault layer (JSON) |
//!
//! Mutating endpoints (`POST /input`, `PUT /faults`) need
//! `Authorization: Bearer TOKEN` with the token of the cluster file's
//! `token_file` (compared in constant time); without a configured token
//! they refuse everyone. Reads are open unless `protect_reads` is set.
//! A refusal is 401 with a message saying what is missing, counted in
//! `agora_http_unauthorized_total` and logged with the client's address,
//! never with the token.

use crate::faults::FaultLayer;
use crate::shared::{LoopMsg, Shared};
use agora_core::Protocol;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

struct App<P: Protocol> {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<LoopMsg<P>>,
}

impl<P: Protocol> Clone for App<P> {
    fn clone(&self) -> Self {
        App { shared: self.shared.clone(), tx: self.tx.clone() }
    }
}

pub(crate) async fn serve<P: Protocol>(
    listener: TcpListener,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<LoopMsg<P>>,
    token: CancellationToken,
) {
    let app = Router::new()
        .route("/status", get(status::<P>))
        .route("/metrics", get(metrics::<P>))
        .route("/input", axum::routing::post(input::<P>))
        .route("/faults", get(get_faults::<P>).put(put_faults::<P>))
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), authorize))
        // After the layer: always open, for readiness checks.
        .route("/health", get(|| async { "ok\n" }))
        .with_state(App { shared: shared.clone(), tx });
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(async move { token.cancelled().await }).await {
        tracing::warn!(node = %shared.cfg.name, "HTTP server failed: {e}");
    }
}

/// Every route but `/health` passes here: a mutating request (anything
/// but GET) needs the token, a read only with `protect_reads`.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let mutating = req.method() != Method::GET;
    if !mutating && !shared.cfg.protect_reads {
        return next.run(req).await;
    }
    let why = match (&shared.cfg.control_token, req.headers().get(header::AUTHORIZATION)) {
        (None, _) => "this node has no control token configured ([security] token_file), so it takes no commands",
        (Some(_), None) => "missing `Authorization: Bearer TOKEN` (the token is in the cluster's token_file)",
        (Some(t), Some(h)) => match h.as_bytes().strip_prefix(b"Bearer ") {
            Some(given) if crate::security::token_matches(given, t.as_bytes()) => return next.run(req).await,
            Some(_) => "wrong token",
            None => "the Authorization header must be `Bearer TOKEN`",
        },
    };
    shared.metrics.http_unauthorized.inc();
    tracing::warn!(node = %shared.cfg.name, client = %from, "HTTP request refused: {why}");
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], format!("unauthorized: {why}\n")).into_response()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the node is stopping\n").into_response()
}

async fn status<P: Protocol>(State(app): State<App<P>>) -> Response {
    let (reply, answer) = oneshot::channel();
    if app.tx.send(LoopMsg::Status(reply)).is_err() {
        return unavailable();
    }
    match answer.await {
        Ok(v) => Json(v).into_response(),
        Err(_) => unavailable(),
    }
}

async fn metrics<P: Protocol>(State(app): State<App<P>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.shared.metrics.encode(),
    )
        .into_response()
}

async fn input<P: Protocol>(State(app): State<App<P>>, body: Bytes) -> Response {
    let input: P::Input = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("the input does not parse: {e}\n")).into_response(),
    };
    match app.tx.send(LoopMsg::Input(input)) {
        Ok(()) => (StatusCode::ACCEPTED, "accepted\n").into_response(),
        Err(_) => unavailable(),
    }
}

async fn get_faults<P: Protocol>(State(app): State<App<P>>) -> Json<FaultLayer> {
    Json(app.shared.faults.lock().expect("fault layer lock").clone())
}

async fn put_faults<P: Protocol>(State(app): State<App<P>>, body: Bytes) -> Response {
    let layer: FaultLayer = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("the fault layer does not parse: {e}\n")).into_response(),
    };
    if let Err(e) = layer.validate(app.shared.cfg.peers.len()) {
        return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
    }
    tracing::info!(node = %app.shared.cfg.name, faults = ?layer, "fault layer changed");
    *app.shared.faults.lock().expect("fault layer lock") = layer.clone();
    Json(layer).into_response()
}
