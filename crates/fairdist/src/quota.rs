//! A tree of pools sharing a set of slots, and the claimants charging them.

use crate::Allocator;
use fnv::FnvHashMap;
use std::hash::Hash;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(u32);

/// A claimant pinned to a dense index: charging through it needs no lookup.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimantId(u32);

/// Why a charge or discharge was refused. A refused operation changes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The claimant's quota on this slot does not allow the amount.
    Quota {
        slot: usize,
    },
    /// An owner asked for more than remains.
    Exhausted {
        slot: usize,
    },
    /// The amounts overflow 64-bit arithmetic.
    Overflow,
    UnknownSlot(usize),
    /// A discharge of more than the claimant holds.
    Excess {
        slot: usize,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Quota { slot } => write!(f, "quota exceeded on slot {slot}"),
            Refusal::Exhausted { slot } => write!(f, "not enough remains on slot {slot}"),
            Refusal::Overflow => write!(f, "amount overflows 64-bit arithmetic"),
            Refusal::UnknownSlot(s) => write!(f, "no slot {s}"),
            Refusal::Excess { slot } => write!(f, "discharge exceeds the share held on slot {slot}"),
        }
    }
}

impl std::error::Error for Refusal {}

struct Pool {
    /// Shortfalls are charged to the parent as this claimant (the sub-pool's owner).
    parent: Option<(PoolId, ClaimantId)>,
    owner: Option<ClaimantId>,
    /// The pool's own resources, per slot.
    base: Vec<u64>,
    /// What it holds from its parent, per slot.
    borrowed: Vec<u64>,
    remaining: Vec<u64>,
    /// `shares[claimant * slots + slot]`, grown on demand.
    shares: Vec<u64>,
    /// Claimants holding a non-zero share in some slot.
    holders: u64,
}

/// One modification, recorded so that a failed all-or-nothing charge can be
/// rolled back exactly.
enum Undo {
    Share(u32, usize, u64),
    Remaining(u32, usize, u64),
    Borrowed(u32, usize, u64),
    Holders(u32, u64),
}

/// Pools, slots and claimants. Single-threaded; see [`crate::SharedQuota`]
/// for the RAII, thread-safe wrapper.
pub struct Quota<K> {
    allocator: Allocator,
    slot_names: Vec<String>,
    pools: Vec<Pool>,
    ids: FnvHashMap<K, ClaimantId>,
    keys: Vec<K>,
    undo: Vec<Undo>,
}

impl<K: Hash + Eq + Clone> Quota<K> {
    /// A root pool with `(name, total)` per slot.
    pub fn new(allocator: Allocator, slots: &[(&str, u64)]) -> Self {
        let n = slots.len();
        let totals: Vec<u64> = slots.iter().map(|s| s.1).collect();
        Quota {
            allocator,
            slot_names: slots.iter().map(|s| s.0.to_string()).collect(),
            pools: vec![Pool {
                parent: None,
                owner: None,
                base: totals.clone(),
                borrowed: vec![0; n],
                remaining: totals,
                shares: Vec::new(),
                holders: 0,
            }],
            ids: FnvHashMap::default(),
            keys: Vec::new(),
            undo: Vec::new(),
        }
    }

