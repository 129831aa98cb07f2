//! The node's HTTP endpoints (axum):
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/` | JSON: the node's endpoints, its protocol's too |
//! | GET | `/health` | 200 `ok` while the node can take work; 503 and why when not |
//! | GET | `/status` | JSON: node, protocol state, recent outputs, peers, faults |
//! | GET | `/metrics` | Prometheus text: the runtime's counters, then the protocol's readings |
//! | POST | `/input` | JSON body: one protocol input |
//! | GET, PUT | `/faults` | the transport fault layer (JSON) |
//!
//! Mutating endpoints (`POST /input`, `PUT /faults`) need
//! `Authorization: Bearer TOKEN` with the token of the cluster file's
//! `token_file` (compared in constant time); without a configured token
//! they refuse everyone. Reads are open unless `protect_reads` is set.
//! A refusal is 401 with a message saying what is missing, counted in
//! `agora_http_unauthorized_total` and logged with the client's address,
//! never with the token. A protocol's own endpoints ([`crate::api`]) need
//! the token for every method.

use crate::api::{Api, Caller, Endpoint};
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

/// The node's own endpoints, for `GET /`.
const ENDPOINTS: [Endpoint; 6] = [
    Endpoint { method: "GET", path: "/", what: "this list" },
    Endpoint {
        method: "GET",
        path: "/health",
        what: "200 `ok` while the node can take work, 503 and why when not: cut off, Byzantine, storage failing (never needs the token)",
    },
    Endpoint { method: "GET", path: "/status", what: "the node, its protocol's state, recent outputs, peers, faults" },
    Endpoint { method: "GET", path: "/metrics", what: "Prometheus text: the runtime's counters, then the protocol's readings" },
    Endpoint { method: "POST", path: "/input", what: "one protocol input (JSON); needs the token" },
    Endpoint { method: "GET, PUT", path: "/faults", what: "the transport fault layer (JSON); PUT needs the token" },
];

pub(crate) async fn serve<P: Protocol>(
    listener: TcpListener,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<LoopMsg<P>>,
    api: Option<Api<P>>,
    token: CancellationToken,
) {
    let mut index: Vec<Endpoint> = ENDPOINTS.to_vec();
    let mut own = Router::new();
    if let Some(api) = api {
        index.extend(api.endpoints);
        own = (api.routes)(Caller::new(tx.clone()))
            .route_layer(axum::middleware::from_fn_with_state(shared.clone(), authorize_always));
    }
    let index = Json(serde_json::json!({ "node": shared.cfg.name, "endpoints": index }));
    let app = Router::new()
        .route("/", get(move || async move { index }))
        .route("/status", get(status::<P>))
        .route("/metrics", get(metrics::<P>))
        .route("/input", axum::routing::post(input::<P>))
        .route("/faults", get(get_faults::<P>).put(put_faults::<P>))
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), authorize))
        // After the layer: always open, for readiness checks.
        .route("/health", get(health::<P>))
        .with_state(App { shared: shared.clone(), tx })
        .merge(own);
    let t = &shared.cfg.transport;
    let cap = crate::doors::file_handle_share(t.http_max_connections);
    let live = Arc::new(std::sync::Mutex::new(crate::doors::Oldest::new(cap)));
    let mut refused = crate::doors::Throttled::default();
    loop {
        let (stream, from) = tokio::select! {
            _ = token.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    crate::doors::accept_failed(&shared, "http", &mut refused, e).await;
                    continue;
                }
            },
        };
        // At the cap, the oldest connection makes room: clients that hold
        // connections open cannot lock out a new one (a health check).
        let (id, evicted, full) = live.lock().expect("live connections").admit();
        if full {
            shared.metrics.http_evicted.inc();
        }
        let (app, live) = (app.clone(), live.clone());
        let (stop, timeout) = (token.clone(), t.http_header_timeout);
        tokio::spawn(async move {
            tokio::select! {
                _ = evicted.cancelled() => {} // dropped at once: its handle is needed
                _ = async {
                    match tokio::time::timeout(timeout, opens_with_h2(&stream)).await {
                        Ok(false) => serve_http1(stream, from, app, timeout, stop).await,
                        Ok(true) => refuse_h2(stream).await,
                        Err(_) => {} // nothing sent within the header timeout: closed
                    }
                } => {}
            }
            live.lock().expect("live connections").remove(id);
        });
    }
}

/// Serves one HTTP/1.1 connection until it closes or the node stops.
async fn serve_http1(
    stream: tokio::net::TcpStream,
    from: SocketAddr,
    app: Router,
    timeout: std::time::Duration,
    stop: CancellationToken,
) {
    let service = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
        app,
        move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(from));
            req.map(axum::body::Body::new)
        },
    ));
    // The header timeout also bounds a kept-alive connection's idle wait
    // for its next request: a client that sends nothing, or a byte a
    // second, is closed within it.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(timeout);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(timeout, conn).await;
        }
    }
}

/// HTTP/2's client preface (RFC 9113, 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client opened with HTTP/2's preface (prior knowledge),
/// looked at without taking it off the socket.
async fn opens_with_h2(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 24];
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 || !H2_PREFACE.starts_with(&buf[..n]) {
            return false;
        }
        if n == buf.len() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await; // more of it on its way
    }
}

/// Tells an HTTP/2 client, in its own protocol, to use HTTP/1.1: the
/// server's preface (an empty SETTINGS frame), then GOAWAY with
/// HTTP_1_1_REQUIRED and a reason a person can read.
async fn refuse_h2(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const WHY: &[u8] = b"this node serves HTTP/1.1 only";
    let mut frames = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0]; // SETTINGS, no parameters
    let len = 8 + WHY.len() as u32;
    frames.extend_from_slice(&len.to_be_bytes()[1..]);
    frames.extend_from_slice(&[0x7, 0, 0, 0, 0, 0]); // GOAWAY on stream 0
    frames.extend_from_slice(&0u32.to_be_bytes()); // no stream was processed
    frames.extend_from_slice(&0xdu32.to_be_bytes()); // HTTP_1_1_REQUIRED
    frames.extend_from_slice(WHY);
    let _ = stream.write_all(&frames).await;
    let _ = stream.shutdown().await;
}

/// Every route but `/health` passes here: a mutating request (anything
/// but GET) needs the token, a read only with `protect_reads`.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD);
    if !mutating && !shared.cfg.protect_reads {
        return next.run(req).await;
    }
    authorize_always(State(shared), ConnectInfo(from), req, next).await
}

/// A protocol's own endpoints pass here: every method needs the token.
async fn authorize_always(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let why = match (&shared.cfg.control_token, req.headers().get(header::AUTHORIZATION)) {
        (None, _) => "this node has no control token configured ([security] token_file), so it takes no commands",
        (Some(_), None) => "missing `Authorization: Bearer TOKEN` (the token is in the cluster's token_file)",
        (Some(t), Some(h)) => match bearer(h.as_bytes()) {
            Some(given) if crate::security::token_matches(given, t.as_bytes()) => return next.run(req).await,
            Some(_) => "wrong token",
            None => "the Authorization header must be `Bearer TOKEN`",
        },
    };
    shared.metrics.http_unauthorized.inc();
    tracing::warn!(node = %shared.cfg.name, client = %from, "HTTP request refused: {why}");
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], format!("unauthorized: {why}\n")).into_response()
}

/// The credentials of `Bearer CREDENTIALS` (the scheme in any case, RFC 9110).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| rest.trim_ascii_start())
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

/// 200 `ok` while the node can take work; 503 with the reason when its
/// storage fails, its event loop does not answer within a second, or the
/// protocol says it should not be sent work ([`Protocol::health`]).
async fn health<P: Protocol>(State(app): State<App<P>>) -> Response {
    let sick = |why: String| (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    if app.shared.storage_failing.load(std::sync::atomic::Ordering::Relaxed) {
        return sick("storage: the last commit to the disk failed".into());
    }
    let (reply, answer) = oneshot::channel();
    if app.tx.send(LoopMsg::Health(reply)).is_err() {
        return unavailable();
    }
    match tokio::time::timeout(std::time::Duration::from_secs(1), answer).await {
        Ok(Ok(Ok(()))) => "ok\n".into_response(),
        Ok(Ok(Err(why))) => sick(why),
        Ok(Err(_)) => unavailable(),
        Err(_) => sick("the event loop did not answer within 1 s".into()),
    }
}

/// The runtime's metrics and the protocol's readings; without the latter
/// when the event loop does not answer within a second (the runtime's own
/// are then what tells why).
async fn metrics<P: Protocol>(State(app): State<App<P>>) -> Response {
    let (reply, answer) = oneshot::channel();
    let readings = match app.tx.send(LoopMsg::Readings(reply)) {
        Ok(()) => tokio::time::timeout(std::time::Duration::from_secs(1), answer).await.ok().and_then(Result::ok),
        Err(_) => None,
    };
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.shared.metrics.encode(readings.unwrap_or_default()),
    )
        .into_response()
}

async fn input<P: Protocol>(State(app): State<App<P>>, body: Bytes) -> Response {
    let input: P::Input = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("the input does not parse: {}\n", input_error(&body, e)))
                .into_response()
        }
    };
    let (verdict, answer) = oneshot::channel();
    if app.tx.send(LoopMsg::Input(input, Some(verdict))).is_err() {
        return unavailable();
    }
    match answer.await {
        Ok(Ok(())) => (StatusCode::ACCEPTED, "accepted\n").into_response(),
        Ok(Err(why)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, format!("this node cannot act on the input: {why}\n")).into_response()
        }
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

/// What is wrong with an input: serde's message, or — for an object with
/// several keys, where serde only says it expected the end — which keys.
fn input_error(body: &[u8], e: serde_json::Error) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) if m.len() > 1 => {
            let keys: Vec<&str> = m.keys().map(String::as_str).collect();
            format!("an input is an object with one key (the service or variant it is for), not {}", keys.join(", "))
        }
        _ => e.to_string(),
    }
}
