//! What the clients of a run did to the data: each request from its issue
//! to its end, the per-group histories in the EDN that `agora history
//! check --model kv` reads, their verdicts, and the answers no honest
//! replica could have given.

use agora_core::{NodeId, Time};
use agora_sim::Sim;
use agora_telecom::data::kv::{Op, Reply};
use agora_telecom::data::workload::tokens;
use agora_telecom::node::{client, Cause, Node, Output};
use agora_telecom::topology::Topology;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::time::Duration;

/// One request of a run: issued by `client` at `issued`.
#[derive(Clone, Debug)]
pub struct Request {
    pub client: NodeId,
    pub id: u64,
    pub group: u16,
    pub key: String,
    pub op: Op,
    pub issued: Time,
    pub end: Option<End>,
}

#[derive(Clone, Debug)]
pub struct End {
    pub at: Time,
    /// The reply the client accepted; None: the request failed.
    pub reply: Option<Reply>,
    /// Whether an attempt went out (a failed write may then have taken effect).
    pub sent: bool,
    /// Why it failed.
    pub cause: Option<Cause>,
}

/// Where a history event sits: request index and whether it is the end.
type Event = (usize, bool);

/// The requests of a finished run in the order they were issued, and the
/// run's events (issues and ends) in the order they happened.
pub fn requests(sim: &Sim<Node>) -> (Vec<Request>, Vec<Event>) {
    requests_from(sim.outputs().iter().filter_map(|o| match &o.output {
        Output::Client(c) => Some((o.node, o.at, c)),
        _ => None,
    }))
}

/// [`requests`] of the clients' outputs (node, time, output) in the order
/// they happened: a simulated run's, or a real run's output logs merged
/// ([`real_requests`]).
pub fn requests_from<'a>(
    outputs: impl IntoIterator<Item = (NodeId, Time, &'a client::Output)>,
) -> (Vec<Request>, Vec<Event>) {
    let mut reqs = Vec::new();
    let mut events = Vec::new();
    let mut index: HashMap<(NodeId, u64), usize> = HashMap::new();
    for (node, at, output) in outputs {
        match output {
            client::Output::Issued { id, group, key, op } => {
                index.insert((node, *id), reqs.len());
                events.push((reqs.len(), false));
                reqs.push(Request {
                    client: node,
                    id: *id,
                    group: *group,
                    key: key.clone(),
                    op: op.clone(),
                    issued: at,
                    end: None,
                });
            }
            client::Output::Done { id, reply, sent, cause, .. } => {
                // Ids carry the client's incarnation, so they are unique;
                // an end is taken once all the same.
                if let Some(&i) = index.get(&(node, *id)) {
                    if reqs[i].end.is_none() {
                        reqs[i].end = Some(End { at, reply: reply.clone(), sent: *sent, cause: *cause });
                        events.push((i, true));
                    }
                }
            }
            _ => {}
        }
    }
    (reqs, events)
}

/// The requests of a run on real processes, from each node's output log
/// (`agora node --outputs`: a JSON line per output, with its wall-clock
/// time): the clients' outputs merged in time order. An error names the
/// node and line that do not read.
pub fn real_requests(logs: &[(NodeId, String)]) -> Result<(Vec<Request>, Vec<Event>), String> {
    let mut outputs: Vec<(u64, NodeId, client::Output)> = Vec::new();
    for (node, text) in logs {
        for (i, line) in text.lines().enumerate() {
            let bad = |e: &dyn std::fmt::Display| format!("node {}'s output log, line {}: {e}", node.0, i + 1);
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e))?;
            let Some(c) = v["output"].get("client") else { continue };
            let t = v["t_ns"].as_u64().ok_or_else(|| bad(&"no t_ns"))?;
            // The client's own plumbing never reaches the log; what does is
            // one of its outputs.
            let c: client::Output = serde_json::from_value(c.clone()).map_err(|e| bad(&e))?;
            outputs.push((t, *node, c));
        }
    }
    // Stable: one node's outputs at one nanosecond keep their order.
    outputs.sort_by_key(|o| o.0);
    let t0 = outputs.first().map_or(0, |o| o.0);
    Ok(requests_from(outputs.iter().map(|(t, n, c)| (*n, Time::from_nanos(t - t0), c))))
}

/// The tokens each (group, key) was ever asked to hold.
fn written(reqs: &[Request]) -> HashMap<(u16, &str), HashSet<&[u8]>> {
    let mut w: HashMap<(u16, &str), HashSet<&[u8]>> = HashMap::new();
    for r in reqs {
        let v = match &r.op {
            Op::Read => continue,
            Op::Write(v) | Op::Append(v) | Op::Cas { value: v, .. } => v,
        };
        let set = w.entry((r.group, r.key.as_str())).or_default();
        set.extend(tokens(v).into_iter().flatten());
    }
    w
}

