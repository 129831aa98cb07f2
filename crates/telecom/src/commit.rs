//! Atomic commit: two-phase and three-phase commit with the seed's
//! transaction states (§ "Transaction Management": active, preparing,
//! prepared, committing, committed, aborting, aborted — and 3PC's
//! pre-committed), a write-ahead log on the storage capability, participant
//! timeouts, 3PC's termination protocol and recovery from the log.
//!
//! Node 0 is the coordinator, nodes 1..=p the participants; the coordinator
//! runs `txns` transactions one after the other. The write-ahead rule: a
//! record is synced before any message that depends on it — a participant's
//! yes vote after its `Prepared` record, the coordinator's commit after its
//! `Commit` record, every acknowledgement after the record it acknowledges.
//! The coordinator logs `Begin` before it asks for votes, so a restarted
//! coordinator never reuses a transaction number; a transaction with no
//! decision in the coordinator's log is aborted (presumed abort).
//!
//! 2PC is safe but blocks: a prepared participant that hears nothing asks
//! the coordinator again, for as long as it takes. 3PC does not block: a
//! participant that times out becomes a termination leader, asks everyone's
//! state and decides from the answers it has (anyone pre-committed or
//! committed: commit; otherwise abort). That is safe only if a missing
//! answer means a crashed node. With partitions (or a timeout that fires
//! early) the two sides of a partition decide differently; the model
//! checker finds that run (`tests/check_commit.rs`).

use agora_core::storage::{Durable, SyncDone};
use agora_core::{Io, Message, NodeId, Protocol};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const COORDINATOR: NodeId = NodeId(0);
const LOG: &str = "commit";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    TwoPhase,
    ThreePhase,
}

/// A scenario's `[params]` for the commit protocol; the participants are
/// the nodes after the coordinator.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default = "default_variant")]
    pub variant: Variant,
    #[serde(default)]
    pub no_voters: BTreeSet<u32>,
    #[serde(default = "default_txns")]
    pub txns: u32,
    #[serde(default = "default_timeout", with = "agora_core::duration_str")]
    pub timeout: Duration,
}

fn default_variant() -> Variant {
    Variant::TwoPhase
}
fn default_txns() -> u32 {
    20
}
fn default_timeout() -> Duration {
    Duration::from_millis(50)
}

impl Params {
    /// The field that is wrong for `nodes` nodes, and why.
    pub fn validate(&self, nodes: u32) -> Result<(), String> {
        if nodes < 2 {
            return Err(format!("nodes: a coordinator and at least one participant, not {nodes} node(s)"));
        }
        if let Some(n) = self.no_voters.iter().find(|&&n| n == 0 || n >= nodes) {
            return Err(format!("no_voters: {n} is not a participant (1..={})", nodes - 1));
        }
        if self.timeout.is_zero() {
            return Err("timeout: must be more than zero".into());
        }
        Ok(())
    }

    pub fn config(&self, nodes: u32) -> Config {
        Config {
            variant: self.variant,
            participants: nodes - 1,
            no_voters: self.no_voters.clone(),
            txns: self.txns,
            timeout: self.timeout,
            decide_before_sync: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    pub variant: Variant,
    pub participants: u32,
    /// Participants (node ids) that vote no.
    pub no_voters: BTreeSet<u32>,
    /// Transactions the coordinator runs, one after the other.
    pub txns: u32,
    /// Resends and participant timeouts.
    pub timeout: Duration,
    /// The bug the write-ahead rule prevents: the coordinator sends its
    /// commit before the record is durable. A crash in between, and the
    /// restarted coordinator presumes abort while a participant committed.
    pub decide_before_sync: bool,
}

impl Config {
    pub fn new(variant: Variant, participants: u32) -> Self {
        Config {
            variant,
            participants,
            no_voters: BTreeSet::new(),
            txns: 1,
            timeout: Duration::from_millis(50),
            decide_before_sync: false,
        }
    }

    fn participants(&self) -> impl Iterator<Item = NodeId> {
        (1..=self.participants).map(NodeId)
    }
}

/// The seed's states, and 3PC's pre-committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Known, no vote asked or given yet.
    Active,
    /// The coordinator is collecting votes.
    Preparing,
    /// A participant voted yes (durably) and waits.
    Prepared,
    /// 3PC: everyone voted yes, and this node knows it (durably).
    PreCommitted,
    /// The coordinator decided commit (durably) and waits for acknowledgements.
    Committing,
    Committed,
    /// The coordinator decided abort and waits for acknowledgements.
    Aborting,
    Aborted,
}

impl State {
    pub fn committed(self) -> bool {
        matches!(self, State::Committing | State::Committed)
    }

