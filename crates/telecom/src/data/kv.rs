//! A replica's key–value state: string keys, byte values, a version per
//! key, and the four operations a client request carries. A key never
//! written reads as the empty value at version 0 (as the history checker's
//! kv model has it), so every operation is defined on every key.
//!
//! The data is authenticated: every element a write puts in a value (the
//! value written, or the element appended) carries its writer's signature
//! over group, key and element (a [`Seal`]), and an entry keeps the seals
//! of the elements its value is made of. A reader checks them
//! ([`Entry::authentic`]), so a replica can serve old data or none, but
//! not data no writer wrote.

use agora_core::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a client asks of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    Read,
    Write(Vec<u8>),
    /// Replace the value with `value` if it is `expected`.
    Cas {
        expected: Vec<u8>,
        value: Vec<u8>,
    },
    /// List append: `element` goes after the value.
    Append(Vec<u8>),
}

impl Op {
    /// Whether the operation can change the state.
    pub fn writes(&self) -> bool {
        !matches!(self, Op::Read)
    }
}

/// A writer's signature over one element it wrote to a key: the next
/// `len` bytes of the value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Seal {
    pub writer: NodeId,
    pub len: u32,
    pub sig: Sig,
}

/// An Ed25519 signature's 64 bytes (all zero where the writer's driver
/// holds no key: no reader accepts it). On the wire as one byte string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sig(pub [u8; 64]);

impl std::fmt::Debug for Sig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sig({:02x}{:02x}{:02x}{:02x}…)", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

impl Serialize for Sig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Sig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Sig, E> {
                v.try_into().map(Sig).map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Sig, A::Error> {
                let mut b = [0u8; 64];
                for (i, x) in b.iter_mut().enumerate() {
                    *x = seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<u8>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(65, &self));
                }
                Ok(Sig(b))
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

impl Seal {
    /// What a writer signs for `element` of `key` in `group`.
    pub fn signed_bytes(group: u16, key: &str, element: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(16 + key.len() + element.len());
        m.extend_from_slice(b"agora-kv");
        m.extend_from_slice(&group.to_be_bytes());
        m.extend_from_slice(&(key.len() as u32).to_be_bytes());
        m.extend_from_slice(key.as_bytes());
        m.extend_from_slice(element);
        m
    }
}

/// A key's value and version (the number of changes it has seen), with
/// the seals of the elements the value is made of, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub value: Vec<u8>,
    pub version: u64,
    pub proof: Vec<Seal>,
}

impl Entry {
    /// An entry without seals (tests, and what a reader must refuse).
    pub fn bare(value: &[u8], version: u64) -> Self {
        Entry { value: value.to_vec(), version, proof: Vec::new() }
    }

    /// The entry as bytes (disk records, signed answers): version (8) ++
    /// value length (4) ++ value ++ per seal: writer (4), length (4),
    /// signature (64).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(12 + self.value.len() + self.proof.len() * 72);
        v.extend_from_slice(&self.version.to_be_bytes());
        v.extend_from_slice(&(self.value.len() as u32).to_be_bytes());
        v.extend_from_slice(&self.value);
        for s in &self.proof {
            v.extend_from_slice(&s.writer.0.to_be_bytes());
            v.extend_from_slice(&s.len.to_be_bytes());
            v.extend_from_slice(&s.sig.0);
        }
        v
    }

    /// [`Entry::to_bytes`] read back; None if the bytes are cut or malformed.
    pub fn from_bytes(v: &[u8]) -> Option<Entry> {
        let u32_at = |at: usize| Some(u32::from_be_bytes(v.get(at..at + 4)?.try_into().ok()?));
        let version = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let n = u32_at(8)? as usize;
        let value = v.get(12..12 + n)?.to_vec();
        let mut at = 12 + n;
        let mut proof = Vec::new();
        while at < v.len() {
            let (writer, len) = (NodeId(u32_at(at)?), u32_at(at + 4)?);
            let sig = Sig(v.get(at + 8..at + 72)?.try_into().ok()?);
            proof.push(Seal { writer, len, sig });
            at += 72;
        }
        Some(Entry { value, version, proof })
    }

    /// Whether every element of the value carries a valid seal of a writer
    /// `may_write` allows, for `key` of `group`. `verify(writer, signed,
    /// sig)` checks one signature; the empty value needs none.
    pub fn authentic(
        &self,
        group: u16,
        key: &str,
        may_write: impl Fn(NodeId) -> bool,
        mut verify: impl FnMut(NodeId, &[u8], &[u8]) -> bool,
    ) -> bool {
        // The seals must cover the value exactly: checked before any signature.
        if self.proof.iter().map(|s| s.len as usize).sum::<usize>() != self.value.len() {
            return false;
        }
        let mut at = 0usize;
        for seal in &self.proof {
            let Some(element) = self.value.get(at..at + seal.len as usize) else { return false };
            if !may_write(seal.writer) || !verify(seal.writer, &Seal::signed_bytes(group, key, element), &seal.sig.0) {
                return false;
            }
            at += seal.len as usize;
        }
        at == self.value.len()
    }

    /// How replicas order two entries of a key: the newer version, then
    /// the larger value (so that replicas settle on one in any order).
    pub fn rank(&self) -> (u64, &[u8]) {
        (self.version, &self.value)
    }
}