/// Whether `value` is made of tokens clients wrote to `r`'s key: every
/// honest replica's value is.
fn made_of_writes(w: &HashMap<(u16, &str), HashSet<&[u8]>>, r: &Request, value: &[u8]) -> bool {
    let known = w.get(&(r.group, r.key.as_str()));
    tokens(value).is_some_and(|t| t.iter().all(|t| known.is_some_and(|k| k.contains(t))))
}

/// The requests that ended with a reply, and whether the reply is honest
/// (not forged).
fn replies(reqs: &[Request]) -> Vec<(&Request, &Reply, bool)> {
    let w = written(reqs);
    reqs.iter()
        .filter_map(|r| {
            let reply = r.end.as_ref()?.reply.as_ref()?;
            Some((r, reply, made_of_writes(&w, r, &reply.entry.value)))
        })
        .collect()
}

/// The requests that ended with an honest reply, with that reply.
fn honest_replies(reqs: &[Request]) -> impl Iterator<Item = (&Request, &Reply)> {
    replies(reqs).into_iter().filter(|x| x.2).map(|(r, reply, _)| (r, reply))
}

/// Accepted replies whose value no client wrote to that key: forged by a
/// Byzantine replica.
pub fn wrong_answers(reqs: &[Request]) -> u64 {
    replies(reqs).iter().filter(|x| !x.2).count() as u64
}

/// Acknowledged writes that did not stand: another accepted reply gave
/// their key a different value at the same version, and the one seen last
/// was not theirs. That is what two members serving one key across a
/// failover leave behind when the first had not shipped the write (or two
/// replicas took concurrent writes): one side is overwritten. Indices into
/// `reqs`. Forged answers (values no client wrote) are left out.
pub fn lost_writes(reqs: &[Request]) -> HashSet<usize> {
    // (group, key, version) → value → when an accepted reply last showed it.
    let mut seen: HashMap<(u16, &str, u64), HashMap<&[u8], Time>> = HashMap::new();
    for (r, reply) in honest_replies(reqs) {
        let at = r.end.as_ref().expect("replied").at;
        let last = seen.entry((r.group, &r.key, reply.entry.version)).or_default();
        let t = last.entry(&reply.entry.value).or_insert(at);
        *t = (*t).max(at);
    }
    reqs.iter()
        .enumerate()
        .filter(|(_, r)| {
            let Some(reply) = r.end.as_ref().and_then(|e| e.reply.as_ref()) else { return false };
            if !r.op.writes() || !reply.applied {
                return false;
            }
            let Some(values) = seen.get(&(r.group, r.key.as_str(), reply.entry.version)) else { return false };
            let winner = values.iter().max_by_key(|(v, t)| (**t, **v)).map(|(v, _)| *v);
            values.len() > 1 && winner != Some(reply.entry.value.as_slice())
        })
        .map(|(i, _)| i)
        .collect()
}

/// Reads that broke a client's session guarantees, per group: a read that
/// returned an older version of a key than a write of the same client
/// acknowledged before the read was issued (read-your-writes), or than a
/// read of the same client that ended before it was issued (monotonic
/// reads). A client's session is one incarnation (a restart without memory
/// starts a new one). Forged replies are left out: they are wrong answers,
/// counted as such.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct SessionViolations {
    pub read_your_writes: u64,
    pub monotonic_reads: u64,
}

pub fn session_violations(reqs: &[Request]) -> HashMap<u16, SessionViolations> {
    // (client, incarnation, group) → its requests that ended with a reply, by issue time.
    let mut sessions: HashMap<(NodeId, u64, u16), Vec<&Request>> = HashMap::new();
    for (r, _) in honest_replies(reqs) {
        sessions.entry((r.client, r.id >> 32, r.group)).or_default().push(r);
    }
    let mut out: HashMap<u16, SessionViolations> = HashMap::new();
    for ((_, _, group), mut rs) in sessions {
        rs.sort_by_key(|r| r.issued);
        let v = out.entry(group).or_default();
        for (i, r) in rs.iter().enumerate() {
            if r.op != Op::Read {
                continue;
            }
            let version = |r: &Request| r.end.as_ref().and_then(|e| e.reply.as_ref()).map_or(0, |x| x.entry.version);
            let before = rs[..i].iter().filter(|p| p.key == r.key && p.end.as_ref().is_some_and(|e| e.at < r.issued));
            let wrote = before.clone().filter(|p| p.op.writes()).map(|p| version(p)).max().unwrap_or(0);
            let read = before.filter(|p| p.op == Op::Read).map(|p| version(p)).max().unwrap_or(0);
            v.read_your_writes += (version(r) < wrote) as u64;
            v.monotonic_reads += (version(r) < read) as u64;
        }
    }
    out
}