    pub fn aborted(self) -> bool {
        matches!(self, State::Aborting | State::Aborted)
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(c: u8) -> Option<State> {
        use State::*;
        [Active, Preparing, Prepared, PreCommitted, Committing, Committed, Aborting, Aborted].get(c as usize).copied()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Body {
    Prepare,
    Vote {
        yes: bool,
    },
    PreCommit,
    PreAck,
    Commit,
    Abort,
    Ack,
    /// 3PC termination: a leader asks for a node's state.
    StateReq,
    StateReply {
        state: State,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Msg {
    pub tx: u32,
    pub body: Body,
}

impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self.body {
            Body::Prepare => "prepare",
            Body::Vote { .. } => "vote",
            Body::PreCommit => "pre_commit",
            Body::PreAck => "pre_ack",
            Body::Commit => "commit",
            Body::Abort => "abort",
            Body::Ack => "ack",
            Body::StateReq => "state_req",
            Body::StateReply { .. } => "state_reply",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Coordinator: resend, or give up on missing votes.
    Retry(u32),
    /// Participant: heard nothing for a while.
    Timeout(u32),
    /// Termination leader: decide with the answers in.
    Decide(u32),
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Decided {
    pub tx: u32,
    pub commit: bool,
}

/// One transaction at one node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tx {
    pub state: Option<State>,
    /// Coordinator: yes votes, or pre-commit acknowledgements, or decision
    /// acknowledgements, as the state is.
    heard: BTreeSet<u32>,
    /// Termination leader: the states reported.
    replies: Option<BTreeMap<u32, State>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Commit {
    cfg: Config,
    me: NodeId,
    pub txs: BTreeMap<u32, Tx>,
    /// Records being synced, by ticket: the state each makes durable.
    syncing: BTreeMap<u64, (u32, State)>,
    next_ticket: u64,
    restored: bool,
}

fn record(tx: u32, state: State) -> Vec<u8> {
    let mut r = tx.to_le_bytes().to_vec();
    r.push(state.code());
    r
}

impl Commit {
    pub fn new(cfg: Config, me: NodeId) -> Self {
        Commit { cfg, me, txs: BTreeMap::new(), syncing: BTreeMap::new(), next_ticket: 0, restored: false }
    }

    pub fn state(&self, tx: u32) -> Option<State> {
        self.txs.get(&tx).and_then(|t| t.state)
    }

    fn set(&mut self, tx: u32, state: State) -> &mut Tx {
        let t = self.txs.entry(tx).or_default();
        t.state = Some(state);
        t.heard.clear();
        t
    }

    /// Appends `state`'s record and syncs; [`Protocol::on_synced`] moves
    /// the transaction on once it is durable.
    fn log(&mut self, tx: u32, state: State, io: &mut Io<'_, Self>) {
        io.append(LOG, record(tx, state));
        if self.cfg.decide_before_sync && state == State::Committing {
            // Ticket 0 is never handed out: its completion is ignored.
            io.sync(0);
            return self.durable(tx, state, io);
        }
        self.next_ticket += 1;
        self.syncing.insert(self.next_ticket, (tx, state));
        io.sync(self.next_ticket);
    }

    /// Coordinator: records `from`'s vote or acknowledgement; true once
    /// every participant's is in.
    fn hear(&mut self, tx: u32, from: NodeId) -> bool {
        let heard = &mut self.txs.get_mut(&tx).expect("a transaction the coordinator runs").heard;
        heard.insert(from.0);
        heard.len() == self.cfg.participants as usize
    }

    fn logging(&self, tx: u32) -> bool {
        self.syncing.values().any(|(t, _)| *t == tx)
    }

    fn to_participants(&self, tx: u32, body: Body, io: &mut Io<'_, Self>) {
        for p in self.cfg.participants() {
            io.send(p, Msg { tx, body: body.clone() });
        }
    }

    fn to_others(&self, tx: u32, body: Body, io: &mut Io<'_, Self>) {
        for n in (0..=self.cfg.participants).map(NodeId).filter(|&n| n != self.me) {
            io.send(n, Msg { tx, body: body.clone() });
        }
    }

    /// Coordinator: once every transaction it knows is finished, begins the
    /// one after the newest (never one it already ran: after a restart the
    /// log's older transactions finish again, and re-running one would ask
    /// participants that committed it for a new vote).
    fn advance(&mut self, io: &mut Io<'_, Self>) {
        if self.txs.values().all(|t| matches!(t.state, Some(State::Committed | State::Aborted))) {
            let next = self.txs.keys().next_back().map_or(0, |&tx| tx + 1);
            self.begin(next, io);
        }
    }

    fn begin(&mut self, tx: u32, io: &mut Io<'_, Self>) {
        if tx < self.cfg.txns {
            self.set(tx, State::Active);
            self.log(tx, State::Preparing, io);
        }
    }

    /// The state reached once `state`'s record is durable, and what to send.
    fn durable(&mut self, tx: u32, state: State, io: &mut Io<'_, Self>) {
        let coordinator = self.me == COORDINATOR;
        match state {
            State::Preparing => {
                self.set(tx, State::Preparing);
                self.to_participants(tx, Body::Prepare, io);
                io.set_timer(self.cfg.timeout, Timer::Retry(tx));
            }
            State::Prepared => {
                self.set(tx, State::Prepared);
                io.send(COORDINATOR, Msg { tx, body: Body::Vote { yes: true } });
                io.set_timer(self.cfg.timeout, Timer::Timeout(tx));
            }
            State::PreCommitted if coordinator => {
                self.set(tx, State::PreCommitted);
                self.to_participants(tx, Body::PreCommit, io);
                io.set_timer(self.cfg.timeout, Timer::Retry(tx));
            }
            State::PreCommitted => {
                self.set(tx, State::PreCommitted);
                io.send(COORDINATOR, Msg { tx, body: Body::PreAck });
                io.set_timer(self.cfg.timeout, Timer::Timeout(tx));
            }
            State::Committing | State::Aborting => {
                // The coordinator's decision.
                self.set(tx, state);
                let body = if state == State::Committing { Body::Commit } else { Body::Abort };
                self.to_participants(tx, body, io);
                io.set_timer(self.cfg.timeout, Timer::Retry(tx));
                io.output(Decided { tx, commit: state == State::Committing });
            }
            State::Committed | State::Aborted => {
                let was_leader = self.txs.get(&tx).is_some_and(|t| t.replies.is_some());
                self.set(tx, state).replies = None;
                io.cancel_timer(Timer::Timeout(tx));
                io.output(Decided { tx, commit: state == State::Committed });
                if was_leader {
                    let body = if state == State::Committed { Body::Commit } else { Body::Abort };
                    self.to_others(tx, body, io);
                } else {
                    io.send(COORDINATOR, Msg { tx, body: Body::Ack });
                }
            }
            State::Active => {}
        }
    }

    /// A decision reached a participant (from the coordinator or a
    /// termination leader).
    fn decision(&mut self, from: NodeId, tx: u32, commit: bool, io: &mut Io<'_, Self>) {
        let target = if commit { State::Committed } else { State::Aborted };
        match self.state(tx) {
            Some(s) if s == target => io.send(from, Msg { tx, body: Body::Ack }),
            // The other decision is final here: a disagreement, which the
            // checks report; do not change it.
            Some(State::Committed | State::Aborted) => io.count("conflicting_decision", 1),
            // Being logged already.
            _ if self.syncing.values().any(|&(t, s)| t == tx && s == target) => {}
            _ => self.log(tx, target, io),
        }
    }

    // `hear` records a vote: it stays out of the match guards, where a
    // false guard would fall through to the next arm after recording it.
    #[allow(clippy::collapsible_match)]
    fn coordinator_message(&mut self, from: NodeId, tx: u32, body: Body, io: &mut Io<'_, Self>) {
        let state = self.state(tx);
        match (body, state) {
            (Body::Vote { yes: true }, Some(State::Preparing)) => {
                if self.hear(tx, from) && !self.logging(tx) {
                    let next = match self.cfg.variant {
                        Variant::TwoPhase => State::Committing,
                        Variant::ThreePhase => State::PreCommitted,
                    };
                    self.log(tx, next, io);
                }
            }
            (Body::Vote { yes: false }, Some(State::Preparing)) if !self.logging(tx) => {
                self.log(tx, State::Aborting, io);
            }
            // A prepared participant asking again: answer with the decision.
            (Body::Vote { .. }, Some(s)) if s.committed() => io.send(from, Msg { tx, body: Body::Commit }),
            (Body::Vote { .. }, Some(s)) if s.aborted() => io.send(from, Msg { tx, body: Body::Abort }),
            // Unknown here (lost with a crash before its Begin was durable,
            // or never decided): presumed abort.
            (Body::Vote { .. }, None) => io.send(from, Msg { tx, body: Body::Abort }),
            (Body::PreAck, Some(State::PreCommitted)) => {
                if self.hear(tx, from) && !self.logging(tx) {
                    self.log(tx, State::Committing, io);
                }
            }
            (Body::Ack, Some(s @ (State::Committing | State::Aborting))) => {
                if self.hear(tx, from) {
                    let done = if s == State::Committing { State::Committed } else { State::Aborted };
                    self.set(tx, done);
                    io.cancel_timer(Timer::Retry(tx));
                    self.advance(io);
                }
            }
            // A termination leader decided (3PC): adopt it, and see it through.
            (Body::Commit, Some(s)) if !s.committed() && !s.aborted() && !self.logging(tx) => {
                self.log(tx, State::Committing, io)
            }
            (Body::Abort, Some(s)) if !s.committed() && !s.aborted() && !self.logging(tx) => {
                self.log(tx, State::Aborting, io)
            }
            (Body::Commit, Some(s)) if s.aborted() => io.count("conflicting_decision", 1),
            (Body::Abort, Some(s)) if s.committed() => io.count("conflicting_decision", 1),
            _ => {}
        }
    }

    fn participant_message(&mut self, from: NodeId, tx: u32, body: Body, io: &mut Io<'_, Self>) {
        let state = self.state(tx);
        match body {
            Body::Prepare => match state {
                None | Some(State::Active) if self.cfg.no_voters.contains(&self.me.0) => {
                    // Nothing to log: a transaction without a record is aborted.
                    self.set(tx, State::Aborted);
                    io.send(from, Msg { tx, body: Body::Vote { yes: false } });
                }
                None | Some(State::Active) if !self.logging(tx) => {
                    self.set(tx, State::Active);
                    self.log(tx, State::Prepared, io);
                }
                Some(State::Prepared) => io.send(from, Msg { tx, body: Body::Vote { yes: true } }),
                Some(State::Aborted) => io.send(from, Msg { tx, body: Body::Vote { yes: false } }),
                _ => {}
            },
            Body::PreCommit => match state {
                Some(State::Prepared) if !self.logging(tx) => self.log(tx, State::PreCommitted, io),
                Some(State::PreCommitted | State::Committed) => io.send(from, Msg { tx, body: Body::PreAck }),
                // Aborted meanwhile (by a termination leader): say so, or
                // a restarted coordinator would resend forever.
                Some(State::Aborted) => io.send(from, Msg { tx, body: Body::Abort }),
                _ => {}
            },
            Body::Commit => self.decision(from, tx, true, io),
            Body::Abort => self.decision(from, tx, false, io),
            Body::StateReq => unreachable!("answered in on_message"),
            Body::StateReply { state: reported } => {
                let total = self.cfg.participants as usize + 1;
                if let Some(replies) = self.txs.get_mut(&tx).and_then(|t| t.replies.as_mut()) {
                    replies.insert(from.0, reported);
                    if replies.len() == total {
                        self.terminate(tx, io);
                    }
                }
            }
            Body::Vote { .. } | Body::PreAck | Body::Ack => io.count("misdirected", 1),
        }
    }

    /// 3PC's termination rule, over the states reported so far: a node that
    /// committed or pre-committed means everyone voted yes, so commit;
    /// otherwise nobody can have committed, so abort.
    fn terminate(&mut self, tx: u32, io: &mut Io<'_, Self>) {
        let Some(replies) = self.txs.get(&tx).and_then(|t| t.replies.as_ref()) else { return };
        let commit = !replies.values().any(|s| s.aborted())
            && replies.values().any(|s| s.committed() || *s == State::PreCommitted);
        if self.logging(tx) {
            return;
        }
        io.cancel_timer(Timer::Decide(tx));
        self.log(tx, if commit { State::Committed } else { State::Aborted }, io);
    }
}

impl Protocol for Commit {
    type Msg = Msg;
    type Timer = Timer;
    type Input = ();
    type Output = Decided;

    fn on_restore(&mut self, disk: &Durable) {
        for r in disk.log(LOG) {
            let (Some(tx), Some(state)) = (r.get(..4), r.get(4).copied().and_then(State::from_code)) else { continue };
            let tx = u32::from_le_bytes(tx.try_into().expect("four bytes"));
            self.set(tx, state);
        }
        self.restored = true;
    }

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        if !self.restored {
            if self.me == COORDINATOR {
                self.begin(0, io);
            }
            return;
        }
        let txs: Vec<(u32, State)> = self.txs.iter().filter_map(|(&tx, t)| Some((tx, t.state?))).collect();
        let coordinator = self.me == COORDINATOR;
        for &(tx, state) in &txs {
            match state {
                // Begun, never decided: presumed abort, and say so.
                State::Preparing if coordinator => self.durable(tx, State::Aborting, io),
                State::Committing | State::Aborting if coordinator => self.durable(tx, state, io),
                // 3PC, pre-committed: the participants may have run the
                // termination protocol meanwhile; take part in it.
                State::PreCommitted if coordinator => io.set_timer(self.cfg.timeout, Timer::Retry(tx)),
                State::Prepared | State::PreCommitted => io.set_timer(self.cfg.timeout, Timer::Timeout(tx)),
                _ => {}
            }
        }
        if coordinator {
            self.advance(io);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        if from.0 > self.cfg.participants {
            io.count("unknown_sender", 1);
            return;
        }
        if msg.body == Body::StateReq {
            // Anyone may lead a termination; everyone answers the same way.
            let state = self.state(msg.tx).unwrap_or(State::Active);
            io.send(from, Msg { tx: msg.tx, body: Body::StateReply { state } });
        } else if self.me == COORDINATOR {
            self.coordinator_message(from, msg.tx, msg.body, io);
        } else {
            self.participant_message(from, msg.tx, msg.body, io);
        }
    }

    fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
        match timer {
            Timer::Retry(tx) => {
                let heard = self.txs.get(&tx).map(|t| t.heard.clone()).unwrap_or_default();
                let body = match self.state(tx) {
                    // Votes missing: give up (nothing pre-committed yet).
                    Some(State::Preparing) if !self.logging(tx) => return self.log(tx, State::Aborting, io),
                    Some(State::PreCommitted) => Body::PreCommit,
                    Some(State::Committing) => Body::Commit,
                    Some(State::Aborting) => Body::Abort,
                    _ => return,
                };
                for p in self.cfg.participants().filter(|p| !heard.contains(&p.0)) {
                    io.send(p, Msg { tx, body: body.clone() });
                }
                io.set_timer(self.cfg.timeout, Timer::Retry(tx));
            }
            Timer::Timeout(tx) => match (self.cfg.variant, self.state(tx)) {
                // 2PC: blocked; ask the coordinator again.
                (Variant::TwoPhase, Some(State::Prepared)) => {
                    io.send(COORDINATOR, Msg { tx, body: Body::Vote { yes: true } });
                    io.set_timer(self.cfg.timeout, Timer::Timeout(tx));
                }
                // 3PC: lead the termination protocol.
                (Variant::ThreePhase, Some(s @ (State::Prepared | State::PreCommitted))) => {
                    let me = self.me.0;
                    self.txs.get_mut(&tx).expect("known").replies = Some(BTreeMap::from([(me, s)]));
                    self.to_others(tx, Body::StateReq, io);
                    io.set_timer(self.cfg.timeout, Timer::Decide(tx));
                }
                _ => {}
            },
            Timer::Decide(tx) => self.terminate(tx, io),
        }
    }

    fn on_synced(&mut self, done: SyncDone, io: &mut Io<'_, Self>) {
        let Some((tx, state)) = self.syncing.remove(&done.ticket) else { return };
        match done.result {
            Ok(()) => self.durable(tx, state, io),
            // Not durable: as if it never happened; the resends retry.
            Err(_) => io.count("sync_failed", 1),
        }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!(self.txs.iter().map(|(tx, t)| (tx.to_string(), t.state)).collect::<BTreeMap<_, _>>())
    }
}

/// Atomicity over every node's current state: no transaction committed at
/// one node and aborted at another; a commit only if every participant
/// voted yes. `nodes` gives each node's protocol state (`None`: crashed).
pub fn check_agreement<'a>(cfg: &Config, nodes: impl Iterator<Item = Option<&'a Commit>>) -> Result<(), String> {
    let mut seen: BTreeMap<u32, (Option<u32>, Option<u32>)> = BTreeMap::new();
    for (i, node) in nodes.enumerate() {
        let Some(node) = node else { continue };
        for (&tx, t) in &node.txs {
            let entry = seen.entry(tx).or_default();
            match t.state {
                Some(s) if s.committed() => entry.0 = Some(i as u32),
                Some(s) if s.aborted() => entry.1 = Some(i as u32),
                _ => {}
            }
        }
    }
    for (tx, (committed, aborted)) in seen {
        if let (Some(c), Some(a)) = (committed, aborted) {
            return Err(format!("transaction {tx} committed at node {c} and aborted at node {a}"));
        }
        if let (Some(c), false) = (committed, cfg.no_voters.is_empty()) {
            return Err(format!("transaction {tx} committed at node {c} although a participant voted no"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::storage::{seal, Space};
    use agora_core::Command;
    use rand::SeedableRng;

    fn restored(me: u32, records: &[(u32, State)]) -> (Commit, Vec<Command<Commit>>) {
        let cfg = Config { txns: 2, ..Config::new(Variant::TwoPhase, 2) };
        let space = Space { service: "", name: LOG };
        let mut sealed: Vec<Vec<u8>> = records.iter().map(|&(tx, s)| seal(&record(tx, s))).collect();
        sealed.push(seal(&[1, 2])); // a torn record: skipped
        let disk = Durable::from_sealed([], sealed.iter().enumerate().map(|(i, r)| (space, i as u64, r.as_slice())));
        let mut node = Commit::new(cfg, NodeId(me));
        node.on_restore(&disk);
        let (mut rng, mut out) = (rand_chacha::ChaCha8Rng::seed_from_u64(0), Vec::new());
        node.on_start(&mut Io::new(NodeId(me), agora_core::Time::ZERO, &mut rng, &mut out));
        (node, out)
    }

    fn sent(out: &[Command<Commit>]) -> Vec<(u32, Body)> {
        out.iter()
            .filter_map(|c| match c {
                Command::Send { to, msg } => Some((to.0, msg.body.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_restarted_coordinator_presumes_abort_without_a_decision_and_resends_one_it_logged() {
        let (node, out) = restored(0, &[(0, State::Preparing)]);
        assert_eq!(node.state(0), Some(State::Aborting));
        assert_eq!(sent(&out), [(1, Body::Abort), (2, Body::Abort)]);
        let (node, out) = restored(0, &[(0, State::Preparing), (0, State::Committing)]);
        assert_eq!(node.state(0), Some(State::Committing));
        assert_eq!(sent(&out), [(1, Body::Commit), (2, Body::Commit)]);
        // A finished transaction: the next one begins with its own number.
        let (node, out) = restored(0, &[(0, State::Preparing), (0, State::Committing), (0, State::Committed)]);
        assert_eq!(node.state(0), Some(State::Committed));
        assert_eq!(node.state(1), Some(State::Active), "tx 1 begun");
        assert!(out.iter().any(|c| matches!(c, Command::Store(agora_core::storage::StoreOp::Append { .. }))));
    }

    #[test]
    fn a_restarted_participant_keeps_its_vote_and_its_decision() {
        let (node, out) = restored(1, &[(0, State::Prepared)]);
        assert_eq!(node.state(0), Some(State::Prepared));
        assert!(out.iter().any(|c| matches!(c, Command::SetTimer { timer: Timer::Timeout(0), .. })));
        let (node, _) = restored(2, &[(0, State::Prepared), (0, State::Committed)]);
        assert_eq!(node.state(0), Some(State::Committed));
    }

    #[test]
    fn agreement_is_checked_across_nodes() {
        let cfg = Config::new(Variant::TwoPhase, 2);
        let (a, _) = restored(1, &[(0, State::Committed)]);
        let (b, _) = restored(2, &[(0, State::Aborted)]);
        assert_eq!(
            check_agreement(&cfg, [Some(&a), Some(&b)].into_iter()),
            Err("transaction 0 committed at node 0 and aborted at node 1".into())
        );
        assert!(check_agreement(&cfg, [Some(&a), None].into_iter()).is_ok());
    }
}
