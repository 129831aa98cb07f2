//! Client histories read from Jepsen's formats, paired into operations and
//! checked per key.
//!
//! * `edn`: one operation map a line (`{:process 0, :type :invoke, :f :get,
//!   :key "1", :value nil}`), as Jepsen's `history.edn`;
//! * `jepsen`: the text log of Jepsen's etcd test, the lines of
//!   `jepsen.util` (`INFO  jepsen.util - 3 :invoke :cas [1 4]`, tab-separated); other
//!   lines of the log are skipped.
//!
//! Pairing follows Jepsen's meaning of a completion: `:ok` happened,
//! `:fail` did not happen (the operation is dropped), `:info` (or no
//! completion at all) may or may not have happened, at any time after its
//! invocation. Reads whose outcome is unknown constrain nothing and are
//! dropped. Time is the order of the file.

use crate::edn::{self, Value};
use crate::linear::{self, Model, Operation, Outcome};
use crate::models::{KvInput, KvKey, KvOutput, Register, RegisterInput, RegisterOutput};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Edn,
    Jepsen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// One integer register: read, write, cas.
    Register,
    /// Strings under keys: get, put, append; checked one key at a time.
    Kv,
}

/// A history that cannot be read: the line (0: the whole file) and what is
/// wrong with it.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.message),
            line => write!(f, "line {line}: {}", self.message),
        }
    }
}

impl std::error::Error for HistoryError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// One line of a history.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) line: usize,
    pub(crate) process: i64,
    pub(crate) kind: Kind,
    pub(crate) f: String,
    pub(crate) key: Option<Value>,
    pub(crate) value: Value,
}

/// The format of `text`: EDN when its first line that is not blank starts
/// with `{`, Jepsen's log otherwise.
pub fn detect(text: &str) -> Format {
    match text.lines().map(str::trim_start).find(|l| !l.is_empty()) {
        Some(l) if l.starts_with('{') || l.starts_with('[') => Format::Edn,
        _ => Format::Jepsen,
    }
}

pub(crate) fn bad(line: usize, message: impl Into<String>) -> HistoryError {
    HistoryError { line, message: message.into() }
}

/// The operations of an EDN history (the nemesis's left out).
pub(crate) fn edn_events(text: &str) -> Result<Vec<Event>, HistoryError> {
    let values = edn::parse_all(text).map_err(|e| bad(e.line, format!("column {}: {}", e.column, e.message)))?;
    // A history may also be one vector of operation maps.
    let values = match values.as_slice() {
        [(line, Value::Vector(items))] => items.iter().map(|v| (*line, v.clone())).collect(),
        _ => values,
    };
    let mut events = Vec::with_capacity(values.len());
    for (line, v) in values {
        if !matches!(v, Value::Map(_)) {
            return Err(bad(line, format!("expected an operation map, found {v}")));
        }
        let field = |name: &str| v.get(name).ok_or_else(|| bad(line, format!("the operation has no :{name}")));
        let process = match field("process")? {
            Value::Int(p) => *p,
            Value::Keyword(k) if k == "nemesis" => continue,
            other => return Err(bad(line, format!(":process must be an integer, found {other}"))),
        };
        let kind = kind(line, field("type")?)?;
        let f = field("f")?.keyword().ok_or_else(|| bad(line, ":f must be a keyword"))?.to_string();
        let value = v.get("value").cloned().unwrap_or(Value::Nil);
        events.push(Event { line, process, kind, f, key: v.get("key").cloned(), value });
    }
    Ok(events)
}

fn kind(line: usize, v: &Value) -> Result<Kind, HistoryError> {
    Ok(match v.keyword() {
        Some("invoke") => Kind::Invoke,
        Some("ok") => Kind::Ok,
        Some("fail") => Kind::Fail,
        Some("info") => Kind::Info,
        _ => return Err(bad(line, format!(":type must be :invoke, :ok, :fail or :info, found {v}"))),
    })
}

fn jepsen_events(text: &str) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        let Some(at) = l.find("jepsen.util") else { continue };
        let rest = l[at + "jepsen.util".len()..].trim_start();
        let rest = rest.strip_prefix(['-', ':']).unwrap_or(rest);
        let fields = edn::parse_all(rest).map_err(|e| bad(line, e.message))?;
        let fields: Vec<Value> = fields.into_iter().map(|(_, v)| v).collect();
        let [process, kind_v, f, value] = fields.as_slice() else {
            return Err(bad(line, format!("expected: process, type, function, value; found {} fields", fields.len())));
        };
        let process = match process {
            Value::Int(p) => *p,
            Value::Keyword(k) if k == "nemesis" => continue,
            other => return Err(bad(line, format!("the process must be an integer, found {other}"))),
        };
        let f = f.keyword().ok_or_else(|| bad(line, "the function must be a keyword"))?.to_string();
        events.push(Event { line, process, kind: kind(line, kind_v)?, f, key: None, value: value.clone() });
    }
    Ok(events)
}

