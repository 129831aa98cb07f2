//! Allocation instances: providers with capacities, recipients with needs,
//! and the edges between them with mutual recognition (MR) and an optional
//! mutual-desire cap. JSON or TOML with the same fields:
//!
//! ```json
//! {"providers":  [{"id": "P1", "capacity": 300}],
//!  "recipients": [{"id": "R1", "need": 500}],
//!  "edges":      [{"provider": "P1", "recipient": "R1", "mr": 0.6, "desire": 250}]}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub providers: Vec<Provider>,
    pub recipients: Vec<Recipient>,
    pub edges: Vec<Edge>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub id: String,
    pub capacity: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub id: String,
    pub need: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    pub provider: String,
    pub recipient: String,
    pub mr: f64,
    /// Mutual-desire cap on this edge; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desire: Option<f64>,
}

/// An instance checked and indexed: providers and recipients by position,
/// edges grouped by provider.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub capacity: Vec<f64>,
    pub need: Vec<f64>,
    /// (provider, recipient, mr, desire cap — `f64::INFINITY` if none), sorted by provider.
    pub edges: Vec<(usize, usize, f64, f64)>,
}

/// What is wrong with an instance, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceError {
    pub entry: String,
    pub message: String,
}

impl std::fmt::Display for InstanceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.entry, self.message)
    }
}

impl std::error::Error for InstanceError {}

fn err(entry: String, message: impl Into<String>) -> InstanceError {
    InstanceError { entry, message: message.into() }
}

fn amount(entry: &str, field: &str, v: f64) -> Result<(), InstanceError> {
    if !v.is_finite() || v < 0.0 {
        return Err(err(entry.to_string(), format!("{field} {v} must be a finite number ≥ 0")));
    }
    Ok(())
}

impl Instance {
    /// Parses JSON (text starting with `{`) or TOML.
    pub fn parse(text: &str) -> Result<Instance, InstanceError> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| err(format!("line {}", e.line()), format!("not an instance: {e}")))
        } else {
            toml::from_str(text).map_err(|e| err("instance".into(), format!("not an instance: {e}")))
        }
    }

    /// Checks every entry and indexes the instance. Rejects, naming the
    /// entry: negative or non-finite numbers, MR outside (0, 1], unknown ids,
    /// duplicate ids or edges.
    pub fn network(&self) -> Result<Network, InstanceError> {
        let mut pid = BTreeMap::new();
        for (i, p) in self.providers.iter().enumerate() {
            let e = format!("providers[{i}] ({})", p.id);
            amount(&e, "capacity", p.capacity)?;
            if pid.insert(p.id.as_str(), i).is_some() {
                return Err(err(e, format!("duplicate provider id {:?}", p.id)));
            }
        }
        let mut rid = BTreeMap::new();
        for (i, r) in self.recipients.iter().enumerate() {
            let e = format!("recipients[{i}] ({})", r.id);
            amount(&e, "need", r.need)?;
            if rid.insert(r.id.as_str(), i).is_some() {
                return Err(err(e, format!("duplicate recipient id {:?}", r.id)));
            }
        }
        let mut seen = BTreeSet::new();
        let mut edges = Vec::with_capacity(self.edges.len());
        for (i, e) in self.edges.iter().enumerate() {
            let at = format!("edges[{i}] ({} → {})", e.provider, e.recipient);
            let p = *pid
                .get(e.provider.as_str())
                .ok_or_else(|| err(at.clone(), format!("unknown provider {:?}", e.provider)))?;
            let r = *rid
                .get(e.recipient.as_str())
                .ok_or_else(|| err(at.clone(), format!("unknown recipient {:?}", e.recipient)))?;
            if !(e.mr > 0.0 && e.mr <= 1.0) {
                return Err(err(at, format!("mr {} is outside (0, 1]", e.mr)));
            }
            if let Some(d) = e.desire {
                amount(&at, "desire", d)?;
            }
            if !seen.insert((p, r)) {
                return Err(err(at, "duplicate edge"));
            }
            edges.push((p, r, e.mr, e.desire.unwrap_or(f64::INFINITY)));
        }
        edges.sort_by_key(|e| (e.0, e.1));
        Ok(Network {
            capacity: self.providers.iter().map(|p| p.capacity).collect(),
            need: self.recipients.iter().map(|r| r.need).collect(),
            edges,
        })
    }
}
