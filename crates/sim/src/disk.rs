//! The simulated disk behind the storage capability (`agora_core::storage`).
//!
//! Writes join a node's pending set; a sync takes the pending set as one
//! batch, which becomes durable after `write × ops + sync` (sync drawn in
//! `[sync_min, sync_max]`), batches completing in order. Faults, all drawn
//! from the seed's disk stream or scheduled in the fault plan:
//! * a crash loses every write not yet durable;
//! * with probability `torn` a crash tears the last unsynced write onto the
//!   disk (half its bytes), which the seal check then reports as torn;
//! * with probability `corrupt` a crash flips a byte of one durable record
//!   (and `Fault::DiskCorrupt` does so at once), reported as corrupt;
//! * a full disk (`capacity_bytes`, or `Fault::DiskFull`) refuses a sync's
//!   batch: `SyncDone` says `Full` and none of its writes is kept.

use agora_core::storage::{seal, Durable, Space, StoreOp};
use agora_core::Time;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// The disk model of a run (`[disk]` in a scenario).
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskModel {
    /// Time per write op in a batch.
    #[serde(with = "agora_core::duration_str")]
    pub write: Duration,
    #[serde(with = "agora_core::duration_str")]
    pub sync_min: Duration,
    #[serde(with = "agora_core::duration_str")]
    pub sync_max: Duration,
    /// Sealed bytes a node's disk holds; a batch beyond it is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Probability that a crash tears the last unsynced write onto the disk.
    pub torn: f64,
    /// Probability that a crash corrupts one durable record.
    pub corrupt: f64,
}

impl Default for DiskModel {
    fn default() -> Self {
        DiskModel {
            write: Duration::from_micros(10),
            sync_min: Duration::from_micros(500),
            sync_max: Duration::from_millis(2),
            capacity_bytes: None,
            torn: 0.0,
            corrupt: 0.0,
        }
    }
}

impl DiskModel {
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [("torn", self.torn), ("corrupt", self.corrupt)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name}: {p} is not a probability in [0, 1]"));
            }
        }
        if self.sync_min > self.sync_max {
            return Err(format!("sync_min: {:?} is above sync_max {:?}", self.sync_min, self.sync_max));
        }
        Ok(())
    }
}

/// A sync waiting to complete.
pub(crate) struct Batch {
    pub id: u64,
    pub service: &'static str,
    pub ticket: u64,
    ops: Vec<StoreOp>,
    bytes: u64,
    pub done_at: Time,
}

/// One node's disk.
#[derive(Default)]
pub(crate) struct Disk {
    tables: BTreeMap<Space, BTreeMap<Vec<u8>, Vec<u8>>>,
    logs: BTreeMap<Space, Vec<Vec<u8>>>,
    used: u64,
    pending: Vec<StoreOp>,
    pub syncing: VecDeque<Batch>,
    pub full: bool,
}

impl Disk {
    /// A write joins the pending set.
    pub fn write(&mut self, op: StoreOp) {
        self.pending.push(op);
    }

    /// A sync: the pending set becomes a batch; returns when it completes.
    pub fn sync(
        &mut self,
        model: &DiskModel,
        id: u64,
        service: &'static str,
        ticket: u64,
        now: Time,
        rng: &mut ChaCha8Rng,
    ) -> Time {
        let ops = std::mem::take(&mut self.pending);
        let bytes = ops.iter().map(StoreOp::bytes).sum();
        let sync = if model.sync_max > model.sync_min {
            model.sync_min + (model.sync_max - model.sync_min).mul_f64(rng.random::<f64>())
        } else {
            model.sync_min
        };
        let mut done_at = now + model.write * ops.len() as u32 + sync;
        if let Some(last) = self.syncing.back() {
            done_at = done_at.max(last.done_at);
        }
        self.syncing.push_back(Batch { id, service, ticket, ops, bytes, done_at });
        done_at
    }

    /// Completes the oldest batch if it is `id`: applies it, or refuses it
    /// when the disk is full. `None` if `id` is stale (lost in a crash).
    pub fn complete(&mut self, model: &DiskModel, id: u64) -> Option<(&'static str, u64, bool)> {
        if self.syncing.front().is_none_or(|b| b.id != id) {
            return None;
        }
        let b = self.syncing.pop_front().expect("checked above");
        let over = model.capacity_bytes.is_some_and(|c| self.used + b.bytes > c);
        if self.full || over {
            return Some((b.service, b.ticket, false));
        }
        for op in b.ops {
            self.apply(op, false);
        }
        Some((b.service, b.ticket, true))
    }

    fn apply(&mut self, op: StoreOp, torn: bool) {
        let cut = |mut v: Vec<u8>| {
            if torn {
                v.truncate(v.len() / 2);
            }
            v
        };
        match op {
            StoreOp::Put { space, key, value } => {
                let v = cut(seal(&value));
                self.used += (key.len() + v.len()) as u64;
                if let Some(old) = self.tables.entry(space).or_default().insert(key.clone(), v) {
                    self.used -= (key.len() + old.len()) as u64;
                }
            }
            StoreOp::Delete { space, key } => {
                if let Some(old) = self.tables.get_mut(&space).and_then(|t| t.remove(&key)) {
                    self.used -= (key.len() + old.len()) as u64;
                }
            }
            StoreOp::Append { space, record } => {
                let v = cut(seal(&record));
                self.used += v.len() as u64;
                self.logs.entry(space).or_default().push(v);
            }
            StoreOp::Sync { .. } => {}
        }
    }

    /// A crash: every write not durable is lost, the last one maybe torn
    /// onto the disk, and maybe one durable record corrupted. Returns
    /// (torn, corrupted).
    pub fn crash(&mut self, model: &DiskModel, rng: &mut ChaCha8Rng) -> (bool, bool) {
        let mut lost: Vec<StoreOp> = self.syncing.drain(..).flat_map(|b| b.ops).collect();
        lost.append(&mut self.pending);
        let last = lost.into_iter().rev().find(|op| !matches!(op, StoreOp::Sync { .. } | StoreOp::Delete { .. }));
        let torn = match last {
            Some(op) if model.torn > 0.0 && rng.random::<f64>() < model.torn => {
                self.apply(op, true);
                true
            }
            _ => false,
        };
        let corrupted = model.corrupt > 0.0 && rng.random::<f64>() < model.corrupt && self.corrupt_one(rng);
        (torn, corrupted)
    }

    /// Flips one byte of one durable record's payload or checksum; false if
    /// there is none.
    pub fn corrupt_one(&mut self, rng: &mut ChaCha8Rng) -> bool {
        let mut records: Vec<&mut Vec<u8>> = self.tables.values_mut().flat_map(|t| t.values_mut()).collect();
        records.extend(self.logs.values_mut().flat_map(|l| l.iter_mut()));
        records.retain(|r| r.len() > 4);
        if records.is_empty() {
            return false;
        }
        let i = rng.random_range(0..records.len());
        let r = &mut records[i];
        let at = rng.random_range(4..r.len());
        r[at] ^= 1 << rng.random_range(0..8);
        true
    }

    /// What a restarted node reads back.
    pub fn read_back(&self) -> Durable {
        Durable::from_sealed(
            self.tables.iter().flat_map(|(s, t)| t.iter().map(move |(k, v)| (*s, k.as_slice(), v.as_slice()))),
            self.logs.iter().flat_map(|(s, l)| l.iter().enumerate().map(move |(i, v)| (*s, i as u64, v.as_slice()))),
        )
    }
}
