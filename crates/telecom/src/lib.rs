//! The edge–core–cloud telecom system of seed 003 (spec: `telecom.md`).
//!
//! The seed's analysis, as pure functions over JSON inputs behind
//! `agora telecom …`:
//!
//! * [`rank`]: the bottleneck ranking, Σ w·(x − min)/(max − min), with
//!   suggestions;
//! * [`risk`]: the risk score, its category, the redundancy strategy it
//!   implies, and the failover order;
//! * [`select`]: the resource-aware choice of a node for a request;
//! * [`deadlock`]: cycles in a wait-for graph and the victims that break
//!   them.
//!
//! The system itself, as a protocol on `agora-core` ([`node`]): a
//! [`topology`] of nodes, links and replication groups; failure detection
//! by [`phi`] accrual, heartbeat loss windows and quorum votes; routing and
//! partition sides from link state ([`route`]); RPC with deadlines,
//! backoff and a retry budget ([`rpc`]); load balancing ([`balance`]); the
//! seed's Java interfaces as traits ([`api`]).

pub mod api;
pub mod balance;
pub mod causal;
pub mod commit;
pub mod data;
pub mod deadlock;
pub mod node;
pub mod ordering;
pub mod phi;
pub mod rank;
pub mod risk;
pub mod route;
pub mod rpc;
pub mod select;
pub mod topology;

/// An input error: where (`nodes[2].cpu_percent`) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.at, self.message)
        }
    }
}

impl std::error::Error for InputError {}

impl InputError {
    pub fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        InputError { at: at.into(), message: message.into() }
    }
}

/// The checks every input's list of entries shares: at least one entry
/// (unless `may_be_empty`), and ids that are non-empty and unique. `list`
/// names the list in errors (`nodes`), `purpose` what it is for.
pub fn check_ids<'a>(
    list: &str,
    ids: impl Iterator<Item = &'a str>,
    may_be_empty: bool,
    purpose: &str,
) -> Result<(), InputError> {
    let mut seen = std::collections::HashMap::new();
    for (i, id) in ids.enumerate() {
        let at = format!("{list}[{i}].id");
        if id.is_empty() {
            return Err(InputError::new(at, "empty id"));
        }
        if let Some(j) = seen.insert(id, i) {
            return Err(InputError::new(at, format!("{id:?} is also {list}[{j}]")));
        }
    }
    if seen.is_empty() && !may_be_empty {
        return Err(InputError::new(list, format!("no {list} {purpose}")));
    }
    Ok(())
}

/// `v` must be a finite number ≥ 0.
pub fn non_negative(at: impl FnOnce() -> String, v: f64) -> Result<(), InputError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(InputError::new(at(), format!("{v} is not a finite value ≥ 0")))
    }
}

/// Parses JSON into `T`, naming the path of a field that does not fit.
pub fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, InputError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        InputError { at: if at == "." { String::new() } else { at }, message: e.into_inner().to_string() }
    })
}
