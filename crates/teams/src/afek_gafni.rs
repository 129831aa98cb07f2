//! The Afek–Gafni style asynchronous leader election baseline (complete
//! network): every node is a candidate and tries to capture the others one
//! at a time. A capture carries the candidate's (level, id), where the level
//! is how many nodes it holds. A node captured by a smaller pair is taken
//! over after its owner is asked to die (and dies, unless it has grown past
//! the challenger meanwhile). A candidate that is refused stops. The one that
//! captures all n − 1 others leads. O(n log n) messages.
//!
//! In the same simulator as team formation, so the message counts of
//! `agora teams le` and this compare like with like.

use crate::counters;
use agora_core::{Io, Message, NodeId, Protocol};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A candidate's strength: (level, id), compared lexicographically.
type Strength = (u32, u32);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AgMsg {
    Capture(Strength),
    Accept,
    Reject,
    /// Node → its owner: a stronger candidate claims me; die if weaker.
    Kill(Strength),
    Killed,
    Survived,
}

impl Message for AgMsg {
    fn kind(&self) -> &'static str {
        match self {
            AgMsg::Capture(_) => "capture",
            AgMsg::Accept | AgMsg::Reject => "answer",
            AgMsg::Kill(_) => "kill",
            AgMsg::Killed | AgMsg::Survived => "kill_answer",
        }
    }
}

pub struct AgNode {
    me: NodeId,
    n: u32,
    alive: bool,
    level: u32,
    /// Who owns this node (itself at first) and how strong it was then.
    owner: (NodeId, Strength),
    /// A capture being decided (waiting for the owner's answer), and the
    /// ones queued behind it.
    deciding: Option<(NodeId, Strength)>,
    queue: VecDeque<(NodeId, Strength)>,
    leader: bool,
}

impl AgNode {
    pub fn new(me: NodeId, n: u32) -> Self {
        AgNode {
            me,
            n,
            alive: true,
            level: 0,
            owner: (me, (0, me.0)),
            deciding: None,
            queue: VecDeque::new(),
            leader: false,
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader
    }

    fn strength(&self) -> Strength {
        (self.level, self.me.0)
    }

    fn capture_next(&mut self, io: &mut Io<'_, Self>) {
        if self.level + 1 >= self.n {
            self.leader = true;
            io.count(counters::LEADERS, 1);
            return;
        }
        let target = NodeId((self.me.0 + self.level + 1) % self.n);
        io.send(target, AgMsg::Capture(self.strength()));
    }

    /// Decides the next queued capture, if none is being decided.
    fn next_capture(&mut self, io: &mut Io<'_, Self>) {
        while self.deciding.is_none() {
            let Some((from, s)) = self.queue.pop_front() else { return };
            if self.owner.0 == self.me {
                // Owned by myself: compare with my current strength.
                if self.alive && s < self.strength() {
                    io.send(from, AgMsg::Reject);
                } else {
                    self.alive = false;
                    self.owner = (from, s);
                    io.send(from, AgMsg::Accept);
                }
            } else {
                // Ask my owner to die for the challenger.
                self.deciding = Some((from, s));
                io.send(self.owner.0, AgMsg::Kill(s));
            }
        }
    }
}

impl Protocol for AgNode {
    type Msg = AgMsg;
    type Timer = ();
    type Input = ();
    type Output = ();

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        self.capture_next(io);
    }

    fn on_message(&mut self, from: NodeId, msg: AgMsg, io: &mut Io<'_, Self>) {
        match msg {
            AgMsg::Capture(s) => {
                self.queue.push_back((from, s));
                self.next_capture(io);
            }
            AgMsg::Accept => {
                if self.alive {
                    self.level += 1;
                    self.capture_next(io);
                }
            }
            AgMsg::Reject => self.alive = false,
            AgMsg::Kill(s) => {
                if self.alive && s < self.strength() {
                    io.send(from, AgMsg::Survived);
                } else {
                    self.alive = false;
                    io.send(from, AgMsg::Killed);
                }
            }
            AgMsg::Killed | AgMsg::Survived => {
                let Some((challenger, s)) = self.deciding.take() else { return };
                if msg == AgMsg::Killed {
                    self.owner = (challenger, s);
                    io.send(challenger, AgMsg::Accept);
                } else {
                    io.send(challenger, AgMsg::Reject);
                }
                self.next_capture(io);
            }
        }
    }

    fn on_timer(&mut self, _: (), _: &mut Io<'_, Self>) {}
}
