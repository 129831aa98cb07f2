//! The event loop: the only owner of the protocol value. It reads like the
//! simulator's dispatch (`agora_sim::Sim::step`): an event in, the handler
//! run with an `Io`, its commands applied in order — sends to the peer
//! queues through the fault layer, timers on tokio time, storage to the
//! storage thread, outputs and counters to `/status` and `/metrics`.

use crate::frame::{self, Frame};
use crate::metrics::{Kind, Name};
use crate::shared::{LoopMsg, Shared};
use crate::storage::Storage;
use agora_core::{Command, Io, Message, NodeId, Protocol, Time};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Messages held back by a delayed link, in the order they were sent.
struct Lane {
    tx: Option<mpsc::UnboundedSender<(Instant, Bytes)>>,
    last_due: Instant,
}

/// Starts the task that hands a delayed link's messages to the peer's queue
/// when each is due.
fn delay_lane(queue: mpsc::Sender<Bytes>, shared: Arc<Shared>) -> mpsc::UnboundedSender<(Instant, Bytes)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            sleep_until(due).await;
            if queue.try_send(bytes).is_err() {
                shared.metrics.drop("queue_full");
            }
        }
    });
    tx
}

/// The event loop: the only owner of the protocol value.
pub(crate) struct Host<P: Protocol> {
    protocol: P,
    shared: Arc<Shared>,
    queues: Vec<Option<mpsc::Sender<Bytes>>>,
    lanes: Vec<Lane>,
    self_tx: mpsc::UnboundedSender<LoopMsg<P>>,
    epoch: Instant,
    rng: ChaCha8Rng,
    fault_rng: ChaCha8Rng,
    timers: Vec<(P::Timer, Instant, u64)>,
    next_timer_id: u64,
    out: Vec<Command<P>>,
    recent: VecDeque<serde_json::Value>,
    storage: Storage,
    keys: Arc<dyn agora_core::keys::Keys>,
}

const RECENT_OUTPUTS: usize = 32;

