use crate::keys::{Keys, NoKeys, Signature, Tag};
use crate::storage::{Space, StoreOp};
use crate::{NodeId, Protocol, Time};
use rand::RngCore;
use std::time::Duration;

/// What a protocol asks its driver to do. Drivers apply a handler's commands
/// in the order they were pushed.
#[derive(Debug)]
pub enum Command<P: Protocol + ?Sized> {
    /// Send `msg` to node `to` (possibly the node itself).
    Send { to: NodeId, msg: P::Msg },
    /// Fire `timer` after `after`; re-arms it if it is already pending.
    SetTimer { after: Duration, timer: P::Timer },
    /// Forget a pending timer; no effect if it is not pending.
    CancelTimer { timer: P::Timer },
    /// Report something to the outside world.
    Output(P::Output),
    /// Add `by` to the protocol-defined counter `name` of `service` (`""`
    /// for a protocol running alone; set by the composition layer).
    Count { service: &'static str, name: &'static str, by: u64 },
    /// Write to the node's durable storage (see [`crate::storage`]).
    Store(StoreOp),
}

/// The handle a protocol handler receives: who it is, what time it is, the
/// driver's random number generator, its keys, and the command buffer.
pub struct Io<'a, P: Protocol + ?Sized> {
    me: NodeId,
    now: Time,
    rng: &'a mut dyn RngCore,
    keys: &'a dyn Keys,
    out: &'a mut Vec<Command<P>>,
}

impl<'a, P: Protocol + ?Sized> Io<'a, P> {
    /// Made by drivers only: `out` collects the handler's commands.
    pub fn new(me: NodeId, now: Time, rng: &'a mut dyn RngCore, out: &'a mut Vec<Command<P>>) -> Self {
        Io { me, now, rng, keys: &NoKeys, out }
    }

    /// The driver's signing keys (drivers only; without them `sign` is `None`).
    pub fn with_keys(mut self, keys: &'a dyn Keys) -> Self {
        self.keys = keys;
        self
    }

    /// An `Io` for a protocol nested in this one (composition): same node,
    /// time, randomness and keys, its own command buffer.
    pub fn nested<'b, Q: Protocol + ?Sized>(&'b mut self, out: &'b mut Vec<Command<Q>>) -> Io<'b, Q> {
        Io { me: self.me, now: self.now, rng: &mut *self.rng, keys: self.keys, out }
    }

    /// An `Io` for a protocol nested in this one that numbers nodes its own
    /// way (a PBFT group inside a larger system): `me` in its numbering,
    /// and `keys` that sign and authenticate as the nodes it names (see
    /// [`crate::keys::Renamed`]).
    pub fn nested_as<'b, Q: Protocol + ?Sized>(
        &'b mut self,
        me: NodeId,
        keys: &'b dyn Keys,
        out: &'b mut Vec<Command<Q>>,
    ) -> Io<'b, Q> {
        Io { me, now: self.now, rng: &mut *self.rng, keys, out }
    }

    /// The driver's keys, for a nested protocol's [`Io::nested_as`].
    pub fn keys(&self) -> &'a dyn Keys {
        self.keys
    }

    /// Pushes a command as it is (composition layers forward translated ones).
    pub fn push(&mut self, cmd: Command<P>) {
        self.out.push(cmd);
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }
    /// The driver's current time.
    pub fn now(&self) -> Time {
        self.now
    }
    /// The driver's random number generator: the only source of randomness a
    /// protocol may use. Works with `rand::Rng`'s methods.
    pub fn rng(&mut self) -> &mut dyn RngCore {
        self.rng
    }
    pub fn send(&mut self, to: NodeId, msg: P::Msg) {
        self.out.push(Command::Send { to, msg });
    }
    pub fn set_timer(&mut self, after: Duration, timer: P::Timer) {
        self.out.push(Command::SetTimer { after, timer });
    }
    pub fn cancel_timer(&mut self, timer: P::Timer) {
        self.out.push(Command::CancelTimer { timer });
    }
    pub fn output(&mut self, output: P::Output) {
        self.out.push(Command::Output(output));
    }
    pub fn count(&mut self, name: &'static str, by: u64) {
        self.out.push(Command::Count { service: "", name, by });
    }

    // ---- durable storage (see `crate::storage`) ----

    /// Sets `key` in `table` to `value` (durable after the next sync).
    pub fn put(&mut self, table: &'static str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let space = Space { service: "", name: table };
        self.out.push(Command::Store(StoreOp::Put { space, key: key.into(), value: value.into() }));
    }
    /// Removes `key` from `table` (durable after the next sync).
    pub fn delete(&mut self, table: &'static str, key: impl Into<Vec<u8>>) {
        let space = Space { service: "", name: table };
        self.out.push(Command::Store(StoreOp::Delete { space, key: key.into() }));
    }
    /// Appends `record` to `log` (durable after the next sync).
    pub fn append(&mut self, log: &'static str, record: impl Into<Vec<u8>>) {
        let space = Space { service: "", name: log };
        self.out.push(Command::Store(StoreOp::Append { space, record: record.into() }));
    }
    /// Asks for every write so far to be made durable; the driver answers
    /// with [`Protocol::on_synced`] carrying `ticket`. Acknowledge nothing
    /// that depends on those writes before then.
    pub fn sync(&mut self, ticket: u64) {
        self.out.push(Command::Store(StoreOp::Sync { service: "", ticket }));
    }

    // ---- signatures (see `crate::keys`) ----

    /// Signs `msg` with this node's key, where the driver holds one.
    pub fn sign(&self, msg: &[u8]) -> Option<Signature> {
        self.keys.sign(self.me, msg)
    }
    /// Whether `sig` is node `who`'s signature of `msg`.
    pub fn verify(&self, who: NodeId, msg: &[u8], sig: &Signature) -> bool {
        self.keys.verify(who, msg, sig)
    }

    /// This node's MAC of `data` for `peer` (under the key they share),
    /// where the driver holds the keys.
    pub fn mac(&self, peer: NodeId, data: &[u8]) -> Option<Tag> {
        Some(crate::keys::mac(&self.keys.pair_key(self.me, peer)?, data))
    }
    /// Whether `tag` is `peer`'s MAC of `data` for this node.
    pub fn check_mac(&self, peer: NodeId, data: &[u8], tag: &Tag) -> bool {
        use subtle::ConstantTimeEq as _;
        self.mac(peer, data).is_some_and(|t| bool::from(t.ct_eq(tag)))
    }
}
