//! **Vector team formation** (seed §1.4): tokens come in colours, and a team
//! is `sizes[c]` tokens of each colour c.
//!
//! As the seed describes it: one copy of team formation per colour, with
//! k = `sizes[c]`; whenever copy c forms a team, its node gains a
//! *super-token* of colour c. A last copy collects super-tokens, and forms a
//! vector team from one super-token of each colour. That copy's tokens are
//! tagged by colour, so its transports are at most one (colour, count) pair
//! per colour: bounded although a node may hold many super-tokens of one
//! colour while it waits for the others. Its merging is colour-blind, so by
//! accumulation all super-tokens meet at one node unless a team forms first:
//! liveness.
//!
//! [`VectorNode`] runs the C + 1 copies in one node, over the same
//! primary–utility graph, and tags each message with its copy.
//! The direct baseline (`agora_lab::teams::vector::Algorithm::Direct`) is
//! one copy over colour-tagged tokens whose team
//! rule is the whole vector.
//!
//! Token conservation is checked in raw tokens after every event: a
//! super-token of colour c counts `sizes[c]`, so the existing check applies
//! with k = Σ sizes.

use crate::counters;
use crate::node::{transport_total, Principal, MAX_VECTOR_TRANSPORT};
use crate::Holder;
use crate::{Config, Graph, Input, Msg, Node, Output};
use agora_core::{Command, Io, Message, NodeId, Protocol};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A message of one copy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorMsg {
    pub copy: u8,
    pub msg: Msg,
}

impl Message for VectorMsg {
    fn kind(&self) -> &'static str {
        self.msg.kind()
    }
}

/// The most colours: copies are numbered by a byte, the collector last.
pub const MAX_COLOURS: usize = 64;

/// A node of the super-token algorithm: copy c < C forms teams of colour c,
/// copy C collects super-tokens.
pub struct VectorNode {
    sizes: Arc<Vec<u64>>,
    copies: Vec<Node>,
}

impl VectorNode {
    pub fn new(graph: Graph, sizes: Arc<Vec<u64>>, me: NodeId) -> Self {
        let mut copies: Vec<Node> =
            sizes.iter().map(|&k| Node::new(Arc::new(Config::new(graph.clone(), k)), me)).collect();
        let collector = Config { colours: Some(vec![1; sizes.len()]), ..Config::new(graph, sizes.len() as u64) };
        copies.push(Node::new(Arc::new(collector), me));
        VectorNode { sizes, copies }
    }

    fn collector(&self) -> usize {
        self.sizes.len()
    }

    /// Runs one copy's handler and turns its commands into this node's.
    fn drive(&mut self, copy: usize, io: &mut Io<'_, Self>, f: impl FnOnce(&mut Node, &mut Io<'_, Node>)) {
        let mut out = Vec::new();
        f(&mut self.copies[copy], &mut io.nested(&mut out));
        self.apply(copy, out, io);
    }

    fn apply(&mut self, copy: usize, out: Vec<Command<Node>>, io: &mut Io<'_, Self>) {
        let collecting = copy == self.collector();
        for cmd in out {
            match cmd {
                Command::Send { to, msg } => {
                    if let (true, Msg::Relay { msg: Principal::Transport(t), .. }) = (collecting, &msg) {
                        io.count(counters::TOKENS_TRANSPORTED, weight(&self.sizes, t));
                    }
                    io.send(to, VectorMsg { copy: copy as u8, msg });
                }
                Command::Output(Output::Team(_)) if !collecting => {
                    // A team of colour `copy` becomes a super-token here.
                    io.count(counters::SUPER_TOKENS, 1);
                    let c = self.collector();
                    self.drive(c, io, |n, io| n.on_input(Input::Tagged(copy as u64), io));
                }
                Command::Output(o) => io.output(o),
                // A colour team turns k_c tokens into a super-token of the
                // same weight; the collector's own counts are raw weights,
                // kept here.
                Command::Count { name: counters::TEAMS, by, .. } if !collecting => io.count(counters::COLOUR_TEAMS, by),
                Command::Count {
                    name: counters::INJECTED | counters::TOKENS_TRANSPORTED | counters::TOKENS_RECEIVED,
                    ..
                } if collecting => {}
                Command::Count { name, by, .. } => io.count(name, by),
                Command::SetTimer { .. } | Command::CancelTimer { .. } | Command::Store(_) => {
                    unreachable!("team formation sets no timers and stores nothing")
                }
            }
        }
    }

    /// Tokens of colour c held here, raw (in copy c) and as super-tokens.
    pub fn held(&self, c: usize) -> (u64, u64) {
        (self.copies[c].tokens(), self.copies[self.collector()].held().filter(|&t| t == c as u64).count() as u64)
    }
}

