//! The maximum flow of an allocation network (source → providers with c_p →
//! recipients via edges capped by m_pr → sink with d_r), by Dinic's
//! algorithm: the reference every update rule's efficiency is measured
//! against.

use crate::Network;
use std::collections::VecDeque;

struct Arc {
    to: usize,
    cap: f64,
}

/// Capacities below this are treated as zero (floating-point residue).
const EPS: f64 = 1e-12;

/// The value of a maximum flow.
pub fn max_flow(net: &Network) -> f64 {
    let (np, nr) = (net.capacity.len(), net.need.len());
    let (s, t) = (np + nr, np + nr + 1);
    let n = np + nr + 2;
    let mut arcs: Vec<Arc> = Vec::new();
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut add = |a: usize, b: usize, cap: f64, arcs: &mut Vec<Arc>| {
        adj[a].push(arcs.len());
        arcs.push(Arc { to: b, cap });
        adj[b].push(arcs.len());
        arcs.push(Arc { to: a, cap: 0.0 });
    };
    for (p, &c) in net.capacity.iter().enumerate() {
        add(s, p, c, &mut arcs);
    }
    for (r, &d) in net.need.iter().enumerate() {
        add(np + r, t, d, &mut arcs);
    }
    for &(p, r, _, m) in &net.edges {
        add(p, np + r, m, &mut arcs);
    }
    let mut flow = 0.0;
    loop {
        // Levels by breadth-first search on the residual graph.
        let mut level = vec![usize::MAX; n];
        level[s] = 0;
        let mut q = VecDeque::from([s]);
        while let Some(u) = q.pop_front() {
            for &a in &adj[u] {
                let v = arcs[a].to;
                if arcs[a].cap > EPS && level[v] == usize::MAX {
                    level[v] = level[u] + 1;
                    q.push_back(v);
                }
            }
        }
        if level[t] == usize::MAX {
            return flow;
        }
        let mut next = vec![0usize; n];
        loop {
            let pushed = augment(s, t, f64::INFINITY, &adj, &mut arcs, &level, &mut next);
            if pushed <= EPS {
                break;
            }
            flow += pushed;
        }
    }
}

/// One blocking-flow augmenting path (iterative depth-first search).
fn augment(
    s: usize,
    t: usize,
    limit: f64,
    adj: &[Vec<usize>],
    arcs: &mut [Arc],
    level: &[usize],
    next: &mut [usize],
) -> f64 {
    let mut path: Vec<usize> = Vec::new(); // arc ids
    let mut u = s;
    loop {
        if u == t {
            let f = path.iter().map(|&a| arcs[a].cap).fold(limit, f64::min);
            for &a in &path {
                arcs[a].cap -= f;
                arcs[a ^ 1].cap += f;
            }
            return f;
        }
        let mut advanced = false;
        while next[u] < adj[u].len() {
            let a = adj[u][next[u]];
            let v = arcs[a].to;
            if arcs[a].cap > EPS && level[v] == level[u] + 1 {
                path.push(a);
                u = v;
                advanced = true;
                break;
            }
            next[u] += 1;
        }
        if !advanced {
            // Dead end: retreat and skip the arc that led here.
            let Some(a) = path.pop() else { return 0.0 };
            u = arcs[a ^ 1].to;
            next[u] += 1;
        }
    }
}