/// What an operation answered: the key's entry after it, and whether it
/// took effect (false only for a compare that failed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reply {
    pub applied: bool,
    pub entry: Entry,
}

/// One replica's state of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    keys: BTreeMap<String, Entry>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry of `key` (the empty value at version 0 if never written).
    pub fn get(&self, key: &str) -> Entry {
        self.keys.get(key).cloned().unwrap_or_default()
    }

    /// Applies `op` to `key`; `seal` is its writer's seal of the element
    /// it writes (kept with the value).
    pub fn apply(&mut self, key: &str, op: &Op, seal: Option<&Seal>) -> Reply {
        let current = self.get(key);
        let seals = seal.into_iter().cloned();
        let next = match op {
            Op::Read => None,
            Op::Write(v) => Some((v.clone(), seals.collect())),
            Op::Cas { expected, value } => (current.value == *expected).then(|| (value.clone(), seals.collect())),
            Op::Append(e) => {
                Some(([current.value.as_slice(), e].concat(), current.proof.iter().cloned().chain(seals).collect()))
            }
        };
        match next {
            None => Reply { applied: matches!(op, Op::Read), entry: current },
            Some((value, proof)) => {
                let entry = Entry { value, version: current.version + 1, proof };
                self.keys.insert(key.to_string(), entry.clone());
                Reply { applied: true, entry }
            }
        }
    }

    /// Read repair: takes `entry` for `key` if it is newer than what this
    /// replica holds (a repair that raced a newer write changes nothing).
    pub fn repair(&mut self, key: &str, entry: Entry) -> bool {
        let newer = entry.version > self.get(key).version;
        if newer {
            self.keys.insert(key.to_string(), entry);
        }
        newer
    }

    /// Replication: takes `entry` if it is newer, or as new with a larger
    /// value — so that two replicas that gave one version different values
    /// (two members served across a failover) settle on the same one,
    /// whichever order they hear of each other in.
    pub fn merge(&mut self, key: &str, entry: Entry) -> bool {
        let wins = entry.rank() > self.get(key).rank();
        if wins {
            self.keys.insert(key.to_string(), entry);
        }
        wins
    }

    /// Catch-up: takes `entry` if it is at least as new — a restarted
    /// member gives up its own version of a key its peers moved on with.
    pub fn adopt(&mut self, key: &str, entry: Entry) -> bool {
        let mine = self.get(key);
        let takes = entry.version > mine.version || (entry.version == mine.version && entry.value != mine.value);
        if takes {
            self.keys.insert(key.to_string(), entry);
        }
        takes
    }

    /// A hash of the whole state, to compare two replicas (anti-entropy).
    pub fn digest(&self) -> u64 {
        self.keys.iter().fold(0xcbf2_9ce4_8422_2325, |h, (k, e)| {
            let h = super::fnv(h, k.as_bytes());
            let h = super::fnv(h, &e.version.to_be_bytes());
            super::fnv(super::fnv(h, &(e.value.len() as u64).to_be_bytes()), &e.value)
        })
    }

    /// Every key written with its entry, in key order, as owned pairs (what
    /// a member sends a peer).
    pub fn snapshot(&self) -> Vec<(String, Entry)> {
        self.entries().map(|(k, e)| (k.clone(), e.clone())).collect()
    }

    /// Every key written, with its entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.keys.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_operation_does_what_it_says() {
        let mut s = Store::new();
        assert_eq!(s.apply("a", &Op::Read, None), Reply { applied: true, entry: Entry::default() });
        let w = s.apply("a", &Op::Write(b"x".to_vec()), None);
        assert_eq!(w.entry, Entry::bare(b"x", 1));
        let cas = |expected: &[u8], value: &[u8]| Op::Cas { expected: expected.to_vec(), value: value.to_vec() };
        let failed = s.apply("a", &cas(b"y", b"z"), None);
        assert!(!failed.applied);
        assert_eq!(failed.entry.version, 1, "a failed compare changes nothing");
        assert!(s.apply("a", &cas(b"x", b"z"), None).applied);
        let appended = s.apply("a", &Op::Append(b"!".to_vec()), None);
        assert_eq!(appended.entry, Entry::bare(b"z!", 3));
        assert!(s.apply("b", &cas(b"", b"new"), None).applied, "a key never written holds the empty value");
        assert!(!s.repair("a", Entry::bare(b"old", 2)), "older than what it holds");
        assert!(s.repair("a", Entry::bare(b"new", 4)));
        assert_eq!(s.get("a").value, b"new");
        assert_eq!(s.get("b").value, b"new");
        // As new with another value: merge takes the larger, adopt takes it.
        let tie = |v: &[u8]| Entry::bare(v, 4);
        assert!(!s.merge("a", tie(b"abc")), "smaller than what it holds");
        assert!(s.merge("a", tie(b"zzz")));
        assert!(s.adopt("a", tie(b"abc")));
        assert!(!s.adopt("a", tie(b"abc")), "the same entry");
        assert_eq!(s.entries().count(), 2);
    }

    /// A toy signature for the tests: the writer's id, then a hash of the signed bytes.
    fn toy_sig(writer: u32, signed: &[u8]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig[0] = writer as u8;
        sig[1..9].copy_from_slice(&crate::data::fnv(0xcbf2_9ce4_8422_2325, signed).to_be_bytes());
        sig
    }

    fn toy_seal(writer: u32, group: u16, key: &str, element: &[u8]) -> Seal {
        let sig = Sig(toy_sig(writer, &Seal::signed_bytes(group, key, element)));
        Seal { writer: NodeId(writer), len: element.len() as u32, sig }
    }

    #[test]
    fn an_entry_is_authentic_only_if_its_writers_sealed_every_element() {
        let toy_verify = |w: NodeId, signed: &[u8], sig: &[u8]| sig == toy_sig(w.0, signed);
        let clients = |w: NodeId| w.0 < 2;
        let mut s = Store::new();
        let a = toy_seal(0, 3, "k", b"0.1;");
        s.apply("k", &Op::Write(b"0.1;".to_vec()), Some(&a));
        let e = s.apply("k", &Op::Append(b"1.7;".to_vec()), Some(&toy_seal(1, 3, "k", b"1.7;"))).entry;
        assert_eq!(e.proof.len(), 2, "an append keeps the seals before it");
        assert!(e.authentic(3, "k", clients, toy_verify));
        assert!(!e.authentic(4, "k", clients, toy_verify), "sealed for another group");
        let mut forged = e.clone();
        forged.value.push(b'x');
        assert!(!forged.authentic(3, "k", clients, toy_verify), "bytes no seal covers");
        let mut replaced = e.clone();
        replaced.value = b"0.1;1.8;".to_vec();
        assert!(!replaced.authentic(3, "k", clients, |_, _, _| false), "a signature that fails");
        let by_server = Entry { proof: vec![toy_seal(4, 3, "k", b"0.1;")], ..Entry::bare(b"0.1;", 1) };
        assert!(!by_server.authentic(3, "k", clients, toy_verify), "a node that does not write");
        assert!(Entry::default().authentic(3, "k", clients, toy_verify), "the empty value needs no seal");
        assert!(!Entry::bare(b"x", 1).authentic(3, "k", clients, toy_verify), "a value without seals");
        // A write replaces the seals with its own.
        assert_eq!(s.apply("k", &Op::Write(b"0.2;".to_vec()), Some(&a)).entry.proof, vec![a.clone()]);
        // A signature travels as 64 bytes, and only as 64.
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Seal>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Sig>("[1,2,3]").is_err());
    }

    fn v() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(0u8..3, 0..3)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Read),
            v().prop_map(Op::Write),
            (v(), v()).prop_map(|(expected, value)| Op::Cas { expected, value }),
            v().prop_map(Op::Append),
        ]
    }

    proptest! {
        /// Against a plain map: the same values, versions that count the
        /// changes, and reads that change nothing.
        #[test]
        fn a_store_agrees_with_a_plain_map(ops in prop::collection::vec((0u8..3, op()), 0..60)) {
            let mut s = Store::new();
            let mut model: BTreeMap<String, (Vec<u8>, u64)> = BTreeMap::new();
            for (k, op) in ops {
                let key = format!("k{k}");
                let (old, version) = model.get(&key).cloned().unwrap_or_default();
                let new = match &op {
                    Op::Read => None,
                    Op::Write(v) => Some(v.clone()),
                    Op::Cas { expected, value } => (old == *expected).then(|| value.clone()),
                    Op::Append(e) => Some([old.clone(), e.clone()].concat()),
                };
                let r = s.apply(&key, &op, None);
                prop_assert_eq!(r.applied, new.is_some() || op == Op::Read);
                if let Some(v) = new {
                    model.insert(key.clone(), (v, version + 1));
                }
                let (value, version) = model.get(&key).cloned().unwrap_or_default();
                prop_assert_eq!(r.entry, Entry::bare(&value, version));
            }
        }

        /// Replicas that merge the same entries in any order end alike.
        #[test]
        fn merging_converges_whatever_the_order(
            entries in prop::collection::vec((0u8..3, 0u64..4, v()), 0..20),
            seed in any::<u64>(),
        ) {
            use rand::{seq::SliceRandom, SeedableRng};
            let mut shuffled = entries.clone();
            shuffled.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let (mut a, mut b) = (Store::new(), Store::new());
            for (k, version, value) in entries {
                a.merge(&format!("k{k}"), Entry::bare(&value, version));
            }
            for (k, version, value) in shuffled {
                b.merge(&format!("k{k}"), Entry::bare(&value, version));
            }
            prop_assert_eq!(a, b);
        }
    }
}
