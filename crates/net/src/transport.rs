//! The transport: one connection per peer pair (the lower id dials), TLS
//! with pinned keys or plain TCP, reconnect with jittered exponential
//! backoff, frames decoded and admitted by quota before they reach the
//! event loop; bad frames and bad peers are refused and counted.

use crate::frame::{self, Frame, FrameError};
use crate::shared::{LoopMsg, Shared};
use agora_core::{NodeId, Protocol};
use bytes::Bytes;
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// A peer connection's byte stream: TLS over TCP, or plain TCP where the
/// cluster runs without keys.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}
pub(crate) type Conn = Framed<Box<dyn Stream>, LengthDelimitedCodec>;
/// A connection and the connection slot it holds (returned when it closes).
pub(crate) type Slotted = (Conn, agora_fairdist::Charge<NodeId>);

/// Keeps the connection to one peer: dials (if our id is lower) or takes the
/// connection the listener accepted, forwards queued frames, and starts over
/// when the connection breaks.
pub(crate) async fn peer_task<P: Protocol>(
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
                let (cut, drop_rate) = {
                    let f = shared.faults.lock().expect("fault layer lock");
                    (f.partition.contains(&peer), f.receive_drop_rate)
                };
                if cut {
                    shared.metrics.drop("fault_partition");
                    continue;
                }
                if drop_rate > 0.0 && rand::random::<f64>() < drop_rate {
                    shared.metrics.drop("fault_receive_drop");
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
pub(crate) async fn accept_loop<P: Protocol>(
    listener: TcpListener,
    shared: Arc<Shared>,
    accepted: Arc<Vec<Option<mpsc::Sender<Slotted>>>>,
    token: CancellationToken,
) {
    let mut refused = crate::doors::Throttled::default();
    let cap = crate::doors::file_handle_share(shared.cfg.transport.max_pending_handshakes);
    let pending = Arc::new(std::sync::Mutex::new(crate::doors::Oldest::new(cap)));
    loop {
        let (sock, addr) = tokio::select! {
            _ = token.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    crate::doors::accept_failed(&shared, "peer", &mut refused, e).await;
                    continue;
                }
            },
        };
        // Connections that have not shown who they are are capped; at the
        // cap the oldest makes room, so a flood cannot keep a peer out.
        let (id, evicted, _) = pending.lock().expect("pending handshakes").admit();
        let (shared, accepted, pending) = (shared.clone(), accepted.clone(), pending.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = handshake::<P>(sock, addr, &shared, &accepted) => {}
                _ = evicted.cancelled() => {
                    shared.reject("?", Some(addr), "evicted", &"the oldest of too many connections still in their handshake");
                }
            }
            pending.lock().expect("pending handshakes").remove(id);
        });
    }
}

/// One accepted connection until its Hello, handed to its peer task if it
/// is a peer that proved who it is.
async fn handshake<P: Protocol>(
    sock: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    shared: &Arc<Shared>,
    accepted: &Arc<Vec<Option<mpsc::Sender<Slotted>>>>,
) {
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
            Ok(Frame::Hello { from }) => {
                shared.reject("?", Some(addr), "bad_hello", &format!("Hello from {from}, which is not a lower-id peer"))
            }
            Ok(Frame::Msg(_)) => shared.reject("?", Some(addr), "bad_hello", &"a message before Hello"),
            Err(e) => shared.reject("?", Some(addr), e.reason(), &e),
        },
    }
}
