//! Routing and partition detection from link state.
//!
//! Every node floods what it sees of its links (up, lossy, down) as a
//! [`LinkState`] update, on every change and every `refresh`. From the
//! updates it holds, a node derives its [`View`]: which links are usable (both
//! ends call each other not down), shortest paths over them — backup links
//! and lossy links cost extra, so traffic fails over to a backup path only
//! when the primary is gone — which nodes it can reach (a minority side of a
//! partition isolates itself), and which nodes most of their own neighbours
//! find lossy (omission suspects).

use crate::topology::Topology;
use agora_core::NodeId;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a node sees of one link.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Health {
    Up,
    /// Heartbeats arrive, but too many are lost.
    Lossy,
    /// The detector suspects the neighbour has crashed.
    Down,
}

/// One node's report of its links, newest `seq` wins.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct LinkState {
    pub origin: NodeId,
    pub seq: u64,
    /// (neighbour, health), in the topology's neighbour order.
    pub links: Vec<(NodeId, Health)>,
}

/// Stores `ls` if it is newer than what `db` holds from its origin: None if
/// it is not (or names no node), else whether the links it reports differ
/// from the stored ones (a refresh that changes nothing leaves routes alone).
/// Newest-wins makes the result independent of the order updates arrive in.
pub fn accept(db: &mut [Option<LinkState>], ls: LinkState) -> Option<bool> {
    let slot = db.get_mut(ls.origin.index())?;
    match slot {
        Some(old) if ls.seq <= old.seq => None,
        Some(old) => {
            let changed = old.links != ls.links;
            *old = ls;
            Some(changed)
        }
        None => {
            *slot = Some(ls);
            Some(true)
        }
    }
}

/// Added to a backup link's cost, so a route takes it only when nothing else reaches.
const BACKUP_PENALTY_MS: f64 = 1000.0;
/// Added to a lossy link's cost: routes go around an omitting node when they can.
const LOSSY_PENALTY_MS: f64 = 500.0;

/// Dijkstra from `source` over `edges(a) → (b, cost)`: the distance to each
/// node (infinite if unreachable) and the first hop on a shortest path
/// (ties: the lower node id, so every run routes alike).
pub fn dijkstra<I: Iterator<Item = (NodeId, f64)>>(
    source: NodeId,
    n: usize,
    mut edges: impl FnMut(NodeId) -> I,
) -> (Vec<f64>, Vec<Option<NodeId>>) {
    let mut dist = vec![f64::INFINITY; n];
    let mut hop: Vec<Option<NodeId>> = vec![None; n];
    let mut heap = BinaryHeap::new();
    dist[source.index()] = 0.0;
    heap.push(Reverse((Ordered(0.0), source.0)));
    while let Some(Reverse((Ordered(d), a))) = heap.pop() {
        let a = NodeId(a);
        if d > dist[a.index()] {
            continue;
        }
        for (b, cost) in edges(a) {
            let nd = d + cost;
            let first = if a == source { Some(b) } else { hop[a.index()] };
            let better = nd < dist[b.index()] || (nd == dist[b.index()] && first < hop[b.index()]);
            if better && b != source {
                dist[b.index()] = nd;
                hop[b.index()] = first;
                heap.push(Reverse((Ordered(nd), b.0)));
            }
        }
    }
    (dist, hop)
}

/// f64 ordered by `total_cmp`, for the heap.
#[derive(PartialEq, Clone, Copy)]
struct Ordered(f64);
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ordered {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// What one node derives from the link state it holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct View {
    /// First hop towards each node (None: unreachable, or me).
    pub next_hop: Vec<Option<NodeId>>,
    pub reachable: Vec<bool>,
    /// Fewer than half the nodes are reachable: this side of a partition
    /// (or what survives a mass failure) stops serving.
    pub isolated: bool,
    /// Nodes most of whose neighbours report their link lossy.
    pub omission: Vec<bool>,
}

/// The health `origin` reports for its link to `to` (Up if no report yet:
/// every link starts trusted).
pub fn reported(db: &[Option<LinkState>], origin: NodeId, to: NodeId) -> Health {
    db[origin.index()]
        .as_ref()
        .and_then(|s| s.links.iter().find(|(n, _)| *n == to).map(|(_, h)| *h))
        .unwrap_or(Health::Up)
}

impl View {
    /// The view of `me` from the updates in `db` (indexed by origin).
    pub fn derive(topo: &Topology, me: NodeId, db: &[Option<LinkState>]) -> View {
        let n = topo.len();
        let (dist, next_hop) = dijkstra(me, n, |a| {
            topo.neighbours[a.index()].iter().filter_map(move |nb| {
                let (ab, ba) = (reported(db, a, nb.node), reported(db, nb.node, a));
                if ab == Health::Down || ba == Health::Down {
                    return None;
                }
                let mut cost = nb.rtt_ms;
                if nb.backup {
                    cost += BACKUP_PENALTY_MS;
                }
                if ab == Health::Lossy || ba == Health::Lossy {
                    cost += LOSSY_PENALTY_MS;
                }
                Some((nb.node, cost))
            })
        });
        let reachable: Vec<bool> = dist.iter().map(|d| d.is_finite()).collect();
        let count = reachable.iter().filter(|&&r| r).count();
        let omission = (0..n)
            .map(|x| {
                let x = NodeId(x as u32);
                let nbs = &topo.neighbours[x.index()];
                let lossy = nbs.iter().filter(|nb| reported(db, nb.node, x) == Health::Lossy).count();
                !nbs.is_empty() && lossy * 2 > nbs.len()
            })
            .collect();
        View { next_hop, reachable, isolated: count * 2 <= n, omission }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dijkstra_prefers_the_cheaper_path_and_breaks_ties_by_id() {
        // 0 – 1 (1), 0 – 2 (1), 1 – 3 (1), 2 – 3 (1), 0 – 3 (5)
        let edges = [(0, 1, 1.0), (0, 2, 1.0), (1, 3, 1.0), (2, 3, 1.0), (0, 3, 5.0)];
        let adj = |a: NodeId| {
            edges
                .iter()
                .filter_map(move |&(x, y, c)| {
                    if x == a.0 {
                        Some((NodeId(y), c))
                    } else if y == a.0 {
                        Some((NodeId(x), c))
                    } else {
                        None
                    }
                })
                .collect::<Vec<_>>()
                .into_iter()
        };
        let (dist, hop) = dijkstra(NodeId(0), 4, adj);
        assert_eq!(dist, vec![0.0, 1.0, 1.0, 2.0]);
        assert_eq!(hop, vec![None, Some(NodeId(1)), Some(NodeId(2)), Some(NodeId(1))]);
    }
}
