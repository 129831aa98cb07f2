//! A protocol's own HTTP endpoints: calls answered by outputs, behind the
//! token for every method, listed at `GET /`.

mod common;

use agora_core::{Io, Message, NodeId, Protocol};
use agora_net::{Api, CallError, Caller, Endpoint};
use axum::extract::{Path, State};
use common::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Doubles a number a little later (an answer that is not immediate).
struct Doubler;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
enum Msg {}
impl Message for Msg {
    fn kind(&self) -> &'static str {
        match *self {}
    }
}

#[derive(Debug, Deserialize)]
enum Input {
    Double { call: u64, n: u64 },
}

#[derive(Clone, Debug, Serialize)]
enum Output {
    Doubled {
        call: u64,
        n: u64,
    },
    /// An output that answers no call.
    Noise,
}

impl Protocol for Doubler {
    type Msg = Msg;
    type Timer = (u64, u64);
    type Input = Input;
    type Output = Output;
    fn on_start(&mut self, _io: &mut Io<'_, Self>) {}
    fn on_message(&mut self, _from: NodeId, msg: Msg, _io: &mut Io<'_, Self>) {
        match msg {}
    }
    fn on_timer(&mut self, (call, n): (u64, u64), io: &mut Io<'_, Self>) {
        io.output(Output::Noise);
        io.output(Output::Doubled { call, n: 2 * n });
    }
    fn on_input(&mut self, Input::Double { call, n }: Input, io: &mut Io<'_, Self>) {
        io.set_timer(Duration::from_millis(20), (call, n));
    }
    fn check_input(&self, Input::Double { n, .. }: &Input) -> Result<(), String> {
        if *n == 13 {
            return Err("13 is not doubled here".into());
        }
        Ok(())
    }
    fn answers(o: &Output) -> Option<u64> {
        match o {
            Output::Doubled { call, .. } => Some(*call),
            Output::Noise => None,
        }
    }
}

async fn double(State(c): State<Caller<Doubler>>, Path(n): Path<u64>) -> (axum::http::StatusCode, String) {
    match c.call(|call| Input::Double { call, n }, Duration::from_secs(5)).await {
        Ok(Output::Doubled { n, .. }) => (axum::http::StatusCode::OK, n.to_string()),
        Ok(Output::Noise) => unreachable!("noise answers no call"),
        Err(CallError::Refused(why)) => (axum::http::StatusCode::UNPROCESSABLE_ENTITY, why),
        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn api() -> Api<Doubler> {
    Api {
        endpoints: vec![Endpoint { method: "GET", path: "/double/{n}", what: "2n, a little later" }],
        routes: Box::new(|c| axum::Router::new().route("/double/{n}", axum::routing::get(double)).with_state(c)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_answered_by_their_outputs_behind_the_token() {
    let peers = entries(1);
    let node = agora_net::start_with(node_cfg(&peers, 0), Doubler, Some(api())).await.unwrap();
    let h = peers[0].http.unwrap();
    // Many calls at once: each gets its own answer.
    let calls: Vec<_> = (0..20u64)
        .filter(|&n| n != 13)
        .map(|n| tokio::spawn(async move { (n, http(h, "GET", format_path(n), String::new()).await) }))
        .collect();
    for c in calls {
        let (n, (code, body)) = c.await.unwrap();
        assert_eq!((code, body), (200, (2 * n).to_string()));
    }
    // A read of the protocol's endpoints needs the token too.
    let (code, body) = http_as(h, "GET", "/double/4", String::new(), None).await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = http_as(h, "GET", "/double/4", String::new(), Some("wrong")).await;
    assert!(code == 401 && body.contains("wrong token"), "{code} {body}");
    // The protocol refuses what it cannot act on, saying why.
    let (code, body) = http(h, "GET", "/double/13", String::new()).await;
    assert!(code == 422 && body.contains("13 is not doubled"), "{code} {body}");
    // The index lists the node's endpoints and the protocol's (open to reads).
    let index = get(h, "/").await;
    let paths: Vec<&str> = index["endpoints"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    for p in ["/", "/health", "/status", "/metrics", "/input", "/faults", "/double/{n}"] {
        assert!(paths.contains(&p), "{p} missing from {index}");
    }
    node.stop().await;
}

/// `/double/N` as a static path for the test client.
fn format_path(n: u64) -> &'static str {
    Box::leak(format!("/double/{n}").into_boxed_str())
}
