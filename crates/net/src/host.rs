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
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hash;
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

/// The protocol's armed timers: one deadline per timer value (setting it
/// again moves it), fired earliest first and, on ties, in arming order, as
/// the simulator fires them. A heap with lazy deletion: an entry whose
/// arming number is no longer the timer's was moved or cancelled.
struct Timers<T> {
    armed: HashMap<T, u64>,
    heap: BinaryHeap<Reverse<Armed<T>>>,
    next_id: u64,
}

/// A heap entry, ordered by deadline and then arming number (unique).
struct Armed<T>(Instant, u64, T);

impl<T> PartialEq for Armed<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl<T> Eq for Armed<T> {}
impl<T> PartialOrd for Armed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Armed<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers { armed: HashMap::new(), heap: BinaryHeap::new(), next_id: 0 }
    }
}

impl<T: Clone + Eq + Hash> Timers<T> {
    fn set(&mut self, timer: T, deadline: Instant) {
        self.next_id += 1;
        self.armed.insert(timer.clone(), self.next_id);
        self.heap.push(Reverse(Armed(deadline, self.next_id, timer)));
        // Stale entries of timers moved again and again: drop them now and then.
        if self.heap.len() > 2 * self.armed.len() + 64 {
            let armed = &self.armed;
            self.heap.retain(|Reverse(Armed(_, id, t))| armed.get(t) == Some(id));
        }
    }

    fn cancel(&mut self, timer: &T) {
        self.armed.remove(timer);
    }

    fn len(&self) -> usize {
        self.armed.len()
    }

    fn drop_stale(&mut self) {
        while let Some(Reverse(Armed(_, id, t))) = self.heap.peek() {
            if self.armed.get(t) == Some(id) {
                return;
            }
            self.heap.pop();
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale();
        self.heap.peek().map(|Reverse(Armed(d, _, _))| *d)
    }

    /// The earliest timer due by `now`, disarmed.
    fn pop_due(&mut self, now: Instant) -> Option<T> {
        self.drop_stale();
        if self.heap.peek().is_some_and(|Reverse(Armed(d, _, _))| *d <= now) {
            let Reverse(Armed(_, _, t)) = self.heap.pop()?;
            self.armed.remove(&t);
            return Some(t);
        }
        None
    }
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
    timers: Timers<P::Timer>,
    out: Vec<Command<P>>,
    recent: VecDeque<serde_json::Value>,
    storage: Storage,
    keys: Arc<dyn agora_core::keys::Keys>,
    /// Calls waiting for their answer, by call number.
    calls: HashMap<u64, tokio::sync::oneshot::Sender<Result<P::Output, String>>>,
    /// Where every output goes as a JSON line (`NodeConfig::output_log`).
    output_log: Option<std::fs::File>,
}

const RECENT_OUTPUTS: usize = 32;

impl<P: Protocol> Host<P> {
    pub(crate) fn new(
        protocol: P,
        shared: Arc<Shared>,
        queues: Vec<Option<mpsc::Sender<Bytes>>>,
        self_tx: mpsc::UnboundedSender<LoopMsg<P>>,
        storage: Storage,
        output_log: Option<std::fs::File>,
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
            timers: Timers::default(),
            out: Vec::new(),
            recent: VecDeque::with_capacity(RECENT_OUTPUTS),
            storage,
            calls: HashMap::new(),
            output_log,
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
            let next = self.timers.next_deadline();
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
                    Some(LoopMsg::Input(input, verdict)) => {
                        let checked = self.protocol.check_input(&input);
                        if checked.is_ok() {
                            self.dispatch(|p, io| p.on_input(input, io));
                        }
                        if let Some(v) = verdict {
                            let _ = v.send(checked);
                        }
                    }
                    Some(LoopMsg::Call { input, call, reply }) => match self.protocol.check_input(&input) {
                        Ok(()) => {
                            // Callers that gave up are forgotten now and then.
                            if self.calls.len() >= 1024 {
                                self.calls.retain(|_, r| !r.is_closed());
                            }
                            self.calls.insert(call, reply);
                            self.dispatch(|p, io| p.on_input(input, io));
                        }
                        Err(why) => {
                            let _ = reply.send(Err(why));
                        }
                    },
                    Some(LoopMsg::Status(reply)) => {
                        let _ = reply.send(self.status());
                    }
                    Some(LoopMsg::Health(reply)) => {
                        let _ = reply.send(self.protocol.health());
                    }
                    Some(LoopMsg::Readings(reply)) => {
                        let mut readings = Vec::new();
                        self.protocol.readings(&mut readings);
                        let _ = reply.send(readings);
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
        while let Some(timer) = self.timers.pop_due(now) {
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
            Command::SetTimer { after, timer } => self.timers.set(timer, Instant::now() + after),
            Command::CancelTimer { timer } => self.timers.cancel(&timer),
            Command::Output(o) => {
                if let Some(reply) = P::answers(&o).and_then(|c| self.calls.remove(&c)) {
                    let _ = reply.send(Ok(o.clone()));
                }
                self.shared.metrics.outputs.inc();
                self.shared.outputs.fetch_add(1, Ordering::Relaxed);
                let value = serde_json::to_value(&o).unwrap_or_else(|e| format!("{o:?} ({e})").into());
                debug!(node = %self.shared.cfg.name, output = %value, "output");
                self.log_output(&value);
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

    /// Appends an output to the output log: one line, written at once, so
    /// a node killed mid-run leaves whole lines. Wall-clock nanoseconds:
    /// the processes of one machine share that clock, so their logs merge
    /// into one order.
    fn log_output(&mut self, value: &serde_json::Value) {
        use std::io::Write;
        let Some(file) = &mut self.output_log else { return };
        let t_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let line = format!("{}\n", serde_json::json!({ "t_ns": t_ns as u64, "output": value }));
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::error!(node = %self.shared.cfg.name, error = %e, "cannot write the output log; it stops here");
            self.output_log = None;
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
            // The protocol's times (`at_s`, `…_s`) are seconds on the node's
            // clock, which starts with the process: this puts them on the
            // wall clock every node shares (Unix seconds = started + at_s).
            "started_unix_s": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |now| now.as_secs_f64() - s.uptime().as_secs_f64()),
            "protocol": self.protocol.status(),
            "outputs": s.outputs.load(Ordering::Relaxed),
            "recent_outputs": self.recent,
            "pending_timers": self.timers.len(),
            "peers": s.peers_json(),
            "faults": s.faults.lock().expect("fault layer lock").clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_earliest_first_ties_in_arming_order_moved_and_cancelled_ones_once_or_never() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut t = Timers::default();
        t.set("b", at(5));
        t.set("a", at(5)); // same deadline, armed later: fires after b
        t.set("c", at(1));
        t.set("c", at(7)); // moved: fires once, at 7
        t.set("gone", at(2));
        t.cancel(&"gone");
        assert_eq!(t.len(), 3);
        assert_eq!(t.next_deadline(), Some(at(5)));
        assert_eq!(t.pop_due(at(4)), None);
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_due(at(10))).collect();
        assert_eq!(fired, ["b", "a", "c"]);
        assert_eq!((t.len(), t.next_deadline()), (0, None));
        // A timer moved many times keeps the heap small and fires once.
        for i in 0..10_000 {
            t.set("beat", at(i));
        }
        assert!(t.heap.len() <= 2 * t.len() + 65, "{} stale entries kept", t.heap.len());
        assert_eq!(std::iter::from_fn(|| t.pop_due(at(20_000))).count(), 1);
    }
}
