//! Linearizability of one partition's operations against a sequential
//! model: Wing and Gong's search with Lowe's just-in-time linearisation and
//! a cache of (linearised set, state) pairs already explored, as Porcupine
//! does. The history is a doubly linked list of call and return entries in
//! time order; the search linearises the first call it can, backtracks at
//! the first return whose operation is not yet linearised, and never
//! re-enters a configuration it has seen.

use rustc_hash::FxHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output;
    fn init(&self) -> Self::State;
    /// The state after `input` answered `output` (`None`: the answer is
    /// unknown, any answer is accepted), or `None` if the model cannot
    /// answer that from `state`.
    fn step(&self, state: &Self::State, input: &Self::Input, output: Option<&Self::Output>) -> Option<Self::State>;
}

/// One operation: invoked at `call`, answered at `ret`; an operation never
/// answered has `ret = u64::MAX` and `output = None` (it may or may not
/// have taken effect).
#[derive(Clone, Debug, PartialEq)]
pub struct Operation<I, O> {
    pub input: I,
    pub output: Option<O>,
    pub call: u64,
    pub ret: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// Not linearizable: no order puts the operation at this index (into
    /// the checked slice) before its return, in the deepest attempt.
    Illegal {
        stuck_at: usize,
    },
    /// The search ran past its deadline.
    Unknown,
}

const HEAD: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
    /// Index of the other entry of the same operation.
    other: usize,
    prev: usize,
    next: usize,
}

/// Searches for a linearisation of `ops`; gives up with `Unknown` after
/// `deadline`.
pub fn check<M: Model>(model: &M, ops: &[Operation<M::Input, M::Output>], deadline: Option<Instant>) -> Outcome {
    let mut search = Search::new(model, ops);
    loop {
        if let Some(outcome) = search.run(model, ops, 1 << 16) {
            return outcome;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Outcome::Unknown;
        }
    }
}

/// A search that can be paused, so that several partitions can share the
/// time: one hard partition must not hide another that fails at once.
///
/// The cache needs the set of linearised operations in a canonical form,
/// and a bitset of every operation would make each entry O(n) (12 KiB for
/// a single register of 100,000 operations). Every entry before the head
/// of the list has been lifted, so the set is "every call before the head"
/// plus the few linearised calls after it — at most the history's
/// concurrency. Operations that never return stay in the list and would
/// pin the head, so the boundary is the first entry that is not one of
/// them, and the cache stores the boundary, the linearised calls after it
/// and the linearised never-returning calls before it.
pub struct Search<M: Model> {
    list: Vec<Entry>,
    head: usize,
    /// The entry under consideration.
    at: usize,
    /// Call entries of linearised operations, in time order.
    linearised: BTreeSet<usize>,
    /// Call entries of operations that never return, in time order.
    open_calls: Vec<usize>,
    /// Explored configurations: hash → first index into `configs`.
    seen: HashMap<u64, u32, BuildHasherDefault<Identity>>,
    configs: Vec<Config<M::State>>,
    /// The calls after the head of each configuration, end to end.
    calls: Vec<u32>,
    /// Calls linearised so far, each with the state before it.
    stack: Vec<(usize, M::State)>,
    state: M::State,
    deepest: usize,
    stuck_at: usize,
}

struct Config<S> {
    /// The boundary (see [`Search`]).
    head: usize,
    calls: std::ops::Range<u32>,
    state: S,
    /// The next configuration with the same hash (`u32::MAX`: none).
    next: u32,
}

