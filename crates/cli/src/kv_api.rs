//! The telecom system's client API on a real node (`agora node`): a
//! key–value request over HTTP becomes a request of the node's client
//! service, served by the group's replicas as any request of the workload
//! — retried, voted, its data verified — and answered when it ends.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/kv/{group}/{key}` | | the value and its version |
//! | PUT | `/kv/{group}/{key}` | the value | the value written and its version |
//! | POST | `/kv/{group}/{key}/cas` | `{"expected", "value"}` | written, or 409 with the value found |
//!
//! `group` is a group's service name (`rpc`) or its index. Every endpoint
//! needs the control token. Errors are JSON `{"error", …}`: 404 for an
//! unknown group, 413 for a value over [`MAX_VALUE`], 422 for a write on a
//! node that is not a client (it would carry no writer's seal; such a node
//! serves reads), 503 with the cause when the request failed, 504 when it
//! did not end in time.

use agora_net::{Api, CallError, Caller, Endpoint};
use agora_telecom::data::kv::{Op, Reply};
use agora_telecom::node::{client, Cause, Input, Node, Output};
use agora_telecom::topology::Topology;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The largest value a request may write (it travels in one frame to
/// every replica, with its seals).
pub const MAX_VALUE: usize = 64 * 1024;
/// The longest key.
const MAX_KEY: usize = 256;
/// How long a request may take before the caller gets 504 (its own
/// attempts and retries end well before).
const WITHIN: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct KvState {
    topo: Arc<Topology>,
    caller: Caller<Node>,
}

/// The `/kv` endpoints of a telecom node.
pub fn api(topo: Arc<Topology>) -> Api<Node> {
    Api {
        endpoints: vec![
            Endpoint { method: "GET", path: "/kv/{group}/{key}", what: "read a key: its value and version" },
            Endpoint { method: "PUT", path: "/kv/{group}/{key}", what: "write a key (body: the value)" },
            Endpoint {
                method: "POST",
                path: "/kv/{group}/{key}/cas",
                what: "compare-and-set (JSON {\"expected\", \"value\"}); 409 with the value found if it differs",
            },
        ],
        routes: Box::new(move |caller| {
            Router::new()
                .route("/kv/{group}/{key}", get(read).put(write))
                .route("/kv/{group}/{key}/cas", post(cas))
                .with_state(KvState { topo, caller })
        }),
    }
}

fn error(code: StatusCode, message: impl Into<String>, extra: Value) -> Response {
    let mut body = json!({ "error": message.into() });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    (code, Json(body)).into_response()
}

/// The group's index, from its service name or its index.
fn group_of(topo: &Topology, name: &str) -> Option<u16> {
    match topo.groups.iter().position(|g| g.service == name) {
        Some(i) => Some(i as u16),
        None => name.parse::<u16>().ok().filter(|&i| (i as usize) < topo.groups.len()),
    }
}

/// A value as JSON: text if it is UTF-8, else base64.
fn value_json(v: &[u8]) -> Value {
    use base64::Engine;
    match std::str::from_utf8(v) {
        Ok(s) => json!({ "value": s }),
        Err(_) => json!({ "value_base64": base64::engine::general_purpose::STANDARD.encode(v) }),
    }
}

/// Sends `op` on `key` of `group` through the node's client; answers when it ends.
async fn request(s: KvState, group: String, key: String, op: Op) -> Response {
    let Some(g) = group_of(&s.topo, &group) else {
        let names: Vec<&str> = s.topo.groups.iter().map(|g| g.service.as_str()).collect();
        let why = format!("no group {group:?}; the groups are {}", names.join(", "));
        return error(StatusCode::NOT_FOUND, why, json!({}));
    };
    if key.is_empty() || key.len() > MAX_KEY {
        return error(StatusCode::BAD_REQUEST, format!("a key has 1 to {MAX_KEY} bytes, not {}", key.len()), json!({}));
    }
    let written = match &op {
        Op::Read => 0,
        Op::Write(v) | Op::Append(v) => v.len(),
        Op::Cas { expected, value } => expected.len().max(value.len()),
    };
    if written > MAX_VALUE {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a value has at most {MAX_VALUE} bytes, not {written}"),
            json!({}),
        );
    }
    let cas = matches!(op, Op::Cas { .. });
    let make = |call| Input::Client(client::Input::Call { call, group: g, key: key.clone(), op });
    let (ok, reply, cause, attempts, latency_us) = match s.caller.call(make, WITHIN).await {
        Ok(Output::Client(client::Output::Done { ok, reply, cause, attempts, latency_us, .. })) => {
            (ok, reply, cause, attempts, latency_us)
        }
        Ok(other) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("unexpected answer {other:?}"), json!({}))
        }
        Err(CallError::Refused(why)) => return error(StatusCode::UNPROCESSABLE_ENTITY, why, json!({})),
        Err(e @ CallError::Timeout(_)) => return error(StatusCode::GATEWAY_TIMEOUT, e.to_string(), json!({})),
        Err(e @ CallError::Stopping) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), json!({})),
    };
    let meta = json!({ "group": s.topo.groups[g as usize].service, "key": key, "attempts": attempts,
                       "latency_ms": latency_us as f64 / 1e3 });
    match (ok, reply) {
        (true, Some(Reply { applied, entry })) => {
            let mut body = meta;
            body["version"] = entry.version.into();
            if let (Value::Object(b), Value::Object(v)) = (&mut body, value_json(&entry.value)) {
                b.extend(v);
            }
            if cas {
                body["applied"] = applied.into();
            }
            let code = if cas && !applied { StatusCode::CONFLICT } else { StatusCode::OK };
            (code, Json(body)).into_response()
        }
        _ => {
            let cause = cause.unwrap_or(Cause::NoReplica);
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the request failed: {}", cause_text(cause)),
                json!({ "cause": cause.name(), "attempts": attempts }),
            )
        }
    }
}

/// What a failure's cause means, for a person.
fn cause_text(c: Cause) -> &'static str {
    match c {
        Cause::NoReplica => "no replica of the group is reachable and trusted",
        Cause::BelowQuorum => "too few replicas of the group are reachable, or they did not agree",
        Cause::MinoritySide => "this node is on the minority side of a partition",
        Cause::Deadline => "no answer before the deadline",
        Cause::RetryBudget => "the retry budget refused another attempt",
        Cause::Shed => "shed by the group's cascade level",
        Cause::Admission => "the replicas' queues are full",
        Cause::Forged => "every answer failed verification (forged data)",
    }
}

async fn read(State(s): State<KvState>, Path((group, key)): Path<(String, String)>) -> Response {
    request(s, group, key, Op::Read).await
}

async fn write(State(s): State<KvState>, Path((group, key)): Path<(String, String)>, body: Bytes) -> Response {
    request(s, group, key, Op::Write(body.to_vec())).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    expected: String,
    value: String,
}

async fn cas(State(s): State<KvState>, Path((group, key)): Path<(String, String)>, body: Bytes) -> Response {
    let b: CasBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body must be JSON {{\"expected\": TEXT, \"value\": TEXT}}: {e}"),
                json!({}),
            )
        }
    };
    request(s, group, key, Op::Cas { expected: b.expected.into_bytes(), value: b.value.into_bytes() }).await
}
