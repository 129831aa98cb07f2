//! Signatures for protocols that need non-repudiation (PBFT's view change
//! and checkpoints): a protocol signs with its own node's key and checks
//! another node's signature through [`Io::sign`](crate::Io::sign) and
//! [`Io::verify`](crate::Io::verify); the driver holds the keys.
//!
//! Ed25519 (`ed25519-dalek`). In the simulator and the model checker every
//! node's key is derived from the run's seed ([`SeededKeys`]), so a run stays
//! a function of its seed; real nodes read theirs from the key files named
//! in the cluster file ([`Keyring`]). The same keys authenticate the TCP
//! transport.
//!
//! MACs for protocols that authenticate messages cheaply (PBFT's normal
//! case): each pair of nodes shares a key, X25519 of one's ed25519 secret
//! and the other's public key (the same from both ends), hashed with both
//! ids; [`mac`] is HMAC-SHA256 under it, cut to [`TAG_LENGTH`] bytes.
//! Protocols reach it through [`Io::mac`](crate::Io::mac) and
//! [`Io::check_mac`](crate::Io::check_mac).

use crate::NodeId;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

pub use ed25519_dalek::{Signature, SIGNATURE_LENGTH};

/// The bytes of a MAC: HMAC-SHA256 cut to 128 bits (RFC 2104 allows
/// cutting to half the hash; Castro–Liskov used 80-bit UMACs).
pub const TAG_LENGTH: usize = 16;
pub type Tag = [u8; TAG_LENGTH];

/// The key two nodes share.
pub type PairKey = [u8; 32];

/// HMAC-SHA256 of `data` under `key`, cut to [`TAG_LENGTH`] bytes.
pub fn mac(key: &PairKey, data: &[u8]) -> Tag {
    let mut h = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    h.update(data);
    let full = h.finalize().into_bytes();
    full[..TAG_LENGTH].try_into().expect("SHA-256 is longer than a tag")
}

/// The key `me` (holding `secret`) shares with `peer` (whose public key is
/// `public`): X25519 on the keys' Montgomery forms, so `peer` gets the same
/// from its secret and `me`'s public key; hashed with both ids in order.
pub fn pair_key(me: NodeId, secret: &SigningKey, peer: NodeId, public: &VerifyingKey) -> PairKey {
    let shared = public.to_montgomery().mul_clamped(secret.to_scalar_bytes());
    let (a, b) = if me.0 <= peer.0 { (me, peer) } else { (peer, me) };
    Sha256::new()
        .chain_update(b"agora pair key")
        .chain_update(a.0.to_le_bytes())
        .chain_update(b.0.to_le_bytes())
        .chain_update(shared.as_bytes())
        .finalize()
        .into()
}

/// What a driver offers a protocol for signing.
pub trait Keys: Send + Sync {
    /// Signs `msg` with `me`'s key; `None` where the driver holds no key for it.
    fn sign(&self, me: NodeId, msg: &[u8]) -> Option<Signature>;
    /// Whether `sig` is `who`'s signature of `msg`.
    fn verify(&self, who: NodeId, msg: &[u8], sig: &Signature) -> bool;
    /// The key `me` shares with `peer` (see [`pair_key`]); `None` where the
    /// driver holds no key for `me` or knows no `peer`.
    fn pair_key(&self, me: NodeId, peer: NodeId) -> Option<PairKey>;
}

/// Keys seen through a renaming: node `i` of a nested protocol's own
/// numbering is node `global[i]` (several may be one node). Ids outside
/// the numbering have no keys.
pub struct Renamed<'a> {
    pub keys: &'a dyn Keys,
    pub global: &'a [NodeId],
}

impl Keys for Renamed<'_> {
    fn sign(&self, me: NodeId, msg: &[u8]) -> Option<Signature> {
        self.keys.sign(*self.global.get(me.index())?, msg)
    }
    fn verify(&self, who: NodeId, msg: &[u8], sig: &Signature) -> bool {
        self.global.get(who.index()).is_some_and(|&g| self.keys.verify(g, msg, sig))
    }
    fn pair_key(&self, me: NodeId, peer: NodeId) -> Option<PairKey> {
        self.keys.pair_key(*self.global.get(me.index())?, *self.global.get(peer.index())?)
    }
}

/// No keys: nothing signs, nothing verifies (drivers that were given none).
pub struct NoKeys;

impl Keys for NoKeys {
    fn sign(&self, _: NodeId, _: &[u8]) -> Option<Signature> {
        None
    }
    fn verify(&self, _: NodeId, _: &[u8], _: &Signature) -> bool {
        false
    }
    fn pair_key(&self, _: NodeId, _: NodeId) -> Option<PairKey> {
        None
    }
}

/// Every node's key derived from a seed: node `i`'s secret is
/// ChaCha8(seed, stream 4 + i)'s first 32 bytes. For simulations and model
/// checking only — anyone who knows the seed knows every key.
#[derive(Clone, Copy, Debug)]
pub struct SeededKeys {
    pub seed: u64,
}

impl SeededKeys {
    pub fn secret(&self, node: NodeId) -> SigningKey {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(4 + node.0 as u64);
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        SigningKey::from_bytes(&bytes)
    }
}

impl Keys for SeededKeys {
    fn sign(&self, me: NodeId, msg: &[u8]) -> Option<Signature> {
        Some(self.secret(me).sign(msg))
    }
    fn verify(&self, who: NodeId, msg: &[u8], sig: &Signature) -> bool {
        self.secret(who).verifying_key().verify(msg, sig).is_ok()
    }
    fn pair_key(&self, me: NodeId, peer: NodeId) -> Option<PairKey> {
        Some(pair_key(me, &self.secret(me), peer, &self.secret(peer).verifying_key()))
    }
}

