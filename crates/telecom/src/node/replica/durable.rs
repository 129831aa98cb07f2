//! The replicas' data on the storage capability. Every change a member
//! applies is written to its disk (table `kv`). A member of a strong group
//! answers a request only once a sync covers it — reads too, since a read
//! must not show a write that a crash could still take back; the other
//! groups' members answer at once and sync every heartbeat (what
//! asynchronous durability trades). A member restarted without its memory
//! reads its stores back; keys whose records were damaged (a torn write, a
//! corrupted record) are unknown until a write or a repair sets them, and
//! requests that need their value are refused rather than answered from
//! nothing. Writes a failed sync (a full disk) did not make durable are
//! written again before the next one.
//!
//! A write is applied once per request: a member records the reply of each
//! write it applied (table `applied`, the latest [`APPLIED_KEPT`] per
//! group) and answers a retry of it with that reply. Without this a retry
//! after a lost answer, or after a sync the disk refused, applies an append
//! twice.

use super::*;
use agora_core::storage::{Durable, SyncDone};
use std::collections::VecDeque;

/// The table holding every group's entries: key = group (2 bytes) ++ key.
const TABLE: &str = "kv";
/// The replies of applied writes: key = group ++ client (4) ++ request id (8).
const APPLIED: &str = "applied";
/// Applied writes remembered per group (a retry comes within seconds).
pub(super) const APPLIED_KEPT: usize = 4096;

fn record_key(group: u16, key: &str) -> Vec<u8> {
    [group.to_be_bytes().as_slice(), key.as_bytes()].concat()
}

/// A record's key back as (group, key).
fn parse_key(k: &[u8]) -> Option<(u16, String)> {
    let group = u16::from_be_bytes(k.get(..2)?.try_into().ok()?);
    Some((group, String::from_utf8(k[2..].to_vec()).ok()?))
}

fn applied_key(group: u16, request: (NodeId, u64)) -> Vec<u8> {
    [group.to_be_bytes().as_slice(), &request.0 .0.to_be_bytes(), &request.1.to_be_bytes()].concat()
}

fn parse_applied(k: &[u8], v: &[u8]) -> Option<(u16, (NodeId, u64), Reply)> {
    let group = u16::from_be_bytes(k.get(..2)?.try_into().ok()?);
    let client = u32::from_be_bytes(k.get(2..6)?.try_into().ok()?);
    let id = u64::from_be_bytes(k.get(6..14)?.try_into().ok()?);
    let applied = *v.first()? == 1;
    Some((group, (NodeId(client), id), Reply { applied, entry: Entry::from_bytes(&v[1..])? }))
}

/// The writes one group's member applied, by request, oldest first out.
#[derive(Clone, Debug, Default)]
pub(super) struct Applied {
    replies: BTreeMap<(NodeId, u64), Reply>,
    order: VecDeque<(NodeId, u64)>,
}

