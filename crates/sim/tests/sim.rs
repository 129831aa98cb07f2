//! The simulator's guarantees, each shown on a small ping/pong protocol:
//! determinism, every fault type firing, FIFO, adversaries, invariants, traces.

use agora_core::{Io, Message, NodeId, Protocol, Time};
use agora_sim::network::{LoadAdversary, UniformAdversary};
use agora_sim::trace::{JsonLines, TraceRecord};
use agora_sim::{Fault, Model, Scope, Sim, SimConfig, SimError};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
enum Msg {
    Ping { seq: u32 },
    Pong { seq: u32 },
}
impl Message for Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Ping { .. } => "ping",
            Msg::Pong { .. } => "pong",
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
struct Got {
    from: NodeId,
    msg: Msg,
}

/// Every `tick`, each node pings one peer (random, or all peers in turn when
/// `round_robin`) until it has sent `pings`; pings are answered with pongs.
#[derive(Clone)]
struct Chatter {
    n: u32,
    pings: u32,
    sent: u32,
    round_robin: bool,
    tick: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Tick;

impl Protocol for Chatter {
    type Msg = Msg;
    type Timer = Tick;
    type Input = u32;
    type Output = Got;
    fn on_start(&mut self, io: &mut Io<'_, Self>) {
        if self.sent < self.pings {
            io.set_timer(self.tick, Tick);
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, io: &mut Io<'_, Self>) {
        if let Msg::Ping { seq } = msg {
            io.send(from, Msg::Pong { seq });
        }
        io.output(Got { from, msg });
    }
    fn on_timer(&mut self, _: Tick, io: &mut Io<'_, Self>) {
        let me = io.me().0;
        let to = if self.round_robin {
            (me + 1 + self.sent % (self.n - 1)) % self.n
        } else {
            io.rng().random_range(0..self.n)
        };
        io.send(NodeId(to), Msg::Ping { seq: self.sent });
        self.sent += 1;
        if self.sent < self.pings {
            io.set_timer(self.tick, Tick);
        }
    }
    fn on_input(&mut self, extra: u32, io: &mut Io<'_, Self>) {
        self.pings += extra;
        io.set_timer(self.tick, Tick);
    }
}

fn chatter(n: u32, pings: u32, round_robin: bool) -> impl FnMut(NodeId) -> Chatter {
    move |_| Chatter { n, pings, sent: 0, round_robin, tick: Duration::from_millis(10) }
}

fn uniform() -> Model<Chatter> {
    Model::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(30) }
}

fn ms(v: u64) -> Time {
    Time::from_nanos(v * 1_000_000)
}

#[test]
fn same_seed_same_trace_different_seed_different_trace() {
    let run = |seed| {
        let mut sim = Sim::new(16, chatter(16, 50, false), uniform(), SimConfig::new(seed));
        let r = sim.run_until(Time::MAX).unwrap();
        (r.trace_hash, r.events)
    };
    assert_eq!(run(1), run(1));
    assert_eq!(run(2), run(2));
    assert_ne!(run(1).0, run(2).0);
}

#[test]
fn crashed_node_receives_nothing_and_recovers_without_memory() {
    let mut sim = Sim::new(4, chatter(4, 200, true), uniform(), SimConfig::new(3));
    sim.schedule_fault(ms(500), Fault::Crash(NodeId(2)));
    sim.schedule_fault(ms(1500), Fault::Recover { node: NodeId(2), memory: false });
    sim.run_until(Time::MAX).unwrap();
    let at_2: Vec<_> = sim.outputs().iter().filter(|o| o.node == NodeId(2)).collect();
    assert!(at_2.iter().any(|o| o.at < ms(500)) && at_2.iter().any(|o| o.at > ms(1500)));
    assert!(at_2.iter().all(|o| o.at < ms(500) || o.at >= ms(1500)), "a crashed node received a message");
    assert!(sim.stats().dropped.get("crashed") > 0, "messages to the crashed node were dropped");
    // Without memory the node started over: it sent its full 200 pings after recovering.
    assert_eq!(sim.node(NodeId(2)).sent, 200);
    let pings_from_2_after = sim
        .outputs()
        .iter()
        .filter(|o| o.output.from == NodeId(2) && o.at > ms(1500) && matches!(o.output.msg, Msg::Ping { .. }))
        .count();
    assert!(pings_from_2_after > 150, "{pings_from_2_after}");
    assert_eq!((sim.stats().crashes, sim.stats().recoveries), (1, 1));
}

#[test]
fn recovery_with_memory_keeps_state() {
    let mut sim = Sim::new(3, chatter(3, 100, true), uniform(), SimConfig::new(3));
    sim.schedule_fault(ms(305), Fault::Crash(NodeId(1)));
    sim.schedule_fault(ms(800), Fault::Recover { node: NodeId(1), memory: true });
    sim.run_until(Time::MAX).unwrap();
    // It kept its count (about 30 sent before the crash) and finished at 100, not 130.
    assert_eq!(sim.node(NodeId(1)).sent, 100);
}

#[test]
fn partition_blocks_exactly_the_cut_links_and_heals() {
    let mut sim = Sim::new(4, chatter(4, 300, true), Model::Constant(Duration::from_millis(5)), SimConfig::new(5));
    let (split, heal) = (ms(1000), ms(2000));
    sim.schedule_fault(split, Fault::Partition(vec![vec![NodeId(0), NodeId(1)], vec![NodeId(2), NodeId(3)]]));
    sim.schedule_fault(heal, Fault::Heal);
    sim.run_until(Time::MAX).unwrap();
    let side = |n: NodeId| n.0 / 2;
    let during = |t: Time| t >= split && t < heal;
    let mut within = 0;
    for o in sim.outputs() {
        if during(o.at) {
            assert_eq!(side(o.output.from), side(o.node), "{:?} crossed the cut at {}", o, o.at);
            within += 1;
        }
    }
    assert!(within > 100, "links inside a group kept working ({within})");
    assert!(sim.outputs().iter().any(|o| o.at >= heal && side(o.output.from) != side(o.node)), "the cut healed");
    assert!(sim.outputs().iter().any(|o| o.at < split && side(o.output.from) != side(o.node)));
    assert!(sim.stats().dropped.get("partition") > 0);
}

#[test]
fn omission_drops_at_the_configured_rate() {
    let rate = 0.3;
    let mut sim = Sim::new(8, chatter(8, 2000, true), uniform(), SimConfig::new(11));
    sim.schedule_fault(Time::ZERO, Fault::Omission { scope: Scope::Node(NodeId(3)), rate });
    sim.run_until(Time::MAX).unwrap();
    let dropped = sim.stats().dropped.get("omission") as f64;
    // Node 3 sends 2000 pings plus pongs to its pings, and receives pings and pongs.
    let touching = sim.stats().messages_sent as f64; // upper bound of the exposed messages
    assert!(dropped > 0.0 && dropped < touching);
    // Exposed messages: everything sent by or to node 3, counted from the outputs' view.
    let delivered_touching =
        sim.outputs().iter().filter(|o| o.output.from == NodeId(3) || o.node == NodeId(3)).count() as f64;
    let exposed = delivered_touching + dropped;
    let p = dropped / exposed;
    let sigma = (rate * (1.0 - rate) / exposed).sqrt();
    assert!((p - rate).abs() < 4.0 * sigma, "observed drop rate {p:.4}, configured {rate}, 4σ = {:.4}", 4.0 * sigma);
}

#[test]
fn link_omission_touches_only_its_link() {
    let mut sim = Sim::new(3, chatter(3, 500, true), uniform(), SimConfig::new(2));
    sim.schedule_fault(Time::ZERO, Fault::Omission { scope: Scope::Link(NodeId(0), NodeId(1)), rate: 1.0 });
    sim.run_until(Time::MAX).unwrap();
    let on =
        |a: u32, b: u32| sim.outputs().iter().filter(|o| o.output.from == NodeId(a) && o.node == NodeId(b)).count();
    assert_eq!(on(0, 1), 0);
    assert!(on(1, 0) > 0 && on(0, 2) > 0 && on(2, 1) > 0);
}

#[test]
fn loss_and_duplication_fire_at_their_rates() {
    let mut cfg = SimConfig::new(9);
    cfg.loss = 0.1;
    cfg.duplication = 0.2;
    let mut sim = Sim::new(8, chatter(8, 2000, false), uniform(), cfg);
    sim.run_until(Time::MAX).unwrap();
    let s = sim.stats();
    let sent = s.messages_sent as f64;
    let lost = s.dropped.get("loss") as f64 / sent;
    let dup = s.duplicated as f64 / (sent - s.dropped.get("loss") as f64);
    assert!((lost - 0.1).abs() < 0.01, "loss {lost}");
    assert!((dup - 0.2).abs() < 0.015, "duplication {dup}");
}

#[test]
fn fragile_toggles_happen_only_at_quiescent_times() {
    // Node 1 asks to turn faulty while messages are flying: the toggle waits.
    let mut sim = Sim::new(4, chatter(4, 30, true), uniform(), SimConfig::new(4));
    sim.set_fragile([NodeId(1)]);
    sim.schedule_fault(ms(100), Fault::Fragile { node: NodeId(1), faulty: true });
    // After the first burst ends, inject more work: node 1 is faulty now.
    sim.schedule_input(ms(5000), NodeId(0), 30);
    sim.schedule_input(ms(5000), NodeId(1), 30);
    sim.schedule_fault(ms(9000), Fault::Fragile { node: NodeId(1), faulty: false });
    sim.schedule_input(ms(12000), NodeId(2), 30);
    // Node 0 is not fragile: its toggle is refused.
    sim.schedule_fault(ms(100), Fault::Fragile { node: NodeId(0), faulty: true });
    sim.run_until(Time::MAX).unwrap();

    let toggles = sim.toggles();
    assert_eq!(toggles.len(), 2, "{toggles:?}");
    for t in toggles {
        assert_eq!((t.in_flight, t.armed_timers), (0, 0), "toggle at a non-quiescent time: {t:?}");
    }
    assert!(toggles[0].at > ms(300), "the first toggle was deferred past the burst ({})", toggles[0].at);
    assert!(toggles[0].faulty && !toggles[1].faulty);
    assert_eq!(sim.stats().inputs_refused, 1, "no injection into a faulty node");
    assert!(sim.stats().dropped.get("faulty") > 0, "messages to the faulty node were lost");
    let bad: Vec<_> =
        sim.outputs().iter().filter(|o| o.node == NodeId(1) && o.at > toggles[0].at && o.at <= toggles[1].at).collect();
    assert!(bad.is_empty(), "{bad:?} {toggles:?}");
    assert_eq!(sim.stats().counters.get("toggle_refused_not_fragile"), 1);
}

#[test]
fn quiescence_predicate_defers_toggles() {
    let mut sim = Sim::new(2, chatter(2, 5, true), uniform(), SimConfig::new(4));
    sim.set_fragile([NodeId(1)]);
    sim.set_quiescence(|w| w.now >= Time::from_nanos(10_000_000_000));
    sim.schedule_fault(ms(1), Fault::Fragile { node: NodeId(1), faulty: true });
    sim.schedule_fault(ms(20_000), Fault::Heal); // an event after the predicate turns true
    sim.run_until(Time::MAX).unwrap();
    assert_eq!(sim.toggles().len(), 1);
    assert!(sim.toggles()[0].at >= ms(10_000));
}

#[test]
fn byzantine_rewrite_reaches_the_receiver() {
    let mut sim = Sim::new(3, chatter(3, 10, true), uniform(), SimConfig::new(8));
    sim.set_byzantine(
        NodeId(1),
        Box::new(|to, msg, _| match msg {
            Msg::Ping { .. } => vec![(to, Msg::Ping { seq: 999 })],
            other => vec![(to, other)],
        }),
    );
    sim.run_until(Time::MAX).unwrap();
    let forged =
        sim.outputs().iter().filter(|o| o.output.from == NodeId(1) && o.output.msg == Msg::Ping { seq: 999 }).count();
    assert_eq!(forged, 10);
    assert!(sim
        .outputs()
        .iter()
        .any(|o| o.output.from == NodeId(0) && matches!(o.output.msg, Msg::Ping { seq } if seq < 10)));
}

/// The sequence numbers of the pings node 1 received, in arrival order.
fn pings_at_1(fifo: bool) -> Vec<u32> {
    let mut cfg = SimConfig::new(1);
    cfg.fifo = fifo;
    let delay = Model::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(200) };
    let mut sim = Sim::new(2, chatter(2, 500, true), delay, cfg);
    sim.run_until(Time::MAX).unwrap();
    sim.outputs()
        .iter()
        .filter(|o| o.node == NodeId(1))
        .filter_map(|o| match o.output.msg {
            Msg::Ping { seq } => Some(seq),
            _ => None,
        })
        .collect()
}

