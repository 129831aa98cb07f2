//! A replica's key–value state: string keys, byte values, a version per
//! key, and the four operations a client request carries. A key never
//! written reads as the empty value at version 0 (as the history checker's
//! kv model has it), so every operation is defined on every key.

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

/// A key's value and version (the number of changes it has seen).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub value: Vec<u8>,
    pub version: u64,
}

impl Entry {
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

    /// Applies `op` to `key`.
    pub fn apply(&mut self, key: &str, op: &Op) -> Reply {
        let current = self.get(key);
        let next = match op {
            Op::Read => None,
            Op::Write(v) => Some(v.clone()),
            Op::Cas { expected, value } => (current.value == *expected).then(|| value.clone()),
            Op::Append(e) => Some([current.value.as_slice(), e].concat()),
        };
        match next {
            None => Reply { applied: matches!(op, Op::Read), entry: current },
            Some(value) => {
                let entry = Entry { value, version: current.version + 1 };
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
        assert_eq!(s.apply("a", &Op::Read), Reply { applied: true, entry: Entry::default() });
        let w = s.apply("a", &Op::Write(b"x".to_vec()));
        assert_eq!(w.entry, Entry { value: b"x".to_vec(), version: 1 });
        let cas = |expected: &[u8], value: &[u8]| Op::Cas { expected: expected.to_vec(), value: value.to_vec() };
        let failed = s.apply("a", &cas(b"y", b"z"));
        assert!(!failed.applied);
        assert_eq!(failed.entry.version, 1, "a failed compare changes nothing");
        assert!(s.apply("a", &cas(b"x", b"z")).applied);
        let appended = s.apply("a", &Op::Append(b"!".to_vec()));
        assert_eq!(appended.entry, Entry { value: b"z!".to_vec(), version: 3 });
        assert!(s.apply("b", &cas(b"", b"new")).applied, "a key never written holds the empty value");
        assert!(!s.repair("a", Entry { value: b"old".to_vec(), version: 2 }), "older than what it holds");
        assert!(s.repair("a", Entry { value: b"new".to_vec(), version: 4 }));
        assert_eq!(s.get("a").value, b"new");
        assert_eq!(s.get("b").value, b"new");
        // As new with another value: merge takes the larger, adopt takes it.
        let tie = |v: &[u8]| Entry { value: v.to_vec(), version: 4 };
        assert!(!s.merge("a", tie(b"abc")), "smaller than what it holds");
        assert!(s.merge("a", tie(b"zzz")));
        assert!(s.adopt("a", tie(b"abc")));
        assert!(!s.adopt("a", tie(b"abc")), "the same entry");
        assert_eq!(s.entries().count(), 2);
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
                let r = s.apply(&key, &op);
                prop_assert_eq!(r.applied, new.is_some() || op == Op::Read);
                if let Some(v) = new {
                    model.insert(key.clone(), (v, version + 1));
                }
                let (value, version) = model.get(&key).cloned().unwrap_or_default();
                prop_assert_eq!(r.entry, Entry { value, version });
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
                a.merge(&format!("k{k}"), Entry { value, version });
            }
            for (k, version, value) in shuffled {
                b.merge(&format!("k{k}"), Entry { value, version });
            }
            prop_assert_eq!(a, b);
        }
    }
}