/// An operation as the model reads it, with where it came from.
struct Op<I, O> {
    key: String,
    process: i64,
    line: usize,
    f: String,
    op: Operation<I, O>,
}

/// Pairs invocations with completions; `convert` turns an invocation and
/// its completion (`None`: unknown) into the model's input and output.
#[allow(clippy::type_complexity)]
fn pair<I, O>(
    events: &[Event],
    convert: impl Fn(&Event, Option<&Event>) -> Result<Option<(I, Option<O>)>, HistoryError>,
) -> Result<Vec<Op<I, O>>, HistoryError> {
    let mut open: BTreeMap<i64, usize> = BTreeMap::new();
    let mut done: Vec<(usize, Option<usize>)> = Vec::new();
    for (t, e) in events.iter().enumerate() {
        if e.kind == Kind::Invoke {
            if let Some(&first) = open.get(&e.process) {
                return Err(bad(
                    e.line,
                    format!(
                        "process {} invokes again before its call on line {} completed",
                        e.process, events[first].line
                    ),
                ));
            }
            open.insert(e.process, t);
            continue;
        }
        let Some(call) = open.remove(&e.process) else {
            return Err(bad(e.line, format!("process {} completes an operation it never invoked", e.process)));
        };
        if events[call].f != e.f {
            return Err(bad(
                e.line,
                format!("completes :{} but process {} invoked :{}", e.f, e.process, events[call].f),
            ));
        }
        done.push((call, Some(t)));
    }
    done.extend(open.into_values().map(|call| (call, None)));
    done.sort_unstable();
    let mut ops = Vec::new();
    for (call, ret) in done {
        let (inv, comp) = (&events[call], ret.map(|r| &events[r]));
        let known = comp.filter(|c| c.kind != Kind::Info);
        if known.is_some_and(|c| c.kind == Kind::Fail) {
            continue;
        }
        let Some((input, output)) = convert(inv, known)? else { continue };
        let key = inv.key.as_ref().map_or_else(String::new, Value::text);
        let ret = match known {
            Some(_) => ret.expect("a known completion") as u64,
            None => u64::MAX,
        };
        ops.push(Op {
            key,
            process: inv.process,
            line: inv.line,
            f: inv.f.clone(),
            op: Operation { input, output, call: call as u64, ret },
        });
    }
    Ok(ops)
}

fn int(e: &Event, v: &Value, what: &str) -> Result<i64, HistoryError> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(bad(e.line, format!("{what} must be an integer, found {other}"))),
    }
}

fn register_op(
    inv: &Event,
    comp: Option<&Event>,
) -> Result<Option<(RegisterInput, Option<RegisterOutput>)>, HistoryError> {
    Ok(Some(match inv.f.as_str() {
        "read" => {
            let Some(c) = comp else { return Ok(None) };
            let v = match &c.value {
                Value::Nil => None,
                v => Some(int(c, v, "a read's value")?),
            };
            (RegisterInput::Read, Some(RegisterOutput::Read(v)))
        }
        "write" => {
            (RegisterInput::Write(int(inv, &inv.value, "a write's value")?), comp.map(|_| RegisterOutput::Written))
        }
        "cas" => {
            let Value::Vector(pair) = &inv.value else {
                return Err(bad(inv.line, format!("a cas's value must be [from to], found {}", inv.value)));
            };
            let [from, to] = pair.as_slice() else {
                return Err(bad(inv.line, format!("a cas's value must be [from to], found {}", inv.value)));
            };
            let input = RegisterInput::Cas(int(inv, from, "cas from")?, int(inv, to, "cas to")?);
            (input, comp.map(|_| RegisterOutput::Cas(true)))
        }
        f => return Err(bad(inv.line, format!("the register model knows :read, :write and :cas, not :{f}"))),
    }))
}

fn string(e: &Event, v: &Value) -> Result<String, HistoryError> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        Value::Nil => Ok(String::new()),
        other => Err(bad(e.line, format!("the value must be a string, found {other}"))),
    }
}