/// [`SeededKeys`] with each node's key derived once, on first use
/// (deriving a key costs a scalar multiplication: a simulation that signs
/// and verifies per request would spend most of its time there).
pub struct SeededRing {
    seeded: SeededKeys,
    derived: std::sync::Mutex<std::collections::HashMap<NodeId, SigningKey>>,
    pairs: std::sync::Mutex<std::collections::HashMap<(NodeId, NodeId), PairKey>>,
}

impl SeededKeys {
    /// These keys, each derived once.
    pub fn ring(self) -> SeededRing {
        SeededRing { seeded: self, derived: Default::default(), pairs: Default::default() }
    }
}

impl SeededRing {
    fn with_key<R>(&self, node: NodeId, f: impl FnOnce(&SigningKey) -> R) -> R {
        let mut derived = self.derived.lock().unwrap_or_else(|e| e.into_inner());
        f(derived.entry(node).or_insert_with(|| self.seeded.secret(node)))
    }
}

impl Keys for SeededRing {
    fn sign(&self, me: NodeId, msg: &[u8]) -> Option<Signature> {
        Some(self.with_key(me, |k| k.sign(msg)))
    }
    fn verify(&self, who: NodeId, msg: &[u8], sig: &Signature) -> bool {
        self.with_key(who, |k| k.verifying_key().verify(msg, sig).is_ok())
    }
    fn pair_key(&self, me: NodeId, peer: NodeId) -> Option<PairKey> {
        let pair = (me.min(peer), me.max(peer));
        if let Some(k) = self.pairs.lock().unwrap_or_else(|e| e.into_inner()).get(&pair) {
            return Some(*k);
        }
        let (secret, public) = (self.with_key(me, |k| k.clone()), self.with_key(peer, |k| k.verifying_key()));
        let k = pair_key(me, &secret, peer, &public);
        self.pairs.lock().unwrap_or_else(|e| e.into_inner()).insert(pair, k);
        Some(k)
    }
}

/// A real node's keys: its own secret, every node's public key (index =
/// node id) and the key it shares with each.
pub struct Keyring {
    pub me: NodeId,
    secret: SigningKey,
    public: Vec<VerifyingKey>,
    pairs: Vec<PairKey>,
}

impl Keyring {
    pub fn new(me: NodeId, secret: SigningKey, public: Vec<VerifyingKey>) -> Self {
        let pairs = public.iter().enumerate().map(|(i, p)| pair_key(me, &secret, NodeId(i as u32), p)).collect();
        Keyring { me, secret, public, pairs }
    }
}

impl Keys for Keyring {
    fn sign(&self, me: NodeId, msg: &[u8]) -> Option<Signature> {
        (me == self.me).then(|| self.secret.sign(msg))
    }
    fn verify(&self, who: NodeId, msg: &[u8], sig: &Signature) -> bool {
        self.public.get(who.index()).is_some_and(|k| k.verify(msg, sig).is_ok())
    }
    fn pair_key(&self, me: NodeId, peer: NodeId) -> Option<PairKey> {
        (me == self.me).then(|| self.pairs.get(peer.index()).copied()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_signatures_verify_for_their_signer_only() {
        let k = SeededKeys { seed: 7 };
        let sig = k.sign(NodeId(1), b"view 3").unwrap();
        assert!(k.verify(NodeId(1), b"view 3", &sig));
        assert!(!k.verify(NodeId(2), b"view 3", &sig));
        assert!(!k.verify(NodeId(1), b"view 4", &sig));
        assert_ne!(SeededKeys { seed: 8 }.secret(NodeId(1)).to_bytes(), k.secret(NodeId(1)).to_bytes());
        let ring =
            Keyring::new(NodeId(1), k.secret(NodeId(1)), (0..3).map(|i| k.secret(NodeId(i)).verifying_key()).collect());
        assert!(ring.sign(NodeId(0), b"x").is_none());
        assert!(ring.verify(NodeId(1), b"view 3", &sig));
        // Derived once or on each use, the same keys.
        let cached = k.ring();
        assert_eq!(cached.sign(NodeId(1), b"view 3"), Some(sig));
        assert!(cached.verify(NodeId(1), b"view 3", &sig) && !cached.verify(NodeId(0), b"view 3", &sig));
        assert!(cached.verify(NodeId(1), b"view 3", &sig), "derived once, used again");
    }

    #[test]
    fn both_ends_of_a_pair_share_its_key_and_nobody_else_does() {
        let k = SeededKeys { seed: 7 };
        let (a, b, c) = (NodeId(0), NodeId(1), NodeId(2));
        let ab = k.pair_key(a, b).unwrap();
        assert_eq!(ab, k.pair_key(b, a).unwrap(), "the same from both ends");
        assert_ne!(ab, k.pair_key(a, c).unwrap());
        assert_ne!(ab, k.pair_key(c, b).unwrap());
        assert_ne!(ab, SeededKeys { seed: 8 }.pair_key(a, b).unwrap());
        // A real node derives it from its secret and the peer's public key only.
        let public = (0..3).map(|i| k.secret(NodeId(i)).verifying_key()).collect::<Vec<_>>();
        let ring = Keyring::new(b, k.secret(b), public);
        assert_eq!(ring.pair_key(b, a), Some(ab));
        assert_eq!(ring.pair_key(a, b), None, "it holds no key of a's");
        assert_eq!(k.ring().pair_key(b, a), Some(ab));
        // The MAC sees every bit of key and data.
        let tag = mac(&ab, b"prepare 1");
        assert_ne!(tag, mac(&ab, b"prepare 2"));
        assert_ne!(tag, mac(&k.pair_key(a, c).unwrap(), b"prepare 1"));
    }
}
