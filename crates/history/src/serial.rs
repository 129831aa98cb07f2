//! Serializability of transaction histories over append-only lists, the
//! workload Elle checks (Jepsen's `list-append`): transactions append
//! unique elements to lists under keys and read whole lists. Every read
//! reveals a prefix of its key's version order, so the order is the
//! longest read (every other read must be a prefix of it), and the
//! dependency graph follows:
//!
//! * ww: the writer of each element → the writer of the next;
//! * wr: the writer of the last element a transaction read → the reader;
//! * rw: a reader → the writer of the first element it did not see.
//!
//! A history is serializable iff the graph is acyclic (Adya). A cycle is
//! reported with its edges and its class: G0 (writes only), G1c (writes and
//! reads), G2 (an anti-dependency among them). Reads of elements that no
//! committed transaction wrote (G1a: written by a failed one) and reads
//! that are not prefixes of one order are reported too.
//!
//! Format: Jepsen EDN, one operation a line, `:f :txn`, `:value` a vector
//! of micro-operations `[:append K V]` and `[:r K [V …]]` (`nil`: empty).

use crate::edn::Value;
use crate::history::{bad, edn_events, HistoryError, Kind};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    Ww,
    Wr,
    Rw,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// The transaction's line (its completion) in the file.
    pub line: usize,
    /// The dependency to the next transaction of the cycle.
    pub edge: Edge,
    pub key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SerialReport {
    pub serializable: bool,
    /// Committed transactions checked.
    pub txns: usize,
    /// What is wrong, when something is: "G0", "G1c", "G2", "G1a",
    /// "incompatible-order".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cycle: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

enum Micro {
    Append(String, Value),
    Read(String, Option<Vec<Value>>),
}

struct Txn {
    line: usize,
    ops: Vec<Micro>,
}

fn micro_ops(line: usize, value: &Value, with_reads: bool) -> Result<Vec<Micro>, HistoryError> {
    let Value::Vector(items) = value else {
        return Err(bad(line, format!("a transaction's :value must be a vector of micro-operations, found {value}")));
    };
    let mut ops = Vec::new();
    for m in items {
        let Value::Vector(parts) = m else {
            return Err(bad(line, format!("a micro-operation must be a vector, found {m}")));
        };
        match parts.as_slice() {
            [f, k, v] if f.keyword() == Some("append") => ops.push(Micro::Append(k.text(), v.clone())),
            [f, k, v] if f.keyword() == Some("r") => {
                let list = match v {
                    Value::Nil => Some(Vec::new()),
                    Value::Vector(l) | Value::List(l) => Some(l.clone()),
                    other => return Err(bad(line, format!("a read's value must be a list or nil, found {other}"))),
                };
                ops.push(Micro::Read(k.text(), list.filter(|_| with_reads)));
            }
            _ => return Err(bad(line, format!("expected [:append k v] or [:r k list], found {m}"))),
        }
    }
    Ok(ops)
}

/// The elements failed transactions appended, (key, element) → line.
type Failed = HashMap<(String, String), usize>;

/// Reads a list-append history: the committed transactions (`:ok`, and
/// `:info` ones, whose reads are unknown), and the elements failed ones
/// appended.
fn read(text: &str) -> Result<(Vec<Txn>, Failed), HistoryError> {
    let mut open: BTreeMap<i64, (usize, Value)> = BTreeMap::new();
    let (mut txns, mut failed) = (Vec::new(), HashMap::new());
    for e in edn_events(text)? {
        let (line, process) = (e.line, e.process);
        if e.f != "txn" {
            return Err(bad(line, "the list-append model reads :f :txn operations"));
        }
        if e.kind == Kind::Invoke {
            if open.insert(process, (line, e.value)).is_some() {
                return Err(bad(line, format!("process {process} invokes again before its transaction completed")));
            }
            continue;
        }
        let Some((_, invoked)) = open.remove(&process) else {
            return Err(bad(line, format!("process {process} completes a transaction it never invoked")));
        };
        match e.kind {
            Kind::Ok => txns.push(Txn { line, ops: micro_ops(line, &e.value, true)? }),
            Kind::Fail => {
                for m in micro_ops(line, &invoked, false)? {
                    if let Micro::Append(k, v) = m {
                        failed.insert((k, v.to_string()), line);
                    }
                }
            }
            _ => txns.push(Txn { line, ops: micro_ops(line, &invoked, false)? }),
        }
    }
    // Never completed: like :info.
    for (_, (line, invoked)) in open {
        txns.push(Txn { line, ops: micro_ops(line, &invoked, false)? });
    }
    Ok((txns, failed))
}

/// Checks a list-append history for serializability.
pub fn check(text: &str) -> Result<SerialReport, HistoryError> {
    let (txns, failed) = read(text)?;
    if txns.is_empty() && failed.is_empty() {
        return Err(bad(0, "the history has no transactions"));
    }
    let report = |anomaly: &str, detail: String| SerialReport {
        serializable: false,
        txns: txns.len(),
        anomaly: Some(anomaly.into()),
        cycle: Vec::new(),
        detail: Some(detail),
    };
    // Who wrote each element.
    let mut writer: HashMap<(String, String), usize> = HashMap::new();
    for (t, txn) in txns.iter().enumerate() {
        for m in &txn.ops {
            if let Micro::Append(k, v) = m {
                if let Some(first) = writer.insert((k.clone(), v.to_string()), t) {
                    return Err(bad(
                        txn.line,
                        format!("{v} is appended to key {k} twice (also on line {})", txns[first].line),
                    ));
                }
            }
        }
    }
    // External reads (before the transaction's own appends to the key).
    let mut reads: Vec<(usize, String, Vec<String>)> = Vec::new();
    for (t, txn) in txns.iter().enumerate() {
        let mut written: Vec<&str> = Vec::new();
        for m in &txn.ops {
            match m {
                Micro::Append(k, _) => written.push(k),
                Micro::Read(k, Some(list)) if !written.contains(&k.as_str()) => {
                    reads.push((t, k.clone(), list.iter().map(Value::to_string).collect()))
                }
                Micro::Read(..) => {}
            }
        }
    }
    // Version order: the longest read of each key; every read a prefix.
    let mut order: BTreeMap<&str, &Vec<String>> = BTreeMap::new();
    for (_, k, list) in &reads {
        let longest = order.entry(k).or_insert(list);
        if list.len() > longest.len() {
            *longest = list;
        }
    }
    for (t, k, list) in &reads {
        let longest = order[k.as_str()];
        if longest[..list.len()] != list[..] {
            return Ok(report(
                "incompatible-order",
                format!("line {}: read {k} = {list:?}, not a prefix of {longest:?}", txns[*t].line),
            ));
        }
    }
    for (k, elements) in &order {
        for e in elements.iter() {
            let id = (k.to_string(), e.clone());
            if writer.contains_key(&id) {
                continue;
            }
            return Ok(match failed.get(&id) {
                Some(line) => {
                    report("G1a", format!("{e} of key {k} was read, but its transaction failed (line {line})"))
                }
                None => report("garbage-read", format!("{e} of key {k} was read, but no transaction appended it")),
            });
        }
    }
    // A transaction's appends to a key are one step of its version order:
    // in their order, one after the other, and a read ends after all of
    // them or before the first (else it saw an intermediate state, G1b).
    let mut place: HashMap<(String, String), (usize, usize, usize)> = HashMap::new();
    for (t, txn) in txns.iter().enumerate() {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        let appends: Vec<(&str, String)> = txn
            .ops
            .iter()
            .filter_map(|m| match m {
                Micro::Append(k, v) => Some((k.as_str(), v.to_string())),
                Micro::Read(..) => None,
            })
            .collect();
        for (k, _) in &appends {
            *count.entry(k).or_default() += 1;
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (k, v) in &appends {
            let j = seen.entry(k).or_default();
            place.insert((k.to_string(), v.clone()), (t, *j, count[k]));
            *j += 1;
        }
    }
    for (k, elements) in &order {
        for (i, e) in elements.iter().enumerate() {
            let at = |e: &String| place[&(k.to_string(), e.clone())];
            let (t, j, _) = at(e);
            let after_own = i > 0 && at(&elements[i - 1]).0 == t && at(&elements[i - 1]).1 + 1 == j;
            if j > 0 && !after_own {
                return Ok(report(
                    "incompatible-order",
                    format!(
                        "{e} of key {k} is read without the append before it in its transaction (line {})",
                        txns[t].line
                    ),
                ));
            }
        }
    }
    for (r, k, list) in &reads {
        if let Some(last) = list.last() {
            let (t, j, m) = place[&(k.clone(), last.clone())];
            if j + 1 < m {
                return Ok(report(
                    "G1b",
                    format!(
                        "line {}: read {k} = {list:?}, in the middle of the appends of line {}",
                        txns[*r].line, txns[t].line
                    ),
                ));
            }
        }
    }
    // The dependency graph.
    let mut edges: Vec<BTreeMap<usize, (Edge, String)>> = vec![BTreeMap::new(); txns.len()];
    let mut add = |from: usize, to: usize, edge: Edge, key: &str| {
        if from != to {
            edges[from].entry(to).or_insert((edge, key.to_string()));
        }
    };
    for (k, elements) in &order {
        for pair in elements.windows(2) {
            let w = |e: &String| writer[&(k.to_string(), e.clone())];
            add(w(&pair[0]), w(&pair[1]), Edge::Ww, k);
        }
    }
    for (t, k, list) in &reads {
        let elements = order[k.as_str()];
        if let Some(last) = list.last() {
            add(writer[&(k.clone(), last.clone())], *t, Edge::Wr, k);
        }
        if let Some(next) = elements.get(list.len()) {
            add(*t, writer[&(k.clone(), next.clone())], Edge::Rw, k);
        }
    }
    let mut result =
        SerialReport { serializable: true, txns: txns.len(), anomaly: None, cycle: Vec::new(), detail: None };
    if let Some(cycle) = find_cycle(&edges) {
        let steps: Vec<Step> = cycle
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let next = cycle[(i + 1) % cycle.len()];
                let (edge, key) = edges[t][&next].clone();
                Step { line: txns[t].line, edge, key }
            })
            .collect();
        let class = if steps.iter().any(|s| s.edge == Edge::Rw) {
            "G2"
        } else if steps.iter().any(|s| s.edge == Edge::Wr) {
            "G1c"
        } else {
            "G0"
        };
        result = SerialReport { serializable: false, anomaly: Some(class.into()), cycle: steps, ..result };
    }
    Ok(result)
}

