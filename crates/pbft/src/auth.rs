//! Authentication of what travels (Castro–Liskov § 4.1 and the thesis'
//! "authenticators"): MACs on the normal path, where signatures would cost
//! too much per message; ed25519 signatures (in the messages themselves)
//! only where a message must convince a third node: view changes, new
//! views and checkpoints.
//!
//! Every message from a replica travels in an [`Envelope`] with a MAC
//! under the key its sender shares with the receiver (`agora_core::keys`):
//! a single MAC when it goes to one node, an authenticator — one MAC per
//! replica, computed once — when it goes to all of them. A client's
//! request carries its own authenticator inside it, because the primary
//! hands it on in its pre-prepare and each backup must be able to check
//! that the client sent exactly that (a primary cannot alter an operation
//! or make one up).
//!
//! The protocol does not rely on its transport for this: the TCP runtime
//! authenticates peers with the same keys, and the simulator delivers the
//! true sender, but a message whose MAC does not check is dropped whatever
//! carried it.

use crate::msg::{Msg, Request};
use agora_core::keys::{Signature, Tag};
use agora_core::{Io, Message, NodeId, Protocol};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A message's MACs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Auth {
    /// None here: a request carries its client's authenticator inside it.
    Client,
    /// The sender's MAC for its one receiver.
    Mac(Tag),
    /// One MAC per replica (index = replica id), for a message to them all.
    Vector(Vec<Tag>),
}

/// What travels between PBFT nodes: a message and its MACs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Envelope {
    pub msg: Msg,
    pub auth: Auth,
}

impl Message for Envelope {
    fn kind(&self) -> &'static str {
        self.msg.kind()
    }
}

/// What a MAC of `msg` from `from` covers: the sender (the key is shared
/// by both ends, so a message must not pass for its reply) and the
/// message's hash.
fn mac_input(from: NodeId, msg: &Msg) -> [u8; 32] {
    let bytes = agora_core::wire::encode(msg).expect("a PBFT message encodes");
    Sha256::new().chain_update(b"pbft message").chain_update(from.0.to_le_bytes()).chain_update(bytes).finalize().into()
}

/// `msg` from this node to `to`, with its MAC. Without keys (a driver
/// that holds none) the MAC is zero and no receiver accepts it.
pub fn seal<P: Protocol + ?Sized>(io: &Io<'_, P>, to: NodeId, msg: Msg) -> Envelope {
    let auth = match msg {
        Msg::Request(_) => Auth::Client,
        _ => Auth::Mac(io.mac(to, &mac_input(io.me(), &msg)).unwrap_or_default()),
    };
    Envelope { msg, auth }
}

/// `msg` from this node with an authenticator for every node in `to`.
pub fn seal_for_all<P: Protocol + ?Sized>(io: &Io<'_, P>, to: &[NodeId], msg: Msg) -> Envelope {
    let tags = authenticator(io, to, &mac_input(io.me(), &msg));
    Envelope { msg, auth: Auth::Vector(tags) }
}

/// This node's MAC of `input` for each node in `to`, at the node's index.
fn authenticator<P: Protocol + ?Sized>(io: &Io<'_, P>, to: &[NodeId], input: &[u8]) -> Vec<Tag> {
    let mut tags = vec![Tag::default(); to.iter().map(|n| n.index() + 1).max().unwrap_or(0)];
    for &n in to {
        tags[n.index()] = io.mac(n, input).unwrap_or_default();
    }
    tags
}

impl Envelope {
    /// Whether `from` sent this, unaltered, to this node.
    pub fn authentic<P: Protocol + ?Sized>(&self, from: NodeId, io: &Io<'_, P>) -> bool {
        let tag = match (&self.msg, &self.auth) {
            (Msg::Request(r), Auth::Client) => return r.client == from && r.authentic(io),
            (Msg::Request(_), _) | (_, Auth::Client) => return false,
            (_, Auth::Mac(tag)) => tag,
            (_, Auth::Vector(tags)) => match tags.get(io.me().index()) {
                Some(tag) => tag,
                None => return false,
            },
        };
        io.check_mac(from, &mac_input(from, &self.msg), tag)
    }
}

impl Request {
    /// Client `io.me()`'s request, authenticated for `replicas`.
    pub fn new<P: Protocol + ?Sized>(io: &Io<'_, P>, replicas: &[NodeId], timestamp: u64, op: Vec<u8>) -> Request {
        let mut r = Request { client: io.me(), timestamp, op, auth: Vec::new() };
        r.auth = authenticator(io, replicas, &r.mac_input());
        r
    }

    /// Whether its client sent it as it is, as this replica sees it.
    pub fn authentic<P: Protocol + ?Sized>(&self, io: &Io<'_, P>) -> bool {
        self.auth.get(io.me().index()).is_some_and(|tag| io.check_mac(self.client, &self.mac_input(), tag))
    }

    fn mac_input(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(b"pbft request")
            .chain_update(self.client.0.to_le_bytes())
            .chain_update(self.timestamp.to_le_bytes())
            .chain_update(&self.op)
            .finalize()
            .into()
    }
}

/// Sends `msg` to `to`, sealed.
pub(crate) fn send<P: Protocol<Msg = Envelope> + ?Sized>(io: &mut Io<'_, P>, to: NodeId, msg: Msg) {
    let envelope = seal(io, to, msg);
    io.send(to, envelope);
}

/// This node's signature of `bytes` (empty without keys: nobody accepts it).
pub(crate) fn sign<P: Protocol + ?Sized>(io: &Io<'_, P>, bytes: &[u8]) -> Vec<u8> {
    io.sign(bytes).map(|s| s.to_bytes().to_vec()).unwrap_or_default()
}

/// Whether `signature` is `who`'s of `bytes`.
pub(crate) fn signed<P: Protocol + ?Sized>(io: &Io<'_, P>, who: NodeId, bytes: &[u8], signature: &[u8]) -> bool {
    Signature::from_slice(signature).is_ok_and(|sig| io.verify(who, bytes, &sig))
}
