//! A PBFT client: one request outstanding at a time, sent to every
//! replica and resent until f + 1 replicas reply with the same result —
//! at least one of them correct, so the result is the group's.

use crate::auth::send;
use crate::msg::{Msg, Request};
use crate::node::{Node, Output, Timer};
use crate::{Config, StateMachine};
use agora_core::{Io, NodeId, Time};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// The requests a client sends by itself: `requests` operations of
/// `op_bytes` bytes each, one after the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Workload {
    pub requests: u32,
    pub op_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Outstanding {
    request: Request,
    sent: Time,
    /// Each replica's first reply.
    replies: BTreeMap<NodeId, Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    cfg: Arc<Config>,
    me: NodeId,
    workload: Workload,
    /// Operations handed in as inputs, sent before the workload's.
    queue: VecDeque<Vec<u8>>,
    timestamp: u64,
    outstanding: Option<Outstanding>,
    done: u64,
}

impl Client {
    pub fn new(cfg: Arc<Config>, me: NodeId, workload: Workload) -> Self {
        Client { cfg, me, workload, queue: VecDeque::new(), timestamp: 0, outstanding: None, done: 0 }
    }

    /// Requests that completed.
    pub fn done(&self) -> u64 {
        self.done
    }
    /// Requests still to complete: the outstanding one, the queued and the workload's.
    pub fn remaining(&self) -> u64 {
        self.outstanding.is_some() as u64 + self.queue.len() as u64 + self.workload.requests as u64
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "role": "client",
            "done": self.done,
            "outstanding": self.outstanding.as_ref().map(|o| o.request.timestamp),
            "remaining": self.remaining(),
        })
    }

    pub(crate) fn on_start<M: StateMachine>(&mut self, io: &mut Io<'_, Node<M>>) {
        if self.outstanding.is_some() {
            self.send(io);
        } else {
            self.next(io);
        }
    }

    pub(crate) fn submit<M: StateMachine>(&mut self, op: Vec<u8>, io: &mut Io<'_, Node<M>>) {
        self.queue.push_back(op);
        self.next(io);
    }

    /// Sends the next operation, if none is outstanding.
    fn next<M: StateMachine>(&mut self, io: &mut Io<'_, Node<M>>) {
        if self.outstanding.is_some() {
            return;
        }
        let op = match self.queue.pop_front() {
            Some(op) => op,
            None if self.workload.requests > 0 => {
                self.workload.requests -= 1;
                vec![b'.'; self.workload.op_bytes]
            }
            None => return,
        };
        // Timestamps grow across restarts too (the driver's clock does), so
        // a client that lost its memory is not mistaken for a retransmission.
        self.timestamp = (self.timestamp + 1).max(io.now().since_epoch().as_nanos() as u64);
        let replicas: Vec<NodeId> = self.cfg.replica_ids().collect();
        let request = Request::new(io, &replicas, self.timestamp, op);
        self.outstanding = Some(Outstanding { request, sent: io.now(), replies: BTreeMap::new() });
        self.send(io);
    }

    fn send<M: StateMachine>(&mut self, io: &mut Io<'_, Node<M>>) {
        let Some(o) = &self.outstanding else { return };
        for r in self.cfg.replica_ids() {
            send(io, r, Msg::Request(o.request.clone()));
        }
        io.set_timer(self.cfg.client_timeout, Timer::Retransmit);
    }

    pub(crate) fn on_timer<M: StateMachine>(&mut self, timer: Timer, io: &mut Io<'_, Node<M>>) {
        if timer == Timer::Retransmit && self.outstanding.is_some() {
            io.count("client_retransmissions", 1);
            self.send(io);
        }
    }

    pub(crate) fn on_message<M: StateMachine>(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Node<M>>) {
        let Msg::Reply { timestamp, result, .. } = msg else {
            io.count("ignored_not_for_a_client", 1);
            return;
        };
        let Some(o) = self.outstanding.as_mut().filter(|o| o.request.timestamp == timestamp) else { return };
        if !self.cfg.is_replica(from) {
            return;
        }
        o.replies.entry(from).or_insert(result);
        let Some(result) =
            o.replies.values().find(|r| o.replies.values().filter(|x| x == r).count() > self.cfg.f as usize)
        else {
            return;
        };
        let latency = io.now() - o.sent;
        io.output(Output::Done { timestamp, result: result.clone(), latency_ns: latency.as_nanos() as u64 });
        io.cancel_timer(Timer::Retransmit);
        self.outstanding = None;
        self.done += 1;
        self.next(io);
    }
}