/// A cycle of the graph, if it has one: Tarjan's strongly connected
/// components (iterative), then a shortest path back within the first
/// component of more than one transaction.
fn find_cycle(edges: &[BTreeMap<usize, (Edge, String)>]) -> Option<Vec<usize>> {
    let n = edges.len();
    let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut next_index) = (Vec::new(), 0);
    let mut component = vec![usize::MAX; n];
    let mut components = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, Vec<usize>)> = vec![(root, edges[root].keys().copied().collect())];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some((v, succ)) = work.last_mut() {
            let v = *v;
            if let Some(w) = succ.pop() {
                if index[w] == usize::MAX {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, edges[w].keys().copied().collect()));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some((parent, _)) = work.last() {
                low[*parent] = low[*parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut size = 0;
                loop {
                    let w = stack.pop().expect("on the stack");
                    on_stack[w] = false;
                    component[w] = components;
                    size += 1;
                    if w == v {
                        break;
                    }
                }
                if size > 1 {
                    return Some(shortest_cycle(edges, &component, v));
                }
                components += 1;
            }
        }
    }
    None
}

/// The shortest cycle through `start` within its component (BFS).
fn shortest_cycle(edges: &[BTreeMap<usize, (Edge, String)>], component: &[usize], start: usize) -> Vec<usize> {
    let c = component[start];
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in edges[v].keys() {
            if component[w] != c {
                continue;
            }
            if w == start {
                let mut path = vec![v];
                while let Some(&p) = parent.get(path.last().expect("non-empty")) {
                    path.push(p);
                }
                path.reverse();
                return path;
            }
            if w != start && !parent.contains_key(&w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    unreachable!("a component of more than one node has a cycle through each of its nodes")
}