#[test]
fn fifo_keeps_send_order_per_link() {
    let seqs = pings_at_1(true);
    assert_eq!(seqs.len(), 500);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    // Without FIFO the same delays reorder.
    assert!(pings_at_1(false).windows(2).any(|w| w[0] > w[1]));
}

#[test]
fn asynchronous_adversaries_choose_the_delays() {
    use agora_sim::network::MaxAdversary;
    let unit = Duration::from_secs(1);
    // The max adversary makes every delay exactly one unit: each ping (sent
    // on a 10 ms tick) arrives one unit later, each pong one unit after that.
    let mut sim =
        Sim::new(3, chatter(3, 20, true), Model::Async { unit, adversary: Box::new(MaxAdversary) }, SimConfig::new(2));
    sim.run_until(Time::MAX).unwrap();
    for o in sim.outputs() {
        let units = match o.output.msg {
            Msg::Ping { .. } => 1,
            Msg::Pong { .. } => 2,
        };
        let sent = o.at.as_nanos() - units * 1_000_000_000;
        assert_eq!(sent % 10_000_000, 0, "{o:?}");
    }
    // The load adversary is not uniform: it gives a different schedule.
    let run = |adversary: Box<dyn agora_sim::Adversary<Chatter>>| {
        let mut sim = Sim::new(6, chatter(6, 100, false), Model::Async { unit, adversary }, SimConfig::new(2));
        sim.run_until(Time::MAX).unwrap().trace_hash
    };
    assert_ne!(run(Box::new(LoadAdversary { threshold: 1, fast: 0.01 })), run(Box::new(UniformAdversary)));
}

