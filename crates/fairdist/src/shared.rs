//! A thread-safe quota with RAII charges: a [`Charge`] returns its amount
//! when dropped.

use crate::{ClaimantId, PoolId, Quota, Refusal};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

pub struct SharedQuota<K>(Arc<Mutex<Quota<K>>>);

impl<K> Clone for SharedQuota<K> {
    fn clone(&self) -> Self {
        SharedQuota(self.0.clone())
    }
}

/// Resources held until dropped (or [`Charge::release`]d).
#[must_use = "dropping a charge returns its resources at once"]
pub struct Charge<K: Hash + Eq + Clone> {
    quota: Arc<Mutex<Quota<K>>>,
    pool: PoolId,
    claimant: ClaimantId,
    slot: usize,
    amount: u64,
}

impl<K: Hash + Eq + Clone> SharedQuota<K> {
    pub fn new(quota: Quota<K>) -> Self {
        SharedQuota(Arc::new(Mutex::new(quota)))
    }

    /// Runs `f` with the quota locked (set-up, queries).
    pub fn with<R>(&self, f: impl FnOnce(&mut Quota<K>) -> R) -> R {
        f(&mut self.0.lock().expect("quota lock"))
    }

    /// Charges `amount` of `slot` for a pinned claimant.
    pub fn charge(&self, pool: PoolId, claimant: ClaimantId, slot: usize, amount: u64) -> Result<Charge<K>, Refusal> {
        self.0.lock().expect("quota lock").charge(pool, claimant, slot, amount)?;
        Ok(Charge { quota: self.0.clone(), pool, claimant, slot, amount })
    }

    /// Charges for the claimant with `key` (looked up, created if new).
    pub fn charge_key(&self, pool: PoolId, key: &K, slot: usize, amount: u64) -> Result<Charge<K>, Refusal> {
        let mut q = self.0.lock().expect("quota lock");
        let claimant = q.claimant(key);
        q.charge(pool, claimant, slot, amount)?;
        Ok(Charge { quota: self.0.clone(), pool, claimant, slot, amount })
    }
}

impl<K: Hash + Eq + Clone> Charge<K> {
    pub fn amount(&self) -> u64 {
        self.amount
    }
    pub fn claimant(&self) -> ClaimantId {
        self.claimant
    }
    /// Returns the resources now (the same as dropping).
    pub fn release(self) {}
}

impl<K: Hash + Eq + Clone> Drop for Charge<K> {
    fn drop(&mut self) {
        if let Ok(mut q) = self.quota.lock() {
            // Cannot fail: the charge holds exactly this amount.
            let _ = q.discharge(self.pool, self.claimant, self.slot, self.amount);
        }
    }
}
