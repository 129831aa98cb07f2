//! Baselines for the comparison tables, in the same simulator, with the same
//! network, faults, token schedule and checks as team formation, so their
//! message counts compare like with like.
//!
//! * [`LeaderGather`]: a leader (node 0, elected once beforehand: its
//!   election is not counted) receives every token directly and forms the
//!   teams. One message per token, and no fault tolerance: when the leader is
//!   faulty, every token sent to it is lost.
//! * [`Broadcast`]: every injected token is announced to all n nodes.
//!   Tokens flow to the smallest holder id each node has heard of, and teams
//!   form there. About n messages per token. It tolerates faulty nodes,
//!   since they never hold tokens and so never attract any.

use crate::counters;
use crate::Holder;
use crate::{Input, Output};
use agora_core::{Io, Message, NodeId, Protocol};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BaselineMsg {
    /// Carries tokens (their tags).
    Tokens(Vec<u64>),
    /// "I hold tokens."
    Have,
}

impl Message for BaselineMsg {
    fn kind(&self) -> &'static str {
        match self {
            BaselineMsg::Tokens(_) => "transport",
            BaselineMsg::Have => "have",
        }
    }
}

/// Forms ⌊τ/k⌋ teams at a node holding τ tokens.
fn form<P: Protocol<Output = Output>>(tokens: &mut Vec<u64>, k: u64, io: &mut Io<'_, P>) {
    while tokens.len() as u64 >= k {
        io.output(Output::Team(tokens.drain(..k as usize).collect()));
        io.count(counters::TEAMS, 1);
    }
}

fn send_tokens<P: Protocol<Msg = BaselineMsg>>(to: NodeId, t: Vec<u64>, io: &mut Io<'_, P>) {
    io.count(counters::TOKENS_TRANSPORTED, t.len() as u64);
    io.send(to, BaselineMsg::Tokens(t));
}

pub struct LeaderGather {
    me: NodeId,
    k: u64,
    tokens: Vec<u64>,
}

impl LeaderGather {
    pub const LEADER: NodeId = NodeId(0);
    pub fn new(me: NodeId, k: u64) -> Self {
        LeaderGather { me, k, tokens: Vec::new() }
    }
}

impl Holder for LeaderGather {
    fn tokens(&self) -> u64 {
        self.tokens.len() as u64
    }
}

impl Protocol for LeaderGather {
    type Msg = BaselineMsg;
    type Timer = ();
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, _: &mut Io<'_, Self>) {}
    fn on_timer(&mut self, _: (), _: &mut Io<'_, Self>) {}

    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        let t = input.tags(self.me);
        io.count(counters::INJECTED, t.len() as u64);
        if self.me == Self::LEADER {
            self.tokens.extend(t);
            form(&mut self.tokens, self.k, io);
        } else {
            send_tokens(Self::LEADER, t, io);
        }
    }

    fn on_message(&mut self, _: NodeId, msg: BaselineMsg, io: &mut Io<'_, Self>) {
        if let BaselineMsg::Tokens(t) = msg {
            io.count(counters::TOKENS_RECEIVED, t.len() as u64);
            self.tokens.extend(t);
            form(&mut self.tokens, self.k, io);
        }
    }
}

pub struct Broadcast {
    me: NodeId,
    n: u32,
    k: u64,
    tokens: Vec<u64>,
    /// The smallest holder this node has heard of (itself included).
    best: Option<NodeId>,
}

impl Broadcast {
    pub fn new(me: NodeId, n: u32, k: u64) -> Self {
        Broadcast { me, n, k, tokens: Vec::new(), best: None }
    }

    /// Hands what it holds to a smaller holder, or keeps it and forms teams.
    fn settle(&mut self, io: &mut Io<'_, Self>) {
        match self.best {
            Some(b) if b < self.me && !self.tokens.is_empty() => {
                send_tokens(b, std::mem::take(&mut self.tokens), io);
            }
            _ => form(&mut self.tokens, self.k, io),
        }
    }

    fn receive(&mut self, t: Vec<u64>, io: &mut Io<'_, Self>) {
        if self.best.is_none_or(|b| b > self.me) {
            self.best = Some(self.me);
        }
        self.tokens.extend(t);
        self.settle(io);
    }

    /// A token was injected here: everyone hears of it.
    fn announce(&mut self, io: &mut Io<'_, Self>) {
        for v in (0..self.n).map(NodeId).filter(|&v| v != self.me) {
            io.send(v, BaselineMsg::Have);
        }
    }
}

impl Holder for Broadcast {
    fn tokens(&self) -> u64 {
        self.tokens.len() as u64
    }
}

impl Protocol for Broadcast {
    type Msg = BaselineMsg;
    type Timer = ();
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, _: &mut Io<'_, Self>) {}
    fn on_timer(&mut self, _: (), _: &mut Io<'_, Self>) {}

    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        let t = input.tags(self.me);
        io.count(counters::INJECTED, t.len() as u64);
        self.announce(io);
        self.receive(t, io);
    }

    fn on_message(&mut self, from: NodeId, msg: BaselineMsg, io: &mut Io<'_, Self>) {
        match msg {
            BaselineMsg::Have => {
                if self.best.is_none_or(|b| from < b) {
                    self.best = Some(from);
                }
                self.settle(io);
            }
            BaselineMsg::Tokens(t) => {
                io.count(counters::TOKENS_RECEIVED, t.len() as u64);
                self.receive(t, io);
            }
        }
    }
}