#[test]
fn async_delays_lie_in_zero_one() {
    use agora_sim::{Latency, LinkCtx};
    let sim = Sim::new(2, chatter(2, 0, false), Model::Constant(Duration::ZERO), SimConfig::new(0));
    let mut model: Model<Chatter> =
        Model::Async { unit: Duration::from_secs(1), adversary: Box::new(UniformAdversary) };
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let msg = Msg::Ping { seq: 0 };
    for _ in 0..10_000 {
        let ctx =
            LinkCtx { from: NodeId(0), to: NodeId(1), now: Time::ZERO, msg: &msg, in_flight_to: 0, nodes: sim.nodes() };
        let d = model.delay(&ctx, &mut rng);
        assert!(d > Duration::ZERO && d <= Duration::from_secs(1), "{d:?}");
    }
}

#[test]
fn violated_invariant_stops_the_run_and_names_seed_and_event() {
    let mut sim = Sim::new(4, chatter(4, 100, true), uniform(), SimConfig::new(42));
    sim.add_invariant("fewer than 20 outputs", |w| {
        if w.outputs.len() < 20 {
            Ok(())
        } else {
            Err(format!("{} outputs", w.outputs.len()))
        }
    });
    let err = sim.run_until(Time::MAX).unwrap_err();
    let SimError::Invariant { name, seed, event, .. } = &err else { panic!("{err}") };
    assert_eq!((name.as_str(), *seed), ("fewer than 20 outputs", 42));
    assert!(*event > 0);
    let text = err.to_string();
    assert!(text.contains("seed 42") && text.contains("deliver"), "{text}");
}