type Record = (&'static str, Vec<u8>, Vec<u8>);
/// A sync in flight: the records it covers, and the replies and the
/// replica messages (a strong group's acknowledgements) it holds.
type InFlight = (Vec<Record>, Vec<(RequestKey, Reply)>, Vec<ship::Replica>);

/// What the node's storage is doing for its replicas.
#[derive(Clone, Debug, Default)]
pub(super) struct Disk {
    next_ticket: u64,
    /// Records (table, key, value) written since the last sync asked for.
    unsynced: Vec<Record>,
    /// Per sync in flight: the records it covers, and the replies it holds.
    in_flight: BTreeMap<u64, InFlight>,
    /// Keys whose durable record was damaged: unknown until set again.
    damaged: std::collections::BTreeSet<(u16, String)>,
    /// Per group: the writes applied, so that a retry is not applied again.
    applied: Vec<Applied>,
    /// The node restarted on a disk that held records.
    restored: bool,
}

impl Disk {
    pub(super) fn new(groups: usize) -> Self {
        Disk { applied: vec![Applied::default(); groups], ..Disk::default() }
    }

    pub(super) fn restored(&self) -> bool {
        self.restored
    }
}

impl Replicas {
    /// Writes `entry` of `key` in `group` to the disk (durable at the next sync).
    pub(super) fn persist(&mut self, group: u16, key: &str, entry: &Entry, io: &mut Io<'_, Self>) {
        self.write_record(TABLE, record_key(group, key), entry.to_bytes(), io);
        self.disk.damaged.remove(&(group, key.to_string()));
    }

    pub(super) fn write_record(&mut self, table: &'static str, k: Vec<u8>, v: Vec<u8>, io: &mut Io<'_, Self>) {
        io.put(table, k.clone(), v.clone());
        self.disk.unsynced.push((table, k, v));
    }

    /// The reply this member gave when it applied write `request`, if it did.
    pub(super) fn applied_before(&self, group: u16, request: (NodeId, u64)) -> Option<Reply> {
        self.disk.applied.get(group as usize)?.replies.get(&request).cloned()
    }

    /// Records that write `request` was applied with `reply` (on disk with it).
    pub(super) fn record_applied(&mut self, group: u16, request: (NodeId, u64), reply: &Reply, io: &mut Io<'_, Self>) {
        let v = [&[reply.applied as u8][..], &reply.entry.to_bytes()].concat();
        self.write_record(APPLIED, applied_key(group, request), v, io);
        let a = &mut self.disk.applied[group as usize];
        a.replies.insert(request, reply.clone());
        a.order.push_back(request);
        if a.order.len() > APPLIED_KEPT {
            let old = a.order.pop_front().expect("over the limit");
            a.replies.remove(&old);
            io.delete(APPLIED, applied_key(group, old));
        }
    }

    /// Asks for a sync covering everything written so far, holding `held`
    /// replies and the messages `sends` until it completes.
    pub(super) fn sync(&mut self, held: Vec<(RequestKey, Reply)>, sends: Vec<ship::Replica>, io: &mut Io<'_, Self>) {
        let ticket = self.disk.next_ticket;
        self.disk.next_ticket += 1;
        let writes = std::mem::take(&mut self.disk.unsynced);
        self.disk.in_flight.insert(ticket, (writes, held, sends));
        io.sync(ticket);
    }

    /// Every heartbeat: the eventual groups' writes made durable.
    pub(super) fn sync_if_written(&mut self, io: &mut Io<'_, Self>) {
        if !self.disk.unsynced.is_empty() {
            self.sync(Vec::new(), Vec::new(), io);
        }
    }

    pub(super) fn synced(&mut self, done: SyncDone, io: &mut Io<'_, Self>) {
        let Some((writes, held, sends)) = self.disk.in_flight.remove(&done.ticket) else { return };
        match done.result {
            Ok(()) => {
                for (key, reply) in held {
                    self.deliver(key, reply, io);
                }
                for r in sends {
                    self.route(r.to, Msg::Replica(r), io);
                }
            }
            Err(_) => {
                io.count(counters::SYNCS_REFUSED, 1);
                for (table, k, v) in writes {
                    self.write_record(table, k, v, io);
                }
                for (key, _) in held {
                    self.reply(&key, None, Status::Overloaded, io);
                }
            }
        }
    }

    /// After a crash with memory kept: the syncs in flight were lost with
    /// it, so their records are written again and their requests dropped.
    pub(super) fn resync_after_crash(&mut self, io: &mut Io<'_, Self>) {
        for (_, (writes, _, _)) in std::mem::take(&mut self.disk.in_flight) {
            for (table, k, v) in writes {
                self.write_record(table, k, v, io);
            }
        }
    }

    /// A restart without memory: the stores as the disk holds them.
    pub(super) fn restore(&mut self, disk: &Durable) {
        self.disk.restored = disk.table(TABLE).next().is_some() || !disk.damaged().is_empty();
        for (k, v) in disk.table(TABLE) {
            if let (Some((group, key)), Some(entry)) = (parse_key(k), Entry::from_bytes(v)) {
                if let Some(store) = self.stores.get_mut(group as usize) {
                    store.repair(&key, entry);
                }
            }
        }
        let mut applied: Vec<(u64, u16, (NodeId, u64), Reply)> = disk
            .table(APPLIED)
            .filter_map(|(k, v)| parse_applied(k, v))
            .map(|(g, r, reply)| (r.1, g, r, reply))
            .collect();
        applied.sort_by_key(|a| (a.0, a.2 .0));
        for (_, group, request, reply) in applied {
            if let Some(a) = self.disk.applied.get_mut(group as usize) {
                a.replies.insert(request, reply);
                a.order.push_back(request);
            }
        }
        // A delete of an evicted record is not sent again after a refused
        // sync, so the disk may hold more: keep the newest (the rest is ignored).
        for a in &mut self.disk.applied {
            while a.order.len() > APPLIED_KEPT {
                let old = a.order.pop_front().expect("over the limit");
                a.replies.remove(&old);
            }
        }
        for d in disk.damaged().iter().filter(|d| d.space.name == TABLE) {
            if let Some(gk) = parse_key(&d.at) {
                self.disk.damaged.insert(gk);
            }
        }
    }

    /// Whether `op` on `key` needs a value this member lost to damage.
    pub(super) fn unknown(&self, group: u16, key: &str, op: &Op) -> bool {
        !matches!(op, Op::Write(_)) && self.disk.damaged.contains(&(group, key.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::kv::{Seal, Sig};

    #[test]
    fn records_read_back_as_written() {
        let e = Entry { value: b"1.2;".to_vec(), version: 7, proof: Vec::new() };
        assert_eq!(Entry::from_bytes(&e.to_bytes()), Some(e));
        let seal = |writer, len| Seal { writer: NodeId(writer), len, sig: Sig([7; 64]) };
        let sealed = Entry { value: b"1.2;3.4;".to_vec(), version: 9, proof: vec![seal(1, 4), seal(3, 4)] };
        assert_eq!(Entry::from_bytes(&sealed.to_bytes()), Some(sealed.clone()));
        let cut = sealed.to_bytes();
        assert_eq!(Entry::from_bytes(&cut[..cut.len() - 1]), None, "a torn record is refused");
        assert_eq!(parse_key(&record_key(3, "k42")), Some((3, "k42".to_string())));
        assert_eq!(Entry::from_bytes(b"short"), None);
        let r = Reply { applied: false, entry: Entry::bare(b"v", 2) };
        let k = applied_key(5, (NodeId(3), 99));
        let v = [&[0u8][..], &r.entry.to_bytes()].concat();
        assert_eq!(parse_applied(&k, &v), Some((5, (NodeId(3), 99), r)));
        assert_eq!(parse_key(b"x"), None);
    }
}
