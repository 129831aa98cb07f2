//! A durable register: the reference protocol for the storage capability.
//!
//! Node 0 is the server, the others clients. Each client writes a new
//! value every `interval` (and re-sends unacknowledged ones); the server
//! appends each write to its log, syncs, and acknowledges once the sync is
//! durable. A restarted server rebuilds its register from the log. The
//! invariant [`check_acknowledged_kept`]: every write a client holds an
//! acknowledgement for is in the server's register. With `ack_before_sync`
//! the server acknowledges as soon as it has appended — the classic bug —
//! and a crash between the acknowledgement and the sync loses an
//! acknowledged write, which the invariant catches.

use agora_core::storage::{Durable, SyncDone};
use agora_core::{duration_str, Io, Message, NodeId, Protocol};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const SERVER: NodeId = NodeId(0);
const LOG: &str = "writes";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(skip)]
    pub nodes: u32,
    /// Writes per client.
    #[serde(default = "default_writes")]
    pub writes: u32,
    #[serde(default = "default_interval", with = "duration_str")]
    pub interval: Duration,
    /// The bug: acknowledge before the write is durable.
    #[serde(default)]
    pub ack_before_sync: bool,
}

fn default_writes() -> u32 {
    20
}
fn default_interval() -> Duration {
    Duration::from_millis(5)
}

impl Config {
    pub fn new(nodes: u32) -> Self {
        Config { nodes, writes: default_writes(), interval: default_interval(), ack_before_sync: false }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    Write { seq: u32 },
    Ack { seq: u32 },
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Write { .. } => "write",
            Msg::Ack { .. } => "ack",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    Write,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// The server restored this many writes, and found this many damaged records.
    Restored { writes: usize, damaged: usize },
    /// A sync was refused (full disk): its writes were not acknowledged.
    Refused { writes: usize },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Register {
    cfg: Config,
    me: NodeId,
    /// Server: the register, (client, seq) pairs.
    pub values: BTreeSet<(u32, u32)>,
    /// Server: writes waiting for their sync, by ticket.
    syncing: BTreeMap<u64, Vec<(u32, u32)>>,
    next_ticket: u64,
    restored: Option<(usize, usize)>,
    /// Client: writes sent so far, and those acknowledged.
    sent: u32,
    pub acked: BTreeSet<u32>,
}

impl Register {
    pub fn new(cfg: Config, me: NodeId) -> Self {
        Register {
            cfg,
            me,
            values: BTreeSet::new(),
            syncing: BTreeMap::new(),
            next_ticket: 0,
            restored: None,
            sent: 0,
            acked: BTreeSet::new(),
        }
    }

    fn record(client: u32, seq: u32) -> Vec<u8> {
        [client.to_le_bytes(), seq.to_le_bytes()].concat()
    }
}

impl Protocol for Register {
    type Msg = Msg;
    type Timer = Timer;
    type Input = ();
    type Output = Output;

    fn on_restore(&mut self, disk: &Durable) {
        for r in disk.log(LOG) {
            if let (Ok(c), Ok(s)) = (r[..4.min(r.len())].try_into(), r[4.min(r.len())..].try_into()) {
                self.values.insert((u32::from_le_bytes(c), u32::from_le_bytes(s)));
            }
        }
        self.restored = Some((self.values.len(), disk.damaged().len()));
    }

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        if let Some((writes, damaged)) = self.restored.take() {
            io.output(Output::Restored { writes, damaged });
        }
        if self.me != SERVER {
            io.set_timer(self.cfg.interval, Timer::Write);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        match msg {
            Msg::Write { seq } if self.me == SERVER => {
                let w = (from.0, seq);
                if self.syncing.values().any(|ws| ws.contains(&w)) {
                    return; // its sync is under way
                }
                if self.values.contains(&w) {
                    io.send(from, Msg::Ack { seq }); // durable already: the ack was lost
                    return;
                }
                io.append(LOG, Self::record(from.0, seq));
                self.values.insert(w);
                if self.cfg.ack_before_sync {
                    io.send(from, Msg::Ack { seq });
                }
                self.next_ticket += 1;
                self.syncing.insert(self.next_ticket, vec![w]);
                io.sync(self.next_ticket);
            }
            Msg::Ack { seq } if self.me != SERVER => {
                self.acked.insert(seq);
            }
            _ => io.count("misdirected", 1),
        }
    }

    fn on_synced(&mut self, done: SyncDone, io: &mut Io<'_, Self>) {
        let Some(writes) = self.syncing.remove(&done.ticket) else { return };
        match done.result {
            Ok(()) if !self.cfg.ack_before_sync => {
                for (client, seq) in writes {
                    io.send(NodeId(client), Msg::Ack { seq });
                }
            }
            Ok(()) => {}
            Err(_) => {
                // Not durable: forget them, so the client's retry writes them again.
                for w in &writes {
                    self.values.remove(w);
                }
                io.output(Output::Refused { writes: writes.len() });
            }
        }
    }

    fn on_timer(&mut self, Timer::Write: Timer, io: &mut Io<'_, Self>) {
        if self.sent < self.cfg.writes {
            self.sent += 1;
        }
        // The newest write, and any unacknowledged one (a retry).
        for seq in 1..=self.sent {
            if !self.acked.contains(&seq) {
                io.send(SERVER, Msg::Write { seq });
            }
        }
        if self.acked.len() < self.cfg.writes as usize {
            io.set_timer(self.cfg.interval, Timer::Write);
        }
    }
}

/// Every acknowledged write is in the server's register (while it is up).
pub fn check_acknowledged_kept<'a>(
    nodes: u32,
    node: impl Fn(NodeId) -> &'a Register,
    server_up: bool,
) -> Result<(), String> {
    if !server_up {
        return Ok(());
    }
    let server = node(SERVER);
    for c in 1..nodes {
        if let Some(seq) = node(NodeId(c)).acked.iter().find(|&&s| !server.values.contains(&(c, s))) {
            return Err(format!("write {seq} of client {c} was acknowledged and is lost"));
        }
    }
    Ok(())
}