fn kv_op(inv: &Event, comp: Option<&Event>) -> Result<Option<(KvInput, Option<KvOutput>)>, HistoryError> {
    if inv.key.is_none() {
        return Err(bad(inv.line, "the kv model needs a :key in every operation"));
    }
    Ok(Some(match inv.f.as_str() {
        "get" => {
            let Some(c) = comp else { return Ok(None) };
            (KvInput::Get, Some(KvOutput::Got(string(c, &c.value)?)))
        }
        "put" => (KvInput::Put(string(inv, &inv.value)?), comp.map(|_| KvOutput::Done)),
        "append" => (KvInput::Append(string(inv, &inv.value)?), comp.map(|_| KvOutput::Done)),
        "cas" => {
            let pair = match &inv.value {
                Value::Vector(pair) if pair.len() == 2 => pair,
                v => return Err(bad(inv.line, format!("a cas's value must be [expected new], found {v}"))),
            };
            (KvInput::Cas(string(inv, &pair[0])?, string(inv, &pair[1])?), comp.map(|_| KvOutput::Done))
        }
        f => return Err(bad(inv.line, format!("the kv model knows :get, :put, :append and :cas, not :{f}"))),
    }))
}

/// The operation a failed check could not place.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stuck {
    /// The key (empty for a register).
    pub key: String,
    pub process: i64,
    pub f: String,
    /// The line of its invocation.
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// `None` when the search ran past its timeout.
    pub linearizable: Option<bool>,
    /// Operations checked (after dropping failed ones and unknown reads).
    pub ops: usize,
    /// Operations whose outcome is unknown (`:info` or never completed).
    pub indeterminate: usize,
    /// Keys checked independently.
    pub partitions: usize,
    /// Where a non-linearizable partition got stuck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stuck: Option<Stuck>,
}

fn check_partitions<M: Model>(model: &M, mut ops: Vec<Op<M::Input, M::Output>>, timeout: Option<Duration>) -> Report {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    ops.sort_by(|a, b| a.key.cmp(&b.key).then(a.op.call.cmp(&b.op.call)));
    let indeterminate = ops.iter().filter(|o| o.op.ret == u64::MAX).count();
    let mut report = Report { linearizable: Some(true), ops: ops.len(), indeterminate, partitions: 0, stuck: None };
    #[allow(clippy::type_complexity)]
    let (metas, plain): (Vec<Stuck>, Vec<Operation<M::Input, M::Output>>) =
        ops.into_iter().map(|o| (Stuck { key: o.key, process: o.process, f: o.f, line: o.line }, o.op)).unzip();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < plain.len() {
        let end = start + metas[start..].iter().take_while(|m| m.key == metas[start].key).count();
        parts.push((start..end, linear::Search::new(model, &plain[start..end])));
        start = end;
    }
    report.partitions = parts.len();
    // Round robin with a doubling budget: a partition that fails quickly
    // is found even when another one needs a long search.
    let mut budget = 1 << 12;
    while !parts.is_empty() {
        let mut k = 0;
        while k < parts.len() {
            let (range, search) = &mut parts[k];
            match search.run(model, &plain[range.clone()], budget) {
                None => k += 1,
                Some(Outcome::Illegal { stuck_at }) => {
                    report.linearizable = Some(false);
                    report.stuck = Some(metas[range.start + stuck_at].clone());
                    return report;
                }
                Some(_) => drop(parts.swap_remove(k)),
            }
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            report.linearizable = None;
            return report;
        }
        budget = budget.saturating_mul(2);
    }
    report
}

/// Reads and checks a history; `format: None` detects it.
pub fn check(
    text: &str,
    format: Option<Format>,
    model: ModelKind,
    timeout: Option<Duration>,
) -> Result<Report, HistoryError> {
    let format = format.unwrap_or_else(|| detect(text));
    let events = match format {
        Format::Edn => edn_events(text)?,
        Format::Jepsen => jepsen_events(text)?,
    };
    if events.is_empty() {
        let what = match format {
            Format::Edn => "no operation maps",
            Format::Jepsen => "no `jepsen.util` lines (is it a Jepsen log? EDN histories start with '{')",
        };
        return Err(bad(0, format!("the history has {what}")));
    }
    Ok(match model {
        ModelKind::Register => check_partitions(&Register, pair(&events, register_op)?, timeout),
        ModelKind::Kv => check_partitions(&KvKey, pair(&events, kv_op)?, timeout),
    })
}
