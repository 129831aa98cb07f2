//! The sequential specifications histories are checked against.

use crate::linear::Model;
use std::sync::Arc;

/// A register holding an integer or nothing (Jepsen's etcd test): read,
/// write, compare-and-set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterInput {
    Read,
    Write(i64),
    Cas(i64, i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutput {
    Read(Option<i64>),
    Written,
    /// Whether the compare succeeded.
    Cas(bool),
}

impl Model for Register {
    type State = Option<i64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, input: &RegisterInput, output: Option<&RegisterOutput>) -> Option<Option<i64>> {
        match (input, output) {
            (RegisterInput::Read, None) => Some(*state),
            (RegisterInput::Read, Some(RegisterOutput::Read(v))) => (v == state).then_some(*state),
            (RegisterInput::Write(v), None | Some(RegisterOutput::Written)) => Some(Some(*v)),
            (RegisterInput::Cas(from, to), None) => Some(if *state == Some(*from) { Some(*to) } else { *state }),
            (RegisterInput::Cas(from, to), Some(RegisterOutput::Cas(ok))) => match (*state == Some(*from), ok) {
                (true, true) => Some(Some(*to)),
                (false, false) => Some(*state),
                _ => None,
            },
            _ => None,
        }
    }
}

/// One key of a key–value store of strings (Porcupine's kv model): get,
/// put, append, and compare-and-set; a key never written reads as "".
/// A cas that completes `:ok` swapped (one that did not is `:fail`, and a
/// failed operation did not happen).
#[derive(Clone, Copy, Debug, Default)]
pub struct KvKey;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvInput {
    Get,
    Put(String),
    Append(String),
    /// Replace `.0` with `.1`.
    Cas(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    Got(String),
    Done,
}

/// Shared, so that the search's cache and stack hold a value without
/// copying it.
impl Model for KvKey {
    type State = Arc<str>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Arc<str> {
        Arc::from("")
    }

    fn step(&self, state: &Arc<str>, input: &KvInput, output: Option<&KvOutput>) -> Option<Arc<str>> {
        match (input, output) {
            (KvInput::Get, None) => Some(state.clone()),
            (KvInput::Get, Some(KvOutput::Got(v))) => (**v == **state).then(|| state.clone()),
            (KvInput::Put(v), None | Some(KvOutput::Done)) => Some(Arc::from(v.as_str())),
            (KvInput::Append(v), None | Some(KvOutput::Done)) => Some(Arc::from(format!("{state}{v}"))),
            (KvInput::Cas(from, to), None) => {
                Some(if **state == **from { Arc::from(to.as_str()) } else { state.clone() })
            }
            (KvInput::Cas(from, to), Some(KvOutput::Done)) => (**state == **from).then(|| Arc::from(to.as_str())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_compare_leaves_the_register_and_a_wrong_answer_is_refused() {
        let r = Register;
        assert_eq!(r.step(&Some(1), &RegisterInput::Cas(1, 2), Some(&RegisterOutput::Cas(true))), Some(Some(2)));
        assert_eq!(r.step(&Some(3), &RegisterInput::Cas(1, 2), Some(&RegisterOutput::Cas(false))), Some(Some(3)));
        assert_eq!(r.step(&Some(3), &RegisterInput::Cas(1, 2), Some(&RegisterOutput::Cas(true))), None);
        assert_eq!(r.step(&None, &RegisterInput::Read, Some(&RegisterOutput::Read(Some(0)))), None);
        assert_eq!(KvKey.step(&"a".into(), &KvInput::Append("b".into()), None).as_deref(), Some("ab"));
        assert_eq!(KvKey.step(&"a".into(), &KvInput::Get, Some(&KvOutput::Got("ab".into()))), None);
        let cas = KvInput::Cas("a".into(), "b".into());
        assert_eq!(KvKey.step(&"a".into(), &cas, Some(&KvOutput::Done)).as_deref(), Some("b"));
        assert_eq!(KvKey.step(&"c".into(), &cas, Some(&KvOutput::Done)), None, "an ok cas needs its expected value");
        assert_eq!(KvKey.step(&"c".into(), &cas, None).as_deref(), Some("c"), "an unknown one may have failed");
    }
}