impl<P: Protocol> Host<P> {
    pub(crate) fn new(
        protocol: P,
        shared: Arc<Shared>,
        queues: Vec<Option<mpsc::Sender<Bytes>>>,
        self_tx: mpsc::UnboundedSender<LoopMsg<P>>,
        storage: Storage,
    ) -> Self {
        let me = shared.cfg.id.0 as u64;
        let (rng, fault_rng) = match shared.cfg.seed {
            Some(s) => {
                let mut a = ChaCha8Rng::seed_from_u64(s.wrapping_add(me));
                a.set_stream(2);
                let mut b = ChaCha8Rng::seed_from_u64(s.wrapping_add(me));
                b.set_stream(3);
                (a, b)
            }
            None => (ChaCha8Rng::from_os_rng(), ChaCha8Rng::from_os_rng()),
        };
        Host {
            protocol,
            lanes: queues.iter().map(|_| Lane { tx: None, last_due: Instant::now() }).collect(),
            queues,
            self_tx,
            epoch: Instant::now(),
            rng,
            fault_rng,
            timers: Vec::new(),
            next_timer_id: 0,
            out: Vec::new(),
            recent: VecDeque::with_capacity(RECENT_OUTPUTS),
            storage,
            keys: match &shared.cfg.identity {
                Some(id) => id.keyring.clone(),
                None => Arc::new(agora_core::keys::NoKeys),
            },
            shared,
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<LoopMsg<P>>, token: CancellationToken) {
        self.dispatch(|p, io| p.on_start(io));
        loop {
            let next = self.timers.iter().map(|t| t.1).min();
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                _ = sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => self.fire_due_timers(),
                m = rx.recv() => match m {
                    None => break,
                    Some(LoopMsg::Message { from, msg, admitted }) => {
                        self.shared.metrics.received.get_or_create(&Kind { service: msg.service(), kind: msg.kind() }).inc();
                        self.dispatch(|p, io| p.on_message(from, msg, io));
                        drop(admitted); // handled: its queue memory is free again
                    }
                    Some(LoopMsg::Input(input)) => self.dispatch(|p, io| p.on_input(input, io)),
                    Some(LoopMsg::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                    Some(LoopMsg::Synced(done)) => self.dispatch(|p, io| p.on_synced(done, io)),
                },
            }
        }
        info!(node = %self.shared.cfg.name, "node stopped");
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        // Earliest first; ties in arming order, as in the simulator.
        while let Some(i) = (0..self.timers.len())
            .filter(|&i| self.timers[i].1 <= now)
            .min_by_key(|&i| (self.timers[i].1, self.timers[i].2))
        {
            let (timer, _, _) = self.timers.swap_remove(i);
            self.shared.metrics.timers_fired.inc();
            self.dispatch(|p, io| p.on_timer(timer, io));
        }
    }

    fn dispatch(&mut self, f: impl FnOnce(&mut P, &mut Io<'_, P>)) {
        let now = Time::from_nanos(self.epoch.elapsed().as_nanos() as u64);
        let mut out = std::mem::take(&mut self.out);
        {
            let mut io = Io::new(self.shared.cfg.id, now, &mut self.rng, &mut out).with_keys(&*self.keys);
            f(&mut self.protocol, &mut io);
        }
        for cmd in out.drain(..) {
            self.apply(cmd);
        }
        self.out = out;
    }

    fn apply(&mut self, cmd: Command<P>) {
        match cmd {
            Command::Send { to, msg } => self.send(to, msg),
            Command::SetTimer { after, timer } => {
                self.next_timer_id += 1;
                let deadline = Instant::now() + after;
                match self.timers.iter_mut().find(|t| t.0 == timer) {
                    Some(t) => {
                        t.1 = deadline;
                        t.2 = self.next_timer_id;
                    }
                    None => self.timers.push((timer, deadline, self.next_timer_id)),
                }
            }
            Command::CancelTimer { timer } => self.timers.retain(|t| t.0 != timer),
            Command::Output(o) => {
                self.shared.metrics.outputs.inc();
                self.shared.outputs.fetch_add(1, Ordering::Relaxed);
                let value = serde_json::to_value(&o).unwrap_or_else(|e| format!("{o:?} ({e})").into());
                debug!(node = %self.shared.cfg.name, output = %value, "output");
                if self.recent.len() == RECENT_OUTPUTS {
                    self.recent.pop_front();
                }
                self.recent.push_back(serde_json::json!({"t": self.epoch.elapsed().as_secs_f64(), "output": value}));
            }
            Command::Count { service, name, by } => {
                self.shared.metrics.protocol.get_or_create(&Name { service, name }).inc_by(by);
            }
            Command::Store(op) => self.storage.submit(op),
        }
    }

    fn send(&mut self, to: NodeId, msg: P::Msg) {
        let m = &self.shared.metrics;
        m.sent.get_or_create(&Kind { service: msg.service(), kind: msg.kind() }).inc();
        if to == self.shared.cfg.id {
            // The node's own messages are not charged to any peer.
            let _ = self.self_tx.send(LoopMsg::Message { from: to, msg, admitted: None });
            return;
        }
        let Some(Some(queue)) = self.queues.get(to.index()) else {
            m.drop("no_such_peer");
            return;
        };
        let f = self.shared.faults.lock().expect("fault layer lock").outgoing(to);
        if f.cut {
            m.drop("fault_partition");
            return;
        }
        if f.drop_rate > 0.0 && self.fault_rng.random::<f64>() < f.drop_rate {
            m.drop("fault_drop");
            return;
        }
        let bytes = frame::encode(&Frame::Msg(msg));
        if f.delay.is_zero() && f.jitter.is_zero() {
            if queue.try_send(bytes).is_err() {
                m.drop("queue_full");
            }
            return;
        }
        let jitter = if f.jitter.is_zero() { Duration::ZERO } else { f.jitter.mul_f64(self.fault_rng.random()) };
        // Never before the previous message to this peer: a delayed link keeps its order.
        let lane = &mut self.lanes[to.index()];
        let due = (Instant::now() + f.delay + jitter).max(lane.last_due);
        lane.last_due = due;
        let tx = lane.tx.get_or_insert_with(|| delay_lane(queue.clone(), self.shared.clone()));
        let _ = tx.send((due, bytes));
    }

    fn status(&self) -> serde_json::Value {
        let s = &self.shared;
        serde_json::json!({
            "node": s.cfg.name,
            "id": s.cfg.id.0,
            "uptime_s": s.uptime().as_secs_f64(),
            "protocol": self.protocol.status(),
            "outputs": s.outputs.load(Ordering::Relaxed),
            "recent_outputs": self.recent,
            "pending_timers": self.timers.len(),
            "peers": s.peers_json(),
            "faults": s.faults.lock().expect("fault layer lock").clone(),
        })
    }
}