#[test]
fn json_trace_has_one_line_per_event_and_the_final_hash() {
    #[derive(Clone)]
    struct Shared(Rc<RefCell<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Shared(Rc::new(RefCell::new(Vec::new())));
    let mut sim = Sim::new(4, chatter(4, 20, false), uniform(), SimConfig::new(6));
    sim.set_trace_sink(JsonLines(buf.clone()));
    sim.schedule_fault(ms(50), Fault::Crash(NodeId(3)));
    let report = sim.run_until(Time::MAX).unwrap();
    let text = String::from_utf8(buf.0.borrow().clone()).unwrap();
    let records: Vec<TraceRecord> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len() as u64, report.events);
    assert_eq!(records.last().unwrap().hash, agora_sim::trace::hex(report.trace_hash));
    assert!(records.iter().any(|r| r.ev == "fault" && r.what == "crash"));
    assert!(records.windows(2).all(|w| w[0].t <= w[1].t && w[0].i + 1 == w[1].i));
    // Tracing does not change the run.
    let mut plain = Sim::new(4, chatter(4, 20, false), uniform(), SimConfig::new(6));
    plain.schedule_fault(ms(50), Fault::Crash(NodeId(3)));
    assert_eq!(plain.run_until(Time::MAX).unwrap().trace_hash, report.trace_hash);
}

