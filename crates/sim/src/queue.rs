//! The event queue: events ordered by (time, order of scheduling).
//!
//! A radix heap over the events' times, with byte-sized digits: a
//! discrete-event simulator's keys are monotone (nothing is scheduled before
//! the event being handled), and a radix heap turns that into appends to
//! buckets instead of a sift through a deep tree. Relative to `last` (the
//! current time) an event at time t sits in bucket (L, d): L is the highest
//! byte in which t differs from `last`, d is t's byte L. All of bucket
//! (L, d) comes before (L, d + 1), and level L before level L + 1; the
//! events that come next wait in a short sorted run. When the run is
//! empty, the lowest bucket becomes the next run if it is small (sorted by
//! time) and is otherwise split into lower levels around its earliest time,
//! so an event moves at most eight times and about three across a
//! simulator's typical spread of delays (a bit-per-level radix heap moved
//! each about twenty times, and a binary heap's sift misses the cache).
//!
//! The run is the simulator's lookahead: it prefetches the state of the
//! nodes the next events go to while it handles the current one (at 10^6
//! nodes every event is otherwise a cache miss, paid one after the other).
//!
//! Ties need no sequence number: every bucket keeps its events in the order
//! they were scheduled. New events are appended, and a bucket is only ever
//! split into lower buckets that are all empty, in its own order.

use agora_core::Time;
use std::collections::VecDeque;

const LEVELS: usize = 8;
/// A bucket this small becomes the run without being split.
const RUN_MAX: usize = 256;
/// Emptied buckets' allocations kept for reuse by the next bucket that
/// fills: fresh memory costs page faults and zeroing, and the pending
/// events move from bucket to bucket all the time.
const SPARE_MAX: usize = 64;

pub(crate) struct EventQueue<T> {
    /// The next events, by time and then order of scheduling; none later
    /// than any event in a bucket.
    current: VecDeque<(u64, T)>,
    /// `buckets[L * 256 + d]`.
    buckets: Vec<Vec<(u64, T)>>,
    /// Bit L set: level L has an occupied bucket.
    levels: u8,
    /// Per level, bit d set: bucket (L, d) is occupied.
    digits: [[u64; 4]; LEVELS],
    /// At most every queued event's time.
    last: u64,
    /// Empty allocations for buckets that fill next.
    spare: Vec<Vec<(u64, T)>>,
}

