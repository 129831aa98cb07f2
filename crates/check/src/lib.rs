//! The third driver: a protocol, unchanged, as a stateright actor, so that
//! small configurations can be explored exhaustively — every interleaving,
//! every loss, every timer firing — and properties checked in every reachable
//! state.
//!
//! * Commands map one to one: `send` → `Out::send`, `set_timer` →
//!   `Out::set_timer` (stateright fires timers nondeterministically, which
//!   covers every timing), `cancel_timer` → `Out::cancel_timer`; outputs and
//!   counters are not part of the explored state.
//! * Time is not modelled: `Io::now` is always 0.
//! * Randomness must be a function of the state for the model to be one, so
//!   each handler call gets a generator seeded from a hash of the node id and
//!   its state before the call: successive draws of a node differ as its state
//!   moves on (with a seed from the id alone, every value an origin broadcast
//!   was the same, and a reordering bug went unseen).
//!
//! * Storage is part of the explored state: writes join the node's pending
//!   set, a sync's batch becomes durable when a nondeterministic `Disk`
//!   timer fires (so every interleaving of "sync completes" with the rest is
//!   explored), and durable state is stateright's non-volatile `Storage`.
//!   With `ActorModel::max_crashes(n)` stateright crashes nodes at any
//!   point; a crashed node loses its state, its timers and every write not
//!   yet durable, and on recovery is rebuilt, restored from its durable
//!   state (`on_restore`) and started. Disk faults (torn writes,
//!   corruption, a full disk) are the simulator's.
//! * Signatures use keys derived from seed 0 (`SeededKeys`); each
//!   signature made or checked is remembered for the whole exploration.
//!
//! The protocol's state is the actor's state, so it must be
//! `Clone + Debug + Eq + Hash`; stateright also wants messages and timers
//! `Eq + Hash + Ord` (for canonical network and timer sets).

use agora_core::keys::{Keys, SeededKeys, SeededRing, Signature};
use agora_core::storage::{seal, Durable, Space, StoreOp, SyncDone};
use agora_core::{Command, Io, NodeId, Protocol, Time};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stateright::actor::{Actor, Id, Out};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

pub use stateright;

/// A protocol as a stateright actor: `factory` makes node `i`'s state.
pub struct Checked<P> {
    factory: Arc<dyn Fn(NodeId) -> P + Send + Sync>,
    instant_sync: bool,
}

impl<P> Clone for Checked<P> {
    fn clone(&self) -> Self {
        Checked { factory: self.factory.clone(), instant_sync: self.instant_sync }
    }
}

impl<P> Checked<P> {
    pub fn new(factory: impl Fn(NodeId) -> P + Send + Sync + 'static) -> Self {
        Checked { factory: Arc::new(factory), instant_sync: false }
    }

    /// Syncs complete within the handler that asks for them. Without
    /// crashes, when a sync completes is one more interleaving that changes
    /// nothing a property can see; leaving it out keeps large models
    /// searchable. With crashes it matters: keep the default.
    pub fn instant_sync(mut self) -> Self {
        self.instant_sync = true;
        self
    }
}

/// A node's timers in the model: the protocol's, and its disk completing
/// the oldest pending sync.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckTimer<T> {
    Proto(T),
    Disk,
}

/// A node's durable state: stateright's non-volatile storage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Disk {
    tables: BTreeMap<Space, BTreeMap<Vec<u8>, Vec<u8>>>,
    logs: BTreeMap<Space, Vec<Vec<u8>>>,
}

impl Disk {
    fn apply(&mut self, op: StoreOp) {
        match op {
            StoreOp::Put { space, key, value } => {
                self.tables.entry(space).or_default().insert(key, value);
            }
            StoreOp::Delete { space, key } => {
                self.tables.entry(space).or_default().remove(&key);
            }
            StoreOp::Append { space, record } => self.logs.entry(space).or_default().push(record),
            StoreOp::Sync { .. } => {}
        }
    }

