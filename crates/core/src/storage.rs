//! Durable storage as a driver capability (the way TigerBeetle hands its
//! replica a `Storage`): a protocol writes through [`Io`](crate::Io) —
//! [`put`](crate::Io::put), [`delete`](crate::Io::delete),
//! [`append`](crate::Io::append) — and asks for a [`sync`](crate::Io::sync);
//! the driver answers with [`Protocol::on_synced`](crate::Protocol::on_synced)
//! once everything written before the sync is durable (or the disk refused
//! it). When the node restarts without its memory, the driver reads the disk
//! back and hands it to [`Protocol::on_restore`](crate::Protocol::on_restore)
//! before `on_start`. Nothing that was not synced survives a crash.
//!
//! Every record is sealed with its length and a CRC-32 ([`seal`]), so a torn
//! write (cut short by a crash) and a corrupted record (a bit flipped at
//! rest) are detected when the disk is read back, left out of the
//! [`Durable`] view and listed in [`Durable::damaged`], never handed to the
//! protocol as if they were good. The simulator models the disk (latency,
//! crashes, torn writes, corruption, a full disk); the TCP runtime backs it
//! with redb or etcd on a thread of its own, never blocking the event loop.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a record lives: a service's named table or log. The service is set
/// by the composition layer (`""` for a protocol that runs alone), so two
/// services on one node never share a table by accident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Space {
    pub service: &'static str,
    pub name: &'static str,
}

impl std::fmt::Display for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.service.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.service, self.name)
        }
    }
}

/// One write a protocol asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// Sets `key` in table `space` to `value`.
    Put { space: Space, key: Vec<u8>, value: Vec<u8> },
    /// Removes `key` from table `space`.
    Delete { space: Space, key: Vec<u8> },
    /// Appends `record` to log `space`.
    Append { space: Space, record: Vec<u8> },
    /// Makes everything written before it durable; the driver answers with
    /// `on_synced(SyncDone { ticket, .. })`.
    Sync { service: &'static str, ticket: u64 },
}

impl StoreOp {
    /// The bytes it adds to the disk (sealed), for capacity accounting.
    pub fn bytes(&self) -> u64 {
        match self {
            StoreOp::Put { key, value, .. } => (key.len() + value.len() + SEAL_OVERHEAD) as u64,
            StoreOp::Append { record, .. } => (record.len() + SEAL_OVERHEAD) as u64,
            StoreOp::Delete { .. } | StoreOp::Sync { .. } => 0,
        }
    }
    /// Sets the service of the space (the composition layer's job).
    pub fn in_service(mut self, service: &'static str) -> Self {
        match &mut self {
            StoreOp::Put { space, .. } | StoreOp::Delete { space, .. } | StoreOp::Append { space, .. } => {
                if space.service.is_empty() {
                    space.service = service
                }
            }
            StoreOp::Sync { service: s, .. } => {
                if s.is_empty() {
                    *s = service
                }
            }
        }
        self
    }
}

/// Why a sync did not make its writes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum DiskError {
    /// The disk is full: the writes since the previous sync were refused.
    #[error("the disk is full")]
    Full,
    /// The backend failed (an I/O error, etcd unreachable).
    #[error("the storage backend failed")]
    Backend,
}

/// The driver's answer to [`StoreOp::Sync`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncDone {
    pub service: &'static str,
    pub ticket: u64,
    /// `Ok`: every write before the sync is durable. `Err`: none of the
    /// writes since the previous sync is.
    pub result: Result<(), DiskError>,
}

/// How a record read back was damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    /// Shorter than its length says: a write cut short by a crash.
    Torn,
    /// Full length, wrong checksum: corrupted at rest.
    Corrupt,
}

/// A record left out of a [`Durable`] view because its seal did not check.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Damage {
    pub space: Space,
    /// The table key, or the log index as 8 big-endian bytes.
    pub at: Vec<u8>,
    pub kind: DamageKind,
}

/// A node's durable state as read back from its disk: what a restarted node
/// may rely on. Records whose seal did not check are left out and listed in
/// [`Durable::damaged`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Durable {
    tables: BTreeMap<Space, BTreeMap<Vec<u8>, Vec<u8>>>,
    logs: BTreeMap<Space, Vec<Vec<u8>>>,
    damaged: Vec<Damage>,
}

