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
    /// Add `by` to the protocol-defined counter `name`.
    Count { name: &'static str, by: u64 },
}

/// The handle a protocol handler receives: who it is, what time it is, the
/// driver's random number generator, and the command buffer.
pub struct Io<'a, P: Protocol + ?Sized> {
    me: NodeId,
    now: Time,
    rng: &'a mut dyn RngCore,
    out: &'a mut Vec<Command<P>>,
}

impl<'a, P: Protocol + ?Sized> Io<'a, P> {
    /// Made by drivers only: `out` collects the handler's commands.
    pub fn new(me: NodeId, now: Time, rng: &'a mut dyn RngCore, out: &'a mut Vec<Command<P>>) -> Self {
        Io { me, now, rng, out }
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
        self.out.push(Command::Count { name, by });
    }
}