#[test]
fn sends_to_unknown_nodes_are_dropped_not_fatal() {
    let mut sim = Sim::new(2, chatter(5, 10, false), uniform(), SimConfig::new(1));
    sim.run_until(Time::MAX).unwrap();
    assert!(sim.stats().dropped.get("no_such_node") > 0);
}

#[test]
fn latency_matrix_gives_each_pair_of_sites_its_delay() {
    // Nodes 0, 2 at site 0; nodes 1, 3 at site 1.
    let latency = vec![
        vec![Duration::from_millis(1), Duration::from_millis(40)],
        vec![Duration::from_millis(40), Duration::from_millis(2)],
    ];
    let model = Model::Matrix { site_of: vec![0, 1, 0, 1], latency, jitter: 0.0 };
    let mut sim = Sim::new(4, chatter(4, 30, true), model, SimConfig::new(1));
    sim.run_until(Time::MAX).unwrap();
    for o in sim.outputs() {
        if let Msg::Ping { .. } = o.output.msg {
            let want = match (o.output.from.0 % 2, o.node.0 % 2) {
                (0, 0) => 1,
                (1, 1) => 2,
                _ => 40,
            };
            // Pings leave on a 10 ms tick: the arrival time modulo the tick is the delay.
            assert_eq!((o.at.as_nanos() / 1_000_000) % 10, want % 10, "{o:?}");
            assert!(o.at.as_nanos() % 1_000_000 == 0);
        }
    }
}

#[test]
fn exponential_delays_have_the_configured_mean() {
    use agora_sim::{Latency, LinkCtx};
    let sim = Sim::new(2, chatter(2, 0, false), Model::Constant(Duration::ZERO), SimConfig::new(0));
    let mut model: Model<Chatter> =
        Model::Exponential { mean: Duration::from_millis(10), min: Duration::from_millis(2) };
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let msg = Msg::Ping { seq: 0 };
    let k = 20_000;
    let mut sum = 0.0;
    for _ in 0..k {
        let ctx =
            LinkCtx { from: NodeId(0), to: NodeId(1), now: Time::ZERO, msg: &msg, in_flight_to: 0, nodes: sim.nodes() };
        let d = model.delay(&ctx, &mut rng);
        assert!(d >= Duration::from_millis(2));
        sum += d.as_secs_f64();
    }
    let mean_ms = sum / k as f64 * 1e3;
    // 12 ms ± 4σ, σ = 10 ms / √k.
    assert!((mean_ms - 12.0).abs() < 4.0 * 10.0 / (k as f64).sqrt(), "{mean_ms}");
}