    pub fn root(&self) -> PoolId {
        PoolId(0)
    }
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }
    pub fn slot_count(&self) -> usize {
        self.slot_names.len()
    }
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.slot_names.iter().position(|s| s == name)
    }
    pub fn slot_names(&self) -> &[String] {
        &self.slot_names
    }

    /// The claimant for `key`, created on first use.
    pub fn claimant(&mut self, key: &K) -> ClaimantId {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let id = ClaimantId(self.keys.len() as u32);
        self.keys.push(key.clone());
        self.ids.insert(key.clone(), id);
        id
    }
    pub fn lookup(&self, key: &K) -> Option<ClaimantId> {
        self.ids.get(key).copied()
    }
    pub fn key(&self, id: ClaimantId) -> &K {
        &self.keys[id.0 as usize]
    }

    /// `owner` charges `pool` limited only by what remains.
    pub fn set_owner(&mut self, pool: PoolId, owner: ClaimantId) {
        self.pools[pool.0 as usize].owner = Some(owner);
    }

    /// A sub-pool of `parent` owned by `owner`, with its own `base` per slot
    /// (often zero). What it cannot serve it borrows from `parent` *as
    /// `owner`*, so building sub-levels never lets anyone get more from the
    /// parent than `owner` could by charging it directly.
    pub fn sub_pool(&mut self, parent: PoolId, owner: ClaimantId, base: &[u64]) -> PoolId {
        let n = self.slot_count();
        let mut base = base.to_vec();
        base.resize(n, 0);
        self.pools.push(Pool {
            parent: Some((parent, owner)),
            owner: Some(owner),
            borrowed: vec![0; n],
            remaining: base.clone(),
            base,
            shares: Vec::new(),
            holders: 0,
        });
        PoolId(self.pools.len() as u32 - 1)
    }

    pub fn share(&self, pool: PoolId, c: ClaimantId, slot: usize) -> u64 {
        let p = &self.pools[pool.0 as usize];
        p.shares.get(c.0 as usize * self.slot_names.len() + slot).copied().unwrap_or(0)
    }
    pub fn remaining(&self, pool: PoolId, slot: usize) -> u64 {
        self.pools[pool.0 as usize].remaining[slot]
    }
    /// The pool's own resources plus what it borrowed from its parent.
    pub fn total(&self, pool: PoolId, slot: usize) -> u64 {
        let p = &self.pools[pool.0 as usize];
        p.base[slot] + p.borrowed[slot]
    }
    /// Claimants holding resources in `pool`.
    pub fn holders(&self, pool: PoolId) -> u64 {
        self.pools[pool.0 as usize].holders
    }
    /// How much more `c` could take from `pool` on `slot` right now, without
    /// borrowing from a parent.
    pub fn headroom(&self, pool: PoolId, c: ClaimantId, slot: usize) -> u64 {
        let p = &self.pools[pool.0 as usize];
        let r = p.remaining[slot];
        if p.owner == Some(c) {
            return r;
        }
        let others = p.holders - u64::from(self.holds_any(pool, c));
        self.allocator.max_grant(others, self.share(pool, c, slot), r)
    }

    fn holds_any(&self, pool: PoolId, c: ClaimantId) -> bool {
        let n = self.slot_names.len();
        let start = c.0 as usize * n;
        self.pools[pool.0 as usize].shares.get(start..start + n).is_some_and(|s| s.iter().any(|&v| v > 0))
    }

    /// Charges `amount` of `slot`: granted entirely or not at all.
    pub fn charge(&mut self, pool: PoolId, c: ClaimantId, slot: usize, amount: u64) -> Result<(), Refusal> {
        self.charge_all(pool, c, &[(slot, amount)])
    }

    /// Charges every `(slot, amount)`: all are granted, or none is and
    /// nothing changes.
    pub fn charge_all(&mut self, pool: PoolId, c: ClaimantId, amounts: &[(usize, u64)]) -> Result<(), Refusal> {
        let mut undo = std::mem::take(&mut self.undo);
        undo.clear();
        let mut result = Ok(());
        for &(slot, amount) in amounts {
            if slot >= self.slot_names.len() {
                result = Err(Refusal::UnknownSlot(slot));
                break;
            }
            if let Err(e) = self.take(pool, c, slot, amount, &mut undo) {
                result = Err(e);
                break;
            }
        }
        if result.is_err() {
            for u in undo.drain(..).rev() {
                match u {
                    Undo::Share(p, i, v) => self.pools[p as usize].shares[i] = v,
                    Undo::Remaining(p, s, v) => self.pools[p as usize].remaining[s] = v,
                    Undo::Borrowed(p, s, v) => self.pools[p as usize].borrowed[s] = v,
                    Undo::Holders(p, v) => self.pools[p as usize].holders = v,
                }
            }
        }
        self.undo = undo;
        result
    }

    fn take(
        &mut self,
        pool: PoolId,
        c: ClaimantId,
        slot: usize,
        amount: u64,
        undo: &mut Vec<Undo>,
    ) -> Result<(), Refusal> {
        if amount == 0 {
            return Ok(());
        }
        let pi = pool.0 as usize;
        let s = self.share(pool, c, slot);
        let held = self.holds_any(pool, c);
        let p = &self.pools[pi];
        let r = p.remaining[slot];
        let owner = p.owner == Some(c);
        let others = p.holders - u64::from(held);
        let fits = if owner { amount <= r } else { self.allocator.admits(others, s, amount, r) };
        if !fits {
            let refusal = if owner { Refusal::Exhausted { slot } } else { Refusal::Quota { slot } };
            let Some((parent, as_claimant)) = p.parent else { return Err(refusal) };
            // The reserve this pool needs to grant the amount under its rule.
            let need: u128 = if owner {
                amount as u128
            } else {
                let a = self.allocator.factor(others).ok_or(Refusal::Overflow)?;
                let want = s.checked_add(amount).ok_or(Refusal::Overflow)?;
                want as u128 * a as u128 - s as u128
            };
            let shortfall = u64::try_from(need - r as u128).map_err(|_| Refusal::Overflow)?;
            self.take(parent, as_claimant, slot, shortfall, undo)?;
            let p = &mut self.pools[pi];
            undo.push(Undo::Borrowed(pool.0, slot, p.borrowed[slot]));
            undo.push(Undo::Remaining(pool.0, slot, p.remaining[slot]));
            p.borrowed[slot] += shortfall;
            p.remaining[slot] += shortfall;
        }
        let n = self.slot_names.len();
        let idx = c.0 as usize * n + slot;
        let p = &mut self.pools[pi];
        if p.shares.len() <= idx {
            p.shares.resize((c.0 as usize + 1) * n, 0);
        }
        undo.push(Undo::Share(pool.0, idx, p.shares[idx]));
        undo.push(Undo::Remaining(pool.0, slot, p.remaining[slot]));
        p.shares[idx] += amount;
        p.remaining[slot] -= amount;
        if !held {
            undo.push(Undo::Holders(pool.0, p.holders));
            p.holders += 1;
        }
        Ok(())
    }

    /// What `c`'s sub-pools of `pool` have borrowed through it on `slot`:
    /// part of `c`'s share that only those sub-pools can return.
    pub fn lent(&self, pool: PoolId, c: ClaimantId, slot: usize) -> u64 {
        self.pools.iter().filter(|p| p.parent == Some((pool, c))).map(|p| p.borrowed[slot]).sum()
    }

    /// What `c` holds in `pool` itself (its share less what it lent to sub-pools).
    pub fn own_share(&self, pool: PoolId, c: ClaimantId, slot: usize) -> u64 {
        self.share(pool, c, slot) - self.lent(pool, c, slot)
    }

    /// Returns `amount` of `slot` to `pool`; a sub-pool hands what it no
    /// longer needs back to its parent. A claimant returns only what it holds
    /// itself: what its sub-pools borrowed comes back through them.
    pub fn discharge(&mut self, pool: PoolId, c: ClaimantId, slot: usize, amount: u64) -> Result<(), Refusal> {
        if slot >= self.slot_names.len() {
            return Err(Refusal::UnknownSlot(slot));
        }
        if amount > self.own_share(pool, c, slot) {
            return Err(Refusal::Excess { slot });
        }
        self.give_back(pool, c, slot, amount);
        Ok(())
    }

    fn give_back(&mut self, pool: PoolId, c: ClaimantId, slot: usize, amount: u64) {
        let n = self.slot_names.len();
        let idx = c.0 as usize * n + slot;
        let p = &mut self.pools[pool.0 as usize];
        if amount == 0 {
            return;
        }
        p.shares[idx] -= amount;
        p.remaining[slot] += amount;
        if p.shares[c.0 as usize * n..(c.0 as usize + 1) * n].iter().all(|&v| v == 0) {
            p.holders -= 1;
        }
        if let Some((parent, as_claimant)) = p.parent {
            let refund = p.borrowed[slot].min(p.remaining[slot]);
            if refund > 0 {
                p.borrowed[slot] -= refund;
                p.remaining[slot] -= refund;
                self.give_back(parent, as_claimant, slot, refund);
            }
        }
    }

    /// Returns everything `c` holds itself in `pool`.
    pub fn discharge_all(&mut self, pool: PoolId, c: ClaimantId) {
        for slot in 0..self.slot_names.len() {
            let s = self.own_share(pool, c, slot);
            self.give_back(pool, c, slot, s);
        }
    }

    /// Checks the bookkeeping: per pool and slot, shares + remaining = own +
    /// borrowed; the holder count matches; a sub-pool's borrowing is covered
    /// by its owner's share at the parent.
    pub fn check(&self) -> Result<(), String> {
        let n = self.slot_names.len();
        for (pi, p) in self.pools.iter().enumerate() {
            for slot in 0..n {
                let shares: u128 = p.shares.iter().skip(slot).step_by(n).map(|&v| v as u128).sum();
                let total = p.base[slot] as u128 + p.borrowed[slot] as u128;
                if shares + p.remaining[slot] as u128 != total {
                    return Err(format!(
                        "pool {pi} slot {slot}: shares {shares} + remaining {} ≠ total {total}",
                        p.remaining[slot]
                    ));
                }
                if let Some((parent, owner)) = p.parent {
                    if self.share(parent, owner, slot) < p.borrowed[slot] {
                        return Err(format!("pool {pi} slot {slot}: borrowed more than its owner holds at the parent"));
                    }
                }
            }
            let holders = p.shares.chunks(n.max(1)).filter(|c| c.iter().any(|&v| v > 0)).count() as u64;
            if holders != p.holders {
                return Err(format!("pool {pi}: {holders} claimants hold resources, counted {}", p.holders));
            }
        }
        Ok(())
    }
}