/// Super-tokens in a collector transport, weighed in raw tokens.
fn weight(sizes: &[u64], t: &[(u64, u32)]) -> u64 {
    t.iter().map(|&(c, n)| sizes.get(c as usize).copied().unwrap_or(0) * u64::from(n)).sum()
}

impl Holder for VectorNode {
    /// Raw tokens: a super-token of colour c counts `sizes[c]`.
    fn tokens(&self) -> u64 {
        (0..self.sizes.len()).map(|c| self.held(c)).zip(self.sizes.iter()).map(|((raw, sup), k)| raw + sup * k).sum()
    }
}

impl Protocol for VectorNode {
    type Msg = VectorMsg;
    type Timer = ();
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, _io: &mut Io<'_, Self>) {}

    fn on_message(&mut self, from: NodeId, msg: VectorMsg, io: &mut Io<'_, Self>) {
        let copy = msg.copy as usize;
        if copy >= self.copies.len() {
            io.count(counters::MALFORMED_COPY, 1);
            return;
        }
        if let (true, Msg::Relayed { msg: Principal::Transport(t), .. }) = (copy == self.collector(), &msg.msg) {
            // The copy receives it unless it is malformed.
            if transport_total(t) <= MAX_VECTOR_TRANSPORT {
                io.count(counters::TOKENS_RECEIVED, weight(&self.sizes, t));
            }
        }
        self.drive(copy, io, |n, io| n.on_message(from, msg.msg, io));
    }

    fn on_timer(&mut self, _: (), _io: &mut Io<'_, Self>) {}

    fn check_input(&self, input: &Input) -> Result<(), String> {
        match *input {
            Input::Tagged(c) if (c as usize) >= self.sizes.len() => {
                Err(format!("no colour {c} (the colours are 0..{})", self.sizes.len()))
            }
            Input::Tagged(_) => Ok(()),
            _ => Err("a vector node takes Tagged(colour) inputs only".into()),
        }
    }

    /// `Input::Tagged(c)`: one token of colour c.
    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        match input {
            Input::Tagged(c) if (c as usize) < self.sizes.len() => {
                self.drive(c as usize, io, |n, io| n.on_input(Input::Inject(1), io))
            }
            _ => io.count(counters::BAD_INPUT, 1),
        }
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({ "tokens": Holder::tokens(self) })
    }
}

/// A protocol whose nodes hold coloured tokens: what the end check reads.
pub trait Colours: Holder {
    /// Raw tokens of colour c held here (a super-token counts `sizes[c]`).
    fn raw(&self, c: usize) -> u64;
    /// For each copy of team formation run here, whether it holds tokens.
    fn holding(&self) -> Vec<bool>;
}

impl Colours for VectorNode {
    fn raw(&self, c: usize) -> u64 {
        let (raw, sup) = self.held(c);
        raw + sup * self.sizes[c]
    }
    fn holding(&self) -> Vec<bool> {
        self.copies.iter().map(|n| n.tokens() > 0).collect()
    }
}

impl Colours for Node {
    fn raw(&self, c: usize) -> u64 {
        self.held().filter(|&t| t == c as u64).count() as u64
    }
    fn holding(&self) -> Vec<bool> {
        vec![self.tokens() > 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_of_a_colour_the_node_does_not_have_is_refused() {
        let node = VectorNode::new(Graph::new(16, 2.0, 0.1, 1), Arc::new(vec![2, 3]), NodeId(0));
        assert_eq!(node.check_input(&Input::Tagged(1)), Ok(()));
        assert_eq!(node.check_input(&Input::Tagged(2)), Err("no colour 2 (the colours are 0..2)".into()));
    }
}