impl<T> EventQueue<T> {
    pub fn new() -> Self {
        EventQueue {
            current: VecDeque::new(),
            buckets: (0..LEVELS * 256).map(|_| Vec::new()).collect(),
            levels: 0,
            digits: [[0; 4]; LEVELS],
            last: 0,
            spare: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.current.is_empty() && self.levels == 0
    }

    fn put(&mut self, t: u64, ev: T) {
        let x = t ^ self.last;
        if x == 0 {
            self.current.push_back((t, ev));
            return;
        }
        let level = (63 - x.leading_zeros()) as usize / 8;
        let digit = (t >> (8 * level)) as usize & 0xff;
        let bucket = &mut self.buckets[level * 256 + digit];
        if bucket.capacity() == 0 {
            if let Some(v) = self.spare.pop() {
                *bucket = v;
            }
        }
        bucket.push((t, ev));
        self.levels |= 1 << level;
        self.digits[level][digit / 64] |= 1 << (digit % 64);
    }

    /// The lowest occupied bucket.
    fn lowest(&self) -> Option<usize> {
        if self.levels == 0 {
            return None;
        }
        let level = self.levels.trailing_zeros() as usize;
        let words = &self.digits[level];
        let w = words.iter().position(|&w| w != 0).expect("an occupied level has an occupied bucket");
        Some(level * 256 + w * 64 + words[w].trailing_zeros() as usize)
    }

    fn vacate(&mut self, bucket: usize) {
        let (level, digit) = (bucket / 256, bucket % 256);
        self.digits[level][digit / 64] &= !(1 << (digit % 64));
        if self.digits[level] == [0; 4] {
            self.levels &= !(1 << level);
        }
    }

    pub fn push(&mut self, at: Time, ev: T) {
        let t = at.as_nanos();
        if self.is_empty() {
            self.last = t;
        } else if t < self.last {
            // Only an event scheduled from outside between runs, earlier than
            // the one already looked at, can be; rebuild (rare, O(n)). Events
            // of one time share a bucket, so bucket by bucket keeps their order.
            let current: Vec<_> = self.current.drain(..).collect();
            let buckets = std::mem::replace(&mut self.buckets, (0..LEVELS * 256).map(|_| Vec::new()).collect());
            (self.levels, self.digits, self.last) = (0, [[0; 4]; LEVELS], t);
            for (t, ev) in current.into_iter().chain(buckets.into_iter().flatten()) {
                self.put(t, ev);
            }
        }
        match self.current.back() {
            // Inside the run: after the events of its time (rare: the run
            // spans a short time, and delays are rarely that short).
            Some(back) if t <= back.0 => {
                let pos = self.current.partition_point(|e| e.0 <= t);
                self.current.insert(pos, (t, ev));
            }
            _ => self.put(t, ev),
        }
    }

    /// Makes `current` hold the earliest events; returns their time.
    fn settle(&mut self) -> Option<u64> {
        while self.current.is_empty() {
            let b = self.lowest()?;
            let mut events = std::mem::take(&mut self.buckets[b]);
            self.vacate(b);
            if events.len() <= RUN_MAX || b < 256 {
                // Stable: events of one time stay in order. (A level-0
                // bucket is one time already.)
                events.sort_by_key(|e| e.0);
                self.last = events[0].0;
                self.current.extend(events.drain(..));
            } else {
                self.last = events.iter().map(|e| e.0).min().expect("an occupied bucket has events");
                // Every event lands in the run or a lower (empty) bucket, in order.
                for (t, ev) in events.drain(..) {
                    self.put(t, ev);
                }
            }
            if self.spare.len() < SPARE_MAX {
                self.spare.push(events);
            }
        }
        // The run's first event, not `last` (where the run began): once
        // some are popped they differ, and a run stopping at a time limit
        // went on past it (by seconds, once: the run spans a bucket).
        self.current.front().map(|e| e.0)
    }

    /// The time of the earliest event.
    pub fn peek_time(&mut self) -> Option<Time> {
        self.settle().map(Time::from_nanos)
    }

    pub fn pop(&mut self) -> Option<(Time, T)> {
        self.settle()?;
        self.current.pop_front().map(|(t, ev)| (Time::from_nanos(t), ev))
    }

    /// The events of the run, soonest first (the simulator calls it after
    /// taking the current event out): for prefetching, not for deciding
    /// anything.
    pub fn upcoming(&self) -> impl Iterator<Item = &T> {
        self.current.iter().map(|e| &e.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the schedule, events come out in (time, seq) order,
        /// including events pushed while handling and from outside after a peek.
        #[test]
        fn peeks_the_time_of_the_event_popped_next(times in proptest::collection::vec(0u64..(1 << 36), 1..600)) {
            let mut q = EventQueue::new();
            for (i, t) in times.iter().enumerate() {
                q.push(Time::from_nanos(*t), i);
            }
            while let Some(peeked) = q.peek_time() {
                let (t, _) = q.pop().expect("a peeked event");
                prop_assert_eq!(peeked, t);
            }
        }

        #[test]
        fn pops_in_time_then_sequence_order(delays in proptest::collection::vec((prop_oneof![0u64..50, 0u64..20_000], 0u8..3), 1..2_000)) {
            let mut q = EventQueue::new();
            let mut seq = 0;
            let mut now = 0;
            let mut popped = Vec::new();
            for (d, action) in delays {
                seq += 1;
                match action {
                    0 => q.push(Time::from_nanos(now + d), seq),
                    1 => { let _ = q.peek_time(); q.push(Time::from_nanos(now + d / 2), seq); }
                    _ => if let Some((t, s)) = q.pop() { now = t.as_nanos(); popped.push((t.as_nanos(), s)); },
                }
            }
            while let Some((t, s)) = q.pop() { popped.push((t.as_nanos(), s)); }
            prop_assert!(popped.windows(2).all(|w| w[0] < w[1]), "{:?}", popped);
            prop_assert!(q.peek_time().is_none());
        }

        /// Bursts larger than a run, spread over many levels, with events
        /// scheduled during the drain at and after the current time: still
        /// (time, order of scheduling).
        #[test]
        fn bursts_pop_in_order(burst in proptest::collection::vec(0u64..(1 << 40), 300..3_000), later in proptest::collection::vec((0u64..5_000, any::<bool>()), 0..500)) {
            let mut q = EventQueue::new();
            let mut seq = 0u64;
            for t in &burst {
                seq += 1;
                q.push(Time::from_nanos(*t), seq);
            }
            let mut popped = Vec::new();
            let mut later = later.into_iter();
            while let Some((t, s)) = q.pop() {
                popped.push((t.as_nanos(), s));
                if let Some((d, same)) = later.next() {
                    seq += 1;
                    q.push(Time::from_nanos(if same { t.as_nanos() } else { t.as_nanos() + d }), seq);
                }
            }
            prop_assert_eq!(popped.len() as u64, seq);
            prop_assert!(popped.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