impl Durable {
    /// Reads a disk image of sealed records back, checking every seal.
    pub fn from_sealed<'a>(
        tables: impl IntoIterator<Item = (Space, &'a [u8], &'a [u8])>,
        logs: impl IntoIterator<Item = (Space, u64, &'a [u8])>,
    ) -> Self {
        let mut d = Durable::default();
        for (space, key, sealed) in tables {
            match unseal(sealed) {
                Ok(v) => {
                    d.tables.entry(space).or_default().insert(key.to_vec(), v.to_vec());
                }
                Err(kind) => d.damaged.push(Damage { space, at: key.to_vec(), kind }),
            }
        }
        for (space, index, sealed) in logs {
            match unseal(sealed) {
                Ok(v) => d.logs.entry(space).or_default().push(v.to_vec()),
                Err(kind) => d.damaged.push(Damage { space, at: index.to_be_bytes().to_vec(), kind }),
            }
        }
        d
    }

    /// Nothing durable at all (a node's first start).
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.logs.is_empty() && self.damaged.is_empty()
    }
    /// The rows of table `name`, in key order.
    pub fn table<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.tables
            .iter()
            .filter(move |(s, _)| s.name == name)
            .flat_map(|(_, t)| t.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
    }
    pub fn get(&self, table: &str, key: &[u8]) -> Option<&[u8]> {
        self.tables.iter().find(|(s, _)| s.name == table).and_then(|(_, t)| t.get(key)).map(Vec::as_slice)
    }
    /// The good records of log `name`, in append order.
    pub fn log(&self, name: &str) -> &[Vec<u8>] {
        self.logs.iter().find(|(s, _)| s.name == name).map_or(&[], |(_, l)| l.as_slice())
    }
    /// Records whose seal did not check, left out of the tables and logs.
    pub fn damaged(&self) -> &[Damage] {
        &self.damaged
    }
    /// The part of the disk that belongs to `service` (what the composition
    /// layer hands each service).
    pub fn of_service(&self, service: &str) -> Durable {
        Durable {
            tables: self.tables.iter().filter(|(s, _)| s.service == service).map(|(s, t)| (*s, t.clone())).collect(),
            logs: self.logs.iter().filter(|(s, _)| s.service == service).map(|(s, l)| (*s, l.clone())).collect(),
            damaged: self.damaged.iter().filter(|d| d.space.service == service).cloned().collect(),
        }
    }
}

/// Bytes a seal adds: a 4-byte length before the payload, a CRC-32 after.
pub const SEAL_OVERHEAD: usize = 8;

/// `len (u32 LE) ‖ payload ‖ crc32(len ‖ payload) (u32 LE)`.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + SEAL_OVERHEAD);
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// The payload of a sealed record, or how it is damaged.
pub fn unseal(sealed: &[u8]) -> Result<&[u8], DamageKind> {
    if sealed.len() < 4 {
        return Err(DamageKind::Torn);
    }
    let len = u32::from_le_bytes(sealed[..4].try_into().expect("4 bytes")) as usize;
    if sealed.len() < len + SEAL_OVERHEAD {
        return Err(DamageKind::Torn);
    }
    if sealed.len() > len + SEAL_OVERHEAD {
        return Err(DamageKind::Corrupt);
    }
    let (body, crc) = sealed.split_at(4 + len);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(DamageKind::Corrupt);
    }
    Ok(&body[4..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_seal_checks_and_any_cut_or_flip_is_caught(payload in proptest::collection::vec(any::<u8>(), 0..64), cut in 0usize..72, bit in 0usize..576) {
            let s = seal(&payload);
            prop_assert_eq!(unseal(&s), Ok(payload.as_slice()));
            if cut < s.len() {
                prop_assert_eq!(unseal(&s[..cut]), Err(DamageKind::Torn));
            }
            let mut flipped = s.clone();
            let bit = bit % (flipped.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(unseal(&flipped).is_err());
        }
    }

    #[test]
    fn damaged_records_are_left_out_and_listed() {
        let t = Space { service: "", name: "t" };
        let good = seal(b"v");
        let mut bad = seal(b"w");
        bad[5] ^= 0xff;
        let torn = &seal(b"xyz")[..6];
        let d = Durable::from_sealed(
            [(t, &b"a"[..], good.as_slice()), (t, &b"b"[..], bad.as_slice())],
            [(t, 0, good.as_slice()), (t, 1, torn)],
        );
        assert_eq!(d.get("t", b"a"), Some(&b"v"[..]));
        assert_eq!(d.get("t", b"b"), None);
        assert_eq!(d.log("t"), &[b"v".to_vec()]);
        let kinds: Vec<_> = d.damaged().iter().map(|x| x.kind).collect();
        assert_eq!(kinds, vec![DamageKind::Corrupt, DamageKind::Torn]);
    }
}
