//! The node host: runs one protocol value on tokio, with one TCP connection
//! per peer pair (the lower id dials), reconnect with backoff, timers on
//! tokio time, the fault layer, and the HTTP endpoints.

use crate::admission::{Admission, Admitted};
use crate::config::NodeConfig;
use crate::faults::FaultLayer;
use crate::frame::{self, Frame, FrameError};
use crate::metrics::{Kind, Metrics, Name};
use crate::storage::Storage;
use agora_core::{Command, Io, Message, NodeId, Protocol, Time};
use bytes::Bytes;
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A peer connection's byte stream: TLS over TCP, or plain TCP where the
/// cluster runs without keys.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
type Conn = Framed<Box<dyn Stream>, LengthDelimitedCodec>;
/// A connection and the connection slot it holds (returned when it closes).
type Slotted = (Conn, agora_fairdist::Charge<NodeId>);

/// State the node's tasks share.
pub(crate) struct Shared {
    pub cfg: NodeConfig,
    pub metrics: Metrics,
    pub faults: Mutex<FaultLayer>,
    connected: Vec<AtomicBool>,
    pub outputs: AtomicU64,
    started: std::time::Instant,
    admission: Admission,
}

impl Shared {
    fn peer_name(&self, p: NodeId) -> &str {
        self.cfg.peers.get(p.index()).map_or("?", |e| e.name.as_str())
    }
    fn set_connected(&self, p: NodeId, up: bool) {
        let was = self.connected[p.index()].swap(up, Ordering::Relaxed);
        match (was, up) {
            (false, true) => {
                self.metrics.peers_connected.inc();
                self.metrics.connections.inc();
            }
            (true, false) => {
                self.metrics.peers_connected.dec();
            }
            _ => {}
        }
    }
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
    pub fn peers_json(&self) -> serde_json::Value {
        self.cfg
            .peers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != self.cfg.id.index())
            .map(|(i, e)| serde_json::json!({"id": i, "name": e.name, "connected": self.connected[i].load(Ordering::Relaxed)}))
            .collect()
    }
    fn reject(&self, peer: &str, addr: Option<SocketAddr>, reason: &'static str, detail: &dyn std::fmt::Display) {
        self.metrics.reject(reason);
        warn!(node = %self.cfg.name, peer, addr = ?addr, reason, "closing connection: {detail}");
    }
}