/// Reads that returned an older version of a key than a write of any
/// client acknowledged before the read was issued, per group: what a
/// quorum group's R + W > N rules out, and what eventual groups trade
/// (their stale-read rate). Forged replies are left out.
pub fn stale_reads(reqs: &[Request]) -> HashMap<u16, u64> {
    let honest: Vec<(&Request, &Reply)> = honest_replies(reqs).collect();
    // (group, key) → acknowledged writes as (end, version), by end.
    let mut writes: HashMap<(u16, &str), Vec<(Time, u64)>> = HashMap::new();
    for (r, reply) in &honest {
        if r.op.writes() && reply.applied {
            let at = r.end.as_ref().expect("replied").at;
            writes.entry((r.group, r.key.as_str())).or_default().push((at, reply.entry.version));
        }
    }
    for w in writes.values_mut() {
        w.sort();
        // Prefix maxima: the newest version acknowledged by each end.
        for i in 1..w.len() {
            w[i].1 = w[i].1.max(w[i - 1].1);
        }
    }
    let mut out: HashMap<u16, u64> = HashMap::new();
    for (r, reply) in &honest {
        let Some(w) = writes.get(&(r.group, r.key.as_str())).filter(|_| r.op == Op::Read) else { continue };
        let before = w.partition_point(|(at, _)| *at < r.issued);
        if before > 0 && reply.entry.version < w[before - 1].1 {
            *out.entry(r.group).or_default() += 1;
        }
    }
    out
}

fn edn_str(v: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(v))
}

/// Each group's history as Jepsen EDN, by service name. Every request is
/// its own process; a request that failed before any attempt went out, and
/// a compare that did not swap, are `:fail` (they did not happen); one that
/// failed after an attempt is `:info` (it may have); one still in flight at
/// the end has no completion.
pub fn edn(topo: &Topology, reqs: &[Request], events: &[Event]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = topo.groups.iter().map(|g| (g.service.clone(), String::new())).collect();
    for &(i, end) in events {
        let r = &reqs[i];
        // One process per request (a client restarted without memory
        // numbers its requests anew, so its ids do not do).
        let process = i;
        let (f, invoke_value) = match &r.op {
            Op::Read => ("get", "nil".to_string()),
            Op::Write(v) => ("put", edn_str(v)),
            Op::Append(v) => ("append", edn_str(v)),
            Op::Cas { expected, value } => ("cas", format!("[{} {}]", edn_str(expected), edn_str(value))),
        };
        let (kind, value) = if !end {
            ("invoke", invoke_value)
        } else {
            let e = r.end.as_ref().expect("an end event has an end");
            match (&e.reply, &r.op) {
                (Some(reply), Op::Read) => ("ok", edn_str(&reply.entry.value)),
                (Some(reply), _) => (if reply.applied { "ok" } else { "fail" }, invoke_value),
                (None, _) => (if e.sent { "info" } else { "fail" }, invoke_value),
            }
        };
        let text = out.get_mut(&topo.groups[r.group as usize].service).expect("every group has a history");
        let _ = writeln!(text, "{{:process {process}, :type :{kind}, :f :{f}, :key {:?}, :value {value}}}", r.key);
    }
    out
}

/// One group's history checked for linearizability.
#[derive(Debug, Serialize)]
pub struct GroupHistory {
    pub service: String,
    pub consistency: agora_telecom::topology::Consistency,
    pub ops: usize,
    /// None: no operation, or the check ran past its time.
    pub linearizable: Option<bool>,
    /// The operation no order could place, when not linearizable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck_at: Option<String>,
    /// Reads that broke a client's session (what a causal group guarantees).
    pub sessions: SessionViolations,
    /// Reads older than a write acknowledged before them ([`stale_reads`]).
    pub stale_reads: u64,
    /// PBFT orders the group (see `agora_telecom::ordering`): its history
    /// holds with up to f Byzantine members.
    pub pbft: bool,
    /// Members that turned Byzantine in the run: a strong group in primary
    /// order (not PBFT's) assumes no member lies to its peers, so its
    /// verdict is then what this run showed, not a guarantee.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub byzantine_members: Vec<String>,
}

/// Checks every group's history (`timeout` bounds each group's search),
/// and every client's session over `reqs`.
pub fn check(
    topo: &Topology,
    reqs: &[Request],
    histories: &BTreeMap<String, String>,
    timeout: Duration,
) -> Vec<GroupHistory> {
    use agora_history::{check, Format, ModelKind};
    let sessions = session_violations(reqs);
    let stale = stale_reads(reqs);
    topo.groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let text = &histories[&g.service];
            let report = check(text, Some(Format::Edn), ModelKind::Kv, Some(timeout));
            let (ops, linearizable, stuck_at) = match report {
                Ok(r) => (r.ops, r.linearizable, r.stuck.map(|s| format!("line {}: {} of key {}", s.line, s.f, s.key))),
                // No operation at all: nothing to check.
                Err(_) if text.is_empty() => (0, None, None),
                Err(e) => (0, None, Some(format!("the history does not read back: {e}"))),
            };
            let sessions = sessions.get(&(i as u16)).copied().unwrap_or_default();
            GroupHistory {
                service: g.service.clone(),
                consistency: g.consistency,
                ops,
                linearizable,
                stuck_at,
                sessions,
                stale_reads: stale.get(&(i as u16)).copied().unwrap_or(0),
                pbft: topo.pbft[i].is_some(),
                byzantine_members: Vec::new(),
            }
        })
        .collect()
}
