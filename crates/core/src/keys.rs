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

use crate::NodeId;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};

pub use ed25519_dalek::{Signature, SIGNATURE_LENGTH};

/// What a driver offers a protocol for signing.
pub trait Keys: Send + Sync {
    /// Signs `msg` with `me`'s key; `None` where the driver holds no key for it.
    fn sign(&self, me: NodeId, msg: &[u8]) -> Option<Signature>;
    /// Whether `sig` is `who`'s signature of `msg`.
    fn verify(&self, who: NodeId, msg: &[u8], sig: &Signature) -> bool;
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
}

/// [`SeededKeys`] with each node's key derived once, on first use
/// (deriving a key costs a scalar multiplication: a simulation that signs
/// and verifies per request would spend most of its time there).
pub struct SeededRing {
    seeded: SeededKeys,
    derived: std::sync::Mutex<std::collections::HashMap<NodeId, SigningKey>>,
}

impl SeededKeys {
    /// These keys, each derived once.
    pub fn ring(self) -> SeededRing {
        SeededRing { seeded: self, derived: Default::default() }
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
}

/// A real node's keys: its own secret and every node's public key (index =
/// node id).
pub struct Keyring {
    pub me: NodeId,
    secret: SigningKey,
    public: Vec<VerifyingKey>,
}

impl Keyring {
    pub fn new(me: NodeId, secret: SigningKey, public: Vec<VerifyingKey>) -> Self {
        Keyring { me, secret, public }
    }
}

impl Keys for Keyring {
    fn sign(&self, me: NodeId, msg: &[u8]) -> Option<Signature> {
        (me == self.me).then(|| self.secret.sign(msg))
    }
    fn verify(&self, who: NodeId, msg: &[u8], sig: &Signature) -> bool {
        self.public.get(who.index()).is_some_and(|k| k.verify(msg, sig).is_ok())
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
}