/// What the node's event loop is asked to do.
pub(crate) enum LoopMsg<P: Protocol> {
    /// `admitted` holds the message's quota charge until it is handled.
    Message {
        from: NodeId,
        msg: P::Msg,
        admitted: Option<Admitted>,
    },
    Input(P::Input),
    Status(oneshot::Sender<serde_json::Value>),
    /// The storage thread finished a sync.
    Synced(agora_core::storage::SyncDone),
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// A running node. Dropping it does not stop it: call [`NodeHandle::stop`].
pub struct NodeHandle {
    pub name: String,
    pub http_addr: Option<SocketAddr>,
    token: CancellationToken,
    tasks: JoinSet<()>,
}

impl NodeHandle {
    /// Stops every task of the node and waits (up to 5 s) for them.
    pub async fn stop(mut self) {
        self.token.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if timeout(Duration::from_secs(5), all).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

/// Binds the node's sockets and starts it. Errors only if a socket cannot be
/// bound; everything after that (peers down, bad frames) is handled inside.
pub async fn start<P: Protocol>(cfg: NodeConfig, mut protocol: P) -> Result<NodeHandle, NetError> {
    let listener = TcpListener::bind(cfg.listen).await.map_err(|source| NetError::Bind {
        what: "peers",
        addr: cfg.listen,
        source,
    })?;
    let http = match cfg.http {
        Some(addr) => {
            Some(TcpListener::bind(addr).await.map_err(|source| NetError::Bind { what: "HTTP", addr, source })?)
        }
        None => None,
    };
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());
    let n = cfg.peers.len();
    let me = cfg.id;
    let metrics = Metrics::new();
    let admission = Admission::new(n, cfg.transport.inbound_queue_bytes, cfg.transport.max_connections, &metrics);
    let shared = Arc::new(Shared {
        connected: (0..n).map(|_| AtomicBool::new(false)).collect(),
        admission,
        metrics,
        faults: Mutex::new(FaultLayer::default()),
        outputs: AtomicU64::new(0),
        started: std::time::Instant::now(),
        cfg,
    });
    let token = CancellationToken::new();
    let mut tasks = JoinSet::new();
    // Unbounded: what peers put in is bounded by their quotas instead, so a
    // flooding peer cannot block the others' readers.
    let (loop_tx, loop_rx) = mpsc::unbounded_channel::<LoopMsg<P>>();
    let mut queues = Vec::with_capacity(n);
    let mut accepted = Vec::with_capacity(n);
    for peer in (0..n as u32).map(NodeId) {
        if peer == me {
            queues.push(None);
            accepted.push(None);
            continue;
        }
        let (qtx, qrx) = mpsc::channel::<Bytes>(shared.cfg.transport.queue_frames);
        let (atx, arx) = mpsc::channel::<Slotted>(2);
        tasks.spawn(peer_task::<P>(shared.clone(), peer, qrx, arx, loop_tx.clone(), token.clone()));
        queues.push(Some(qtx));
        accepted.push(Some(atx));
    }
    tasks.spawn(accept_loop::<P>(listener, shared.clone(), Arc::new(accepted), token.clone()));
    if let Some(l) = http {
        tasks.spawn(crate::http::serve::<P>(l, shared.clone(), loop_tx.clone(), token.clone()));
    }
    let storage = {
        let (tx, s) = (loop_tx.clone(), shared.clone());
        let done = move |d, committed: Option<crate::storage::Committed>| {
            if let Some(c) = committed {
                s.metrics.storage_commits.inc();
                s.metrics.storage_commit_seconds.observe(c.took.as_secs_f64());
            }
            s.metrics.storage_syncs.inc();
            let _ = tx.send(LoopMsg::Synced(d));
        };
        let backend = match (&shared.cfg.storage, &shared.cfg.data_dir) {
            (crate::storage::Backend::Redb, None) => {
                debug!(node = %shared.cfg.name, "no data_dir: storage lives in memory and does not survive a restart");
                crate::storage::Backend::Memory
            }
            (b, _) => b.clone(),
        };
        let (storage, durable) = Storage::open(&backend, shared.cfg.data_dir.as_deref(), &shared.cfg.name, done)?;
        if !durable.is_empty() {
            info!(node = %shared.cfg.name, damaged = durable.damaged().len(), "restoring from durable storage");
            protocol.on_restore(&durable);
        }
        storage
    };
    let host = Host::new(protocol, shared.clone(), queues, loop_tx, storage);
    tasks.spawn(host.run(loop_rx, token.clone()));
    info!(node = %shared.cfg.name, id = me.0, listen = %shared.cfg.listen, http = ?http_addr, "node started");
    Ok(NodeHandle { name: shared.cfg.name.clone(), http_addr, token, tasks })
}

/// Keeps the connection to one peer: dials (if our id is lower) or takes the
/// connection the listener accepted, forwards queued frames, and starts over
/// when the connection breaks.
async fn peer_task<P: Protocol>(
    shared: Arc<Shared>,
    peer: NodeId,
    mut queue: mpsc::Receiver<Bytes>,
    mut accepted: mpsc::Receiver<Slotted>,
    loop_tx: mpsc::UnboundedSender<LoopMsg<P>>,
    token: CancellationToken,
) {
    let me = shared.cfg.id;
    let dial = me < peer;
    let addr = shared.cfg.peers[peer.index()].listen;
    let t = shared.cfg.transport.clone();
    let mut backoff = t.backoff_min;
    let mut next: Option<Slotted> = None;
    let mut jitter = ChaCha8Rng::seed_from_u64(((me.0 as u64) << 32) | peer.0 as u64);
    loop {
        let conn = if let Some(c) = next.take() {
            c
        } else if dial {
            let attempt = async {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                let stream: Box<dyn Stream> = match &shared.cfg.identity {
                    Some(id) => {
                        let client =
                            id.tls.client_for(peer).ok_or_else(|| std::io::Error::other("no key for the peer"))?;
                        let name = rustls_pki_types::ServerName::try_from("agora-node").expect("a valid name");
                        Box::new(tokio_rustls::TlsConnector::from(client).connect(name, s).await?)
                    }
                    None => Box::new(s),
                };
                let mut f = Framed::new(stream, frame::codec(t.max_frame_bytes));
                f.send(frame::encode(&Frame::<P::Msg>::Hello { from: me })).await?;
                Ok::<_, std::io::Error>(f)
            };
            let r = tokio::select! {
                _ = token.cancelled() => return,
                r = attempt => r,
            };
            let admitted = r.map(|f| {
                (f, shared.admission.admit_connection(&shared.metrics, &shared.cfg.name, peer, shared.peer_name(peer)))
            });
            match admitted {
                Ok((f, Some(slot))) => (f, slot),
                Ok((_, None)) => {
                    // Over our own connection quota for this peer: wait, then retry.
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = sleep(t.backoff_max) => continue,
                    }
                }
                Err(e) => {
                    debug!(node = %shared.cfg.name, peer = shared.peer_name(peer), "dial failed: {e}; retrying in {backoff:?}");
                    let wait = backoff.mul_f64(0.5 + jitter.random::<f64>());
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(t.backoff_max);
                    continue;
                }
            }
        } else {
            tokio::select! {
                _ = token.cancelled() => return,
                c = accepted.recv() => match c {
                    Some(c) => c,
                    None => return,
                },
            }
        };
        let (conn, _slot) = conn;
        backoff = t.backoff_min;
        shared.set_connected(peer, true);
        info!(node = %shared.cfg.name, peer = shared.peer_name(peer), "connected");
        let (mut sink, stream) = conn.split();
        let mut reader = tokio::spawn(read_loop::<P>(stream, peer, shared.clone(), loop_tx.clone()));
        loop {
            tokio::select! {
                _ = token.cancelled() => {
                    reader.abort();
                    return;
                }
                _ = &mut reader => break,
                f = queue.recv() => {
                    let Some(first) = f else {
                        reader.abort();
                        return;
                    };
                    // Batch what is queued into one flush.
                    let mut r = sink.feed(first).await;
                    while r.is_ok() {
                        match queue.try_recv() {
                            Ok(more) => r = sink.feed(more).await,
                            Err(_) => break,
                        }
                    }
                    // Flush only what was fed successfully (`and` would flush regardless).
                    let r = match r {
                        Ok(()) => sink.flush().await,
                        failed => failed,
                    };
                    if let Err(e) = r {
                        debug!(node = %shared.cfg.name, peer = shared.peer_name(peer), "send failed: {e}");
                        shared.metrics.drop("send_failed");
                        break;
                    }
                }
                c = accepted.recv(), if !dial => {
                    // The peer reconnected (it restarted): use the new connection.
                    next = c;
                    break;
                }
            }
        }
        reader.abort();
        shared.set_connected(peer, false);
        info!(node = %shared.cfg.name, peer = shared.peer_name(peer), "disconnected");
    }
}

/// Decodes frames from one connection and hands messages to the event loop.
async fn read_loop<P: Protocol>(
    mut stream: SplitStream<Conn>,
    peer: NodeId,
    shared: Arc<Shared>,
    loop_tx: mpsc::UnboundedSender<LoopMsg<P>>,
) {
    let name = shared.peer_name(peer).to_string();
    while let Some(item) = stream.next().await {
        let payload = match item {
            Ok(p) => p,
            Err(e) if is_tls_error(&e) => {
                // A record that does not authenticate: altered or replayed bytes.
                shared.reject(&name, None, "tls_bad_record", &e);
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                shared.reject(&name, None, FrameError::Oversized.reason(), &e);
                return;
            }
            Err(e) => {
                debug!(node = %shared.cfg.name, peer = %name, "read failed: {e}");
                return;
            }
        };
        match frame::decode::<P::Msg>(&payload) {
            Ok(Frame::Msg(msg)) => {
                if shared.faults.lock().expect("fault layer lock").partition.contains(&peer) {
                    shared.metrics.drop("fault_partition");
                    continue;
                }
                // The cost of a queued message: its in-memory envelope plus its encoding.
                let cost = (std::mem::size_of::<LoopMsg<P>>() + payload.len()) as u64;
                let Some(admitted) =
                    shared.admission.admit_message(&shared.metrics, &shared.cfg.name, peer, &name, cost)
                else {
                    continue;
                };
                if loop_tx.send(LoopMsg::Message { from: peer, msg, admitted: Some(admitted) }).is_err() {
                    return;
                }
            }
            Ok(Frame::Hello { .. }) => {
                let e = FrameError::UnexpectedHello;
                shared.reject(&name, None, e.reason(), &e);
                return;
            }
            Err(e) => {
                shared.reject(&name, None, e.reason(), &e);
                return;
            }
        }
    }
}

fn is_tls_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|x| x.is::<rustls::Error>())
}