impl<M: Model> Search<M> {
    pub fn new(model: &M, ops: &[Operation<M::Input, M::Output>]) -> Self {
        let n = ops.len();
        // Entries in time order; at equal times calls come first, so that
        // operations touching in time count as concurrent.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            assert!(op.call <= op.ret, "operation {i} returns before it is called");
            order.push((op.call, true, i));
            order.push((op.ret, false, i));
        }
        order.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
        let mut slot = vec![[0usize; 2]; n];
        let mut list: Vec<Entry> = order
            .iter()
            .enumerate()
            .map(|(k, &(_, is_call, op))| {
                slot[op][usize::from(!is_call)] = k;
                Entry { op, is_call, other: 0, prev: if k == 0 { HEAD } else { k - 1 }, next: k + 1 }
            })
            .collect();
        if let Some(last) = list.last_mut() {
            last.next = HEAD;
        }
        for e in &mut list {
            e.other = slot[e.op][usize::from(e.is_call)];
        }
        let head = if n == 0 { HEAD } else { 0 };
        let open_calls = (0..list.len()).filter(|&k| list[k].is_call && ops[list[k].op].ret == u64::MAX).collect();
        Search {
            list,
            head,
            at: head,
            linearised: BTreeSet::new(),
            open_calls,
            seen: HashMap::default(),
            configs: Vec::new(),
            calls: Vec::new(),
            stack: Vec::new(),
            state: model.init(),
            deepest: 0,
            stuck_at: 0,
        }
    }

    /// The first entry in the list that is not the call of an operation
    /// that never returns: every entry before it has been lifted, or is
    /// one of those calls.
    fn boundary(&self) -> usize {
        let mut k = self.head;
        while k != HEAD && self.open_calls.binary_search(&k).is_ok() {
            k = self.list[k].next;
        }
        k
    }

    /// Records the current configuration with `state`; false if it was
    /// explored before.
    fn remember(&mut self, state: &M::State) -> bool {
        let boundary = self.boundary();
        let open_before = self.open_calls.iter().take_while(|&&c| c < boundary).filter(|c| self.linearised.contains(c));
        let members = open_before.chain(self.linearised.range(boundary..));
        let mut h = FxHasher::default();
        boundary.hash(&mut h);
        for c in members.clone() {
            c.hash(&mut h);
        }
        state.hash(&mut h);
        let hash = h.finish();
        let mut k = self.seen.get(&hash).copied().unwrap_or(u32::MAX);
        while k != u32::MAX {
            let c = &self.configs[k as usize];
            let stored = &self.calls[c.calls.start as usize..c.calls.end as usize];
            if c.head == boundary
                && c.state == *state
                && stored.iter().map(|&x| x as usize).eq(members.clone().copied())
            {
                return false;
            }
            k = c.next;
        }
        let start = self.calls.len() as u32;
        self.calls.extend(members.map(|&c| c as u32));
        let next = self.seen.insert(hash, self.configs.len() as u32).unwrap_or(u32::MAX);
        self.configs.push(Config { head: boundary, calls: start..self.calls.len() as u32, state: state.clone(), next });
        true
    }

    /// Takes up to `budget` steps; `None` if the search is not over.
    pub fn run(&mut self, model: &M, ops: &[Operation<M::Input, M::Output>], budget: u64) -> Option<Outcome> {
        for _ in 0..budget {
            if self.head == HEAD {
                return Some(Outcome::Linearizable);
            }
            let e = self.list[self.at];
            if e.is_call {
                let op = &ops[e.op];
                let Some(next_state) = model.step(&self.state, &op.input, op.output.as_ref()) else {
                    self.at = e.next;
                    continue;
                };
                let call = self.at;
                lift(&mut self.list, &mut self.head, call);
                self.linearised.insert(call);
                if self.head == HEAD || self.remember(&next_state) {
                    self.stack.push((call, std::mem::replace(&mut self.state, next_state)));
                    self.at = self.head;
                } else {
                    self.linearised.remove(&call);
                    unlift(&mut self.list, &mut self.head, call);
                    self.at = e.next;
                }
            } else {
                // A return whose operation is not linearised yet: undo the
                // latest choice and try the call after it.
                if self.stack.len() >= self.deepest {
                    (self.deepest, self.stuck_at) = (self.stack.len(), e.op);
                }
                let Some((call, previous)) = self.stack.pop() else {
                    return Some(Outcome::Illegal { stuck_at: self.stuck_at });
                };
                self.state = previous;
                self.linearised.remove(&call);
                unlift(&mut self.list, &mut self.head, call);
                self.at = self.list[call].next;
            }
        }
        None
    }
}

fn unlink(list: &mut [Entry], head: &mut usize, k: usize) {
    let Entry { prev, next, .. } = list[k];
    if prev == HEAD {
        *head = next;
    } else {
        list[prev].next = next;
    }
    if next != HEAD {
        list[next].prev = prev;
    }
}

fn relink(list: &mut [Entry], head: &mut usize, k: usize) {
    let Entry { prev, next, .. } = list[k];
    if prev == HEAD {
        *head = k;
    } else {
        list[prev].next = k;
    }
    if next != HEAD {
        list[next].prev = k;
    }
}

/// Takes an operation's call and return out of the list.
fn lift(list: &mut [Entry], head: &mut usize, call: usize) {
    let ret = list[call].other;
    unlink(list, head, call);
    unlink(list, head, ret);
}

/// Puts them back, in the reverse order (dancing links).
fn unlift(list: &mut [Entry], head: &mut usize, call: usize) {
    let ret = list[call].other;
    relink(list, head, ret);
    relink(list, head, call);
}

/// The cache's keys are hashes already.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}