    /// The disk as a restarted node reads it back.
    pub fn read_back(&self) -> Durable {
        let sealed_tables: Vec<(Space, &[u8], Vec<u8>)> =
            self.tables.iter().flat_map(|(s, t)| t.iter().map(move |(k, v)| (*s, k.as_slice(), seal(v)))).collect();
        let sealed_logs: Vec<(Space, u64, Vec<u8>)> = self
            .logs
            .iter()
            .flat_map(|(s, l)| l.iter().enumerate().map(move |(i, v)| (*s, i as u64, seal(v))))
            .collect();
        Durable::from_sealed(
            sealed_tables.iter().map(|(s, k, v)| (*s, *k, v.as_slice())),
            sealed_logs.iter().map(|(s, i, v)| (*s, *i, v.as_slice())),
        )
    }
}

/// A node in the model: the protocol's state, its durable state (a copy of
/// what stateright keeps as storage), writes not yet synced, and syncs
/// waiting for the disk.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeState<P> {
    pub proto: P,
    pub disk: Disk,
    pending: Vec<StoreOp>,
    syncing: Vec<(&'static str, u64, Vec<StoreOp>)>,
}

impl<P> std::ops::Deref for NodeState<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.proto
    }
}

/// Runs one handler and hands its commands to stateright; with instant
/// syncs, then the `on_synced` of each sync it asked for (and of theirs).
fn drive<P>(
    node: NodeId,
    state: &mut NodeState<P>,
    o: &mut Out<Checked<P>>,
    instant_sync: bool,
    f: impl FnOnce(&mut P, &mut Io<'_, P>),
) where
    P: Protocol + Clone + Debug + Eq + Hash + Sync,
    P::Msg: Eq + Hash,
    P::Timer: Sync,
{
    let mut synced = handle(node, state, o, instant_sync, f);
    while !synced.is_empty() {
        for done in std::mem::take(&mut synced) {
            synced.extend(handle(node, state, o, instant_sync, |p, io| p.on_synced(done, io)));
        }
    }
}

/// One handler: its commands go to stateright; returns the syncs completed
/// at once (instant syncs).
fn handle<P>(
    node: NodeId,
    state: &mut NodeState<P>,
    o: &mut Out<Checked<P>>,
    instant_sync: bool,
    f: impl FnOnce(&mut P, &mut Io<'_, P>),
) -> Vec<SyncDone>
where
    P: Protocol + Clone + Debug + Eq + Hash + Sync,
    P::Msg: Eq + Hash,
    P::Timer: Sync,
{
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (node, &state.proto).hash(&mut h);
    let mut rng = ChaCha8Rng::seed_from_u64(h.finish());
    let mut out = Vec::new();
    static KEYS: std::sync::OnceLock<RememberedKeys> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(RememberedKeys::default);
    f(&mut state.proto, &mut Io::new(node, Time::ZERO, &mut rng, &mut out).with_keys(keys));
    let mut synced = Vec::new();
    for cmd in out {
        match cmd {
            Command::Send { to, msg } => o.send(Id::from(to.index()), msg),
            // Any delay: stateright may fire it at any later point.
            Command::SetTimer { timer, .. } => {
                o.set_timer(CheckTimer::Proto(timer), Duration::ZERO..Duration::from_secs(1))
            }
            Command::CancelTimer { timer } => o.cancel_timer(CheckTimer::Proto(timer)),
            Command::Store(StoreOp::Sync { service, ticket }) if instant_sync => {
                for op in std::mem::take(&mut state.pending) {
                    state.disk.apply(op);
                }
                o.save(state.disk.clone());
                synced.push(SyncDone { service, ticket, result: Ok(()) });
            }
            Command::Store(StoreOp::Sync { service, ticket }) => {
                state.syncing.push((service, ticket, std::mem::take(&mut state.pending)));
                o.set_timer(CheckTimer::Disk, Duration::ZERO..Duration::from_secs(1));
            }
            Command::Store(op) => state.pending.push(op),
            Command::Output(_) | Command::Count { .. } => {}
        }
    }
    synced
}

impl<P> Actor for Checked<P>
where
    P: Protocol + Clone + Debug + Eq + Hash + Sync,
    P::Msg: Eq + Hash,
    P::Timer: Sync,
{
    type Msg = P::Msg;
    type Timer = CheckTimer<P::Timer>;
    type State = NodeState<P>;
    type Storage = Disk;
    type Random = ();

    fn on_start(&self, id: Id, storage: &Option<Disk>, o: &mut Out<Self>) -> NodeState<P> {
        let node = NodeId(usize::from(id) as u32);
        let mut proto = (self.factory)(node);
        let disk = storage.clone().unwrap_or_default();
        if storage.is_some() {
            proto.on_restore(&disk.read_back());
        }
        let mut state = NodeState { proto, disk, pending: Vec::new(), syncing: Vec::new() };
        drive(node, &mut state, o, self.instant_sync, |p, io| p.on_start(io));
        state
    }

    fn on_msg(&self, id: Id, state: &mut Cow<NodeState<P>>, src: Id, msg: P::Msg, o: &mut Out<Self>) {
        let node = NodeId(usize::from(id) as u32);
        let from = NodeId(usize::from(src) as u32);
        drive(node, state.to_mut(), o, self.instant_sync, |p, io| p.on_message(from, msg, io));
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<NodeState<P>>, timer: &CheckTimer<P::Timer>, o: &mut Out<Self>) {
        let node = NodeId(usize::from(id) as u32);
        match timer.clone() {
            CheckTimer::Proto(timer) => {
                drive(node, state.to_mut(), o, self.instant_sync, |p, io| p.on_timer(timer, io))
            }
            CheckTimer::Disk => {
                let s = state.to_mut();
                if s.syncing.is_empty() {
                    return;
                }
                let (service, ticket, ops) = s.syncing.remove(0);
                for op in ops {
                    s.disk.apply(op);
                }
                o.save(s.disk.clone());
                if !s.syncing.is_empty() {
                    o.set_timer(CheckTimer::Disk, Duration::ZERO..Duration::from_secs(1));
                }
                drive(node, s, o, false, |p, io| p.on_synced(SyncDone { service, ticket, result: Ok(()) }, io));
            }
        }
    }
}

/// The checker's keys: seed 0's, each derived once, and every signature
/// made or checked remembered. An exploration handles the same few signed
/// messages in millions of states; without this, curve arithmetic was
/// most of a PBFT model's time.
struct RememberedKeys {
    ring: SeededRing,
    signed: std::sync::Mutex<std::collections::HashMap<(NodeId, Vec<u8>), Signature>>,
    verified: std::sync::Mutex<std::collections::HashMap<SignatureCheck, bool>>,
}

/// A signature check: signer, message, signature.
type SignatureCheck = (NodeId, Vec<u8>, [u8; 64]);

impl Default for RememberedKeys {
    fn default() -> Self {
        RememberedKeys { ring: SeededKeys { seed: 0 }.ring(), signed: Default::default(), verified: Default::default() }
    }
}

impl Keys for RememberedKeys {
    fn sign(&self, me: NodeId, msg: &[u8]) -> Option<Signature> {
        let mut signed = self.signed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sig) = signed.get(&(me, msg.to_vec())) {
            return Some(*sig);
        }
        let sig = self.ring.sign(me, msg)?;
        signed.insert((me, msg.to_vec()), sig);
        Some(sig)
    }
    fn verify(&self, who: NodeId, msg: &[u8], sig: &Signature) -> bool {
        let key = (who, msg.to_vec(), sig.to_bytes());
        if let Some(ok) = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return *ok;
        }
        let ok = self.ring.verify(who, msg, sig);
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(key, ok);
        ok
    }
    fn pair_key(&self, me: NodeId, peer: NodeId) -> Option<agora_core::keys::PairKey> {
        self.ring.pair_key(me, peer)
    }
}