/// Accepts connections and hands each, once it said Hello, to its peer task.
async fn accept_loop<P: Protocol>(
    listener: TcpListener,
    shared: Arc<Shared>,
    accepted: Arc<Vec<Option<mpsc::Sender<Slotted>>>>,
    token: CancellationToken,
) {
    loop {
        let (sock, addr) = tokio::select! {
            _ = token.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(node = %shared.cfg.name, "accept failed: {e}");
                    sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (shared, accepted) = (shared.clone(), accepted.clone());
        tokio::spawn(async move {
            let _ = sock.set_nodelay(true);
            let t = &shared.cfg.transport;
            // With keys, the TLS handshake says who the peer is; its Hello must agree.
            let (stream, authenticated): (Box<dyn Stream>, Option<NodeId>) = match &shared.cfg.identity {
                Some(id) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(id.tls.server.clone());
                    match timeout(t.hello_timeout, acceptor.accept(sock)).await {
                        Err(_) => return shared.reject("?", Some(addr), "hello_timeout", &"no TLS handshake in time"),
                        Ok(Err(e)) => return shared.reject("?", Some(addr), "tls_handshake", &e),
                        Ok(Ok(tls)) => {
                            let key = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
                            let Some(peer) = key.and_then(|k| id.tls.node_of(&k)) else {
                                return shared.reject("?", Some(addr), "tls_handshake", &"no listed key presented");
                            };
                            (Box::new(tls), Some(peer))
                        }
                    }
                }
                None => (Box::new(sock), None),
            };
            let mut f = Framed::new(stream, frame::codec(t.max_frame_bytes));
            let me = shared.cfg.id;
            match timeout(t.hello_timeout, f.next()).await {
                Err(_) => shared.reject("?", Some(addr), "hello_timeout", &"no Hello in time"),
                Ok(None) => {}
                Ok(Some(Err(e))) if is_tls_error(&e) => shared.reject("?", Some(addr), "tls_bad_record", &e),
                Ok(Some(Err(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                    shared.reject("?", Some(addr), FrameError::Oversized.reason(), &e)
                }
                Ok(Some(Err(e))) => debug!(node = %shared.cfg.name, ?addr, "read failed before Hello: {e}"),
                Ok(Some(Ok(payload))) => match frame::decode::<P::Msg>(&payload) {
                    Ok(Frame::Hello { from }) if authenticated.is_some_and(|a| a != from) => {
                        let key_of = shared.peer_name(authenticated.unwrap_or(from));
                        let claim = format!("authenticated as {key_of} but claims to be {}", shared.peer_name(from));
                        shared.reject(key_of, Some(addr), "key_mismatch", &claim)
                    }
                    Ok(Frame::Hello { from }) if from < me && from.index() < accepted.len() => {
                        let name = shared.peer_name(from).to_string();
                        match shared.admission.admit_connection(&shared.metrics, &shared.cfg.name, from, &name) {
                            Some(slot) => {
                                if let Some(tx) = &accepted[from.index()] {
                                    let _ = tx.send((f, slot)).await;
                                }
                            }
                            None => shared.reject(&name, Some(addr), "connection_quota", &"over its connection quota"),
                        }
                    }
                    Ok(Frame::Hello { from }) => shared.reject(
                        "?",
                        Some(addr),
                        "bad_hello",
                        &format!("Hello from {from}, which is not a lower-id peer"),
                    ),
                    Ok(Frame::Msg(_)) => shared.reject("?", Some(addr), "bad_hello", &"a message before Hello"),
                    Err(e) => shared.reject("?", Some(addr), e.reason(), &e),
                },
            }
        });
    }
}

/// The event loop: the only owner of the protocol value.
struct Host<P: Protocol> {
    protocol: P,
    shared: Arc<Shared>,
    queues: Vec<Option<mpsc::Sender<Bytes>>>,
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
    fn new(
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

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<LoopMsg<P>>, token: CancellationToken) {
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
        let (drop_rate, delay_ms, cut) = {
            let f = self.shared.faults.lock().expect("fault layer lock");
            (f.drop_rate, f.delay_ms, f.partition.contains(&to))
        };
        if cut {
            m.drop("fault_partition");
            return;
        }
        if drop_rate > 0.0 && self.fault_rng.random::<f64>() < drop_rate {
            m.drop("fault_drop");
            return;
        }
        let bytes = frame::encode(&Frame::Msg(msg));
        if delay_ms > 0 {
            let (queue, shared) = (queue.clone(), self.shared.clone());
            tokio::spawn(async move {
                sleep(Duration::from_millis(delay_ms)).await;
                if queue.try_send(bytes).is_err() {
                    shared.metrics.drop("queue_full");
                }
            });
        } else if queue.try_send(bytes).is_err() {
            m.drop("queue_full");
        }
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
