//! A node of a PBFT group as one protocol: a replica or a client.

use crate::auth::Envelope;
use crate::byzantine::{Behaviour, Byzantine};
use crate::client::{Client, Workload};
use crate::replica::Replica;
use crate::{Config, StateMachine};
use agora_core::{Io, NodeId, Protocol};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Node<M> {
    Replica(Box<Replica<M>>),
    /// A replica that misbehaves: not checked as a correct one.
    Byzantine(Box<Byzantine<M>>),
    Client(Box<Client>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// A replica tells its peers how far it is (and asks again for a state).
    Status,
    /// The primary's batch delay is over.
    Batch,
    /// A replica's request timer (the view is suspected), or a view
    /// change that did not complete in time.
    ViewChange,
    /// A client's request has waited a timeout for f + 1 matching replies.
    Retransmit,
}

/// What the outside world hands a client.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Input {
    /// Order and execute `op`.
    Submit { op: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// A client's request completed: f + 1 replicas gave this result.
    Done { timestamp: u64, result: Vec<u8>, latency_ns: u64 },
}

impl<M: StateMachine> Node<M> {
    /// Node `id` of a group: a replica holding `machine`, or a client
    /// running `workload`.
    pub fn new(cfg: Arc<Config>, id: NodeId, machine: impl FnOnce() -> M, workload: Workload) -> Self {
        if cfg.is_replica(id) {
            Node::Replica(Box::new(Replica::new(cfg, id, machine())))
        } else {
            Node::Client(Box::new(Client::new(cfg, id, workload)))
        }
    }

    /// Node `id`, a replica holding `machine` that misbehaves as `behaviour`.
    pub fn byzantine(cfg: Arc<Config>, id: NodeId, machine: M, behaviour: Behaviour) -> Self {
        Node::Byzantine(Box::new(Byzantine::new(cfg, id, machine, behaviour)))
    }

    /// A replica turns Byzantine (`Some`) or correct again (`None`) where
    /// it is, keeping its state: a failure injector's doing. Clients stay
    /// as they are; twins need two instances from the start
    /// ([`Node::byzantine`]), so a running replica cannot turn into them.
    pub fn turn(&mut self, behaviour: Option<Behaviour>)
    where
        M: Clone,
    {
        let replica = match self {
            Node::Replica(r) => (**r).clone(),
            Node::Byzantine(b) => b.replica.clone(),
            Node::Client(_) => return,
        };
        *self = match behaviour {
            Some(b) if b != Behaviour::Twins => Node::Byzantine(Box::new(Byzantine::turned(replica, b))),
            _ => Node::Replica(Box::new(replica)),
        };
    }

    /// A correct replica's state (not a Byzantine one's).
    pub fn replica(&self) -> Option<&Replica<M>> {
        match self {
            Node::Replica(r) => Some(r),
            _ => None,
        }
    }
    pub fn client(&self) -> Option<&Client> {
        match self {
            Node::Client(c) => Some(c),
            _ => None,
        }
    }
}

impl<M: StateMachine> Protocol for Node<M> {
    type Msg = Envelope;
    type Timer = Timer;
    type Input = Input;
    type Output = Output;

    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        match self {
            Node::Replica(r) => r.on_start(io),
            Node::Byzantine(b) => b.handle(io, |r, io| r.on_start(io)),
            Node::Client(c) => c.on_start(io),
        }
    }
    fn on_message(&mut self, from: NodeId, envelope: Envelope, io: &mut Io<'_, Self>) {
        if !envelope.authentic(from, io) {
            io.count("ignored_unauthenticated", 1);
            return;
        }
        let msg = envelope.msg;
        match self {
            Node::Replica(r) => r.on_message(from, msg, io),
            Node::Byzantine(b) => b.on_message(from, msg, io),
            Node::Client(c) => c.on_message(from, msg, io),
        }
    }
    fn on_timer(&mut self, timer: Timer, io: &mut Io<'_, Self>) {
        match self {
            Node::Replica(r) => r.on_timer(timer, io),
            Node::Byzantine(b) => b.on_timer(timer, io),
            Node::Client(c) => c.on_timer(timer, io),
        }
    }
    fn on_input(&mut self, input: Input, io: &mut Io<'_, Self>) {
        let Input::Submit { op } = input;
        if let Node::Client(c) = self {
            c.submit(op.into_bytes(), io);
        }
    }
    fn check_input(&self, input: &Input) -> Result<(), String> {
        match (self, input) {
            (Node::Client(_), _) => Ok(()),
            (Node::Replica(_) | Node::Byzantine(_), Input::Submit { .. }) => {
                Err("a replica takes no requests from outside; submit to a client node".into())
            }
        }
    }
    fn status(&self) -> serde_json::Value {
        match self {
            Node::Replica(r) => r.status(),
            Node::Byzantine(b) => serde_json::json!({"role": "byzantine replica", "behaviour": b.behaviour}),
            Node::Client(c) => c.status(),
        }
    }
}
