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
//! The protocol's state is the actor's state, so it must be
//! `Clone + Debug + Eq + Hash`; stateright also wants messages and timers
//! `Eq + Hash + Ord` (for canonical network and timer sets).

use agora_core::{Command, Io, NodeId, Protocol, Time};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stateright::actor::{Actor, Id, Out};
use std::borrow::Cow;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

pub use stateright;

/// A protocol as a stateright actor: `factory` makes node `i`'s state.
pub struct Checked<P> {
    factory: Arc<dyn Fn(NodeId) -> P + Send + Sync>,
}

impl<P> Clone for Checked<P> {
    fn clone(&self) -> Self {
        Checked { factory: self.factory.clone() }
    }
}

impl<P> Checked<P> {
    pub fn new(factory: impl Fn(NodeId) -> P + Send + Sync + 'static) -> Self {
        Checked { factory: Arc::new(factory) }
    }
}

/// Runs one handler and hands its commands to stateright.
fn drive<P>(node: NodeId, state: &mut P, o: &mut Out<Checked<P>>, f: impl FnOnce(&mut P, &mut Io<'_, P>))
where
    P: Protocol + Clone + Debug + Eq + Hash + Sync,
    P::Msg: Eq + Hash,
    P::Timer: Sync,
{
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (node, &*state).hash(&mut h);
    let mut rng = ChaCha8Rng::seed_from_u64(h.finish());
    let mut out = Vec::new();
    f(state, &mut Io::new(node, Time::ZERO, &mut rng, &mut out));
    for cmd in out {
        match cmd {
            Command::Send { to, msg } => o.send(Id::from(to.index()), msg),
            // Any delay: stateright may fire it at any later point.
            Command::SetTimer { timer, .. } => o.set_timer(timer, Duration::ZERO..Duration::from_secs(1)),
            Command::CancelTimer { timer } => o.cancel_timer(timer),
            Command::Output(_) | Command::Count { .. } => {}
        }
    }
}

impl<P> Actor for Checked<P>
where
    P: Protocol + Clone + Debug + Eq + Hash + Sync,
    P::Msg: Eq + Hash,
    P::Timer: Sync,
{
    type Msg = P::Msg;
    type Timer = P::Timer;
    type State = P;
    type Storage = ();
    type Random = ();

    fn on_start(&self, id: Id, _: &Option<()>, o: &mut Out<Self>) -> P {
        let node = NodeId(usize::from(id) as u32);
        let mut state = (self.factory)(node);
        drive(node, &mut state, o, |p, io| p.on_start(io));
        state
    }

    fn on_msg(&self, id: Id, state: &mut Cow<P>, src: Id, msg: P::Msg, o: &mut Out<Self>) {
        let node = NodeId(usize::from(id) as u32);
        let from = NodeId(usize::from(src) as u32);
        drive(node, state.to_mut(), o, |p, io| p.on_message(from, msg, io));
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<P>, timer: &P::Timer, o: &mut Out<Self>) {
        let node = NodeId(usize::from(id) as u32);
        let timer = timer.clone();
        drive(node, state.to_mut(), o, |p, io| p.on_timer(timer, io));
    }
}
