//! Deadlocks in a wait-for graph, resolved as the seed's flow does (§
//! "Deadlock Detection"): find a cycle, abort one transaction of it chosen
//! by a rule, and repeat until the graph is acyclic. The seed's example
//! (T1→T2→T3→T4→T1 and T5→T6→T5) gives two cycles and two victims.
//!
//! The search is deterministic: transactions in input order, each one's
//! waits in input order; a cycle is reported from the transaction at which
//! the search first re-entered it. Victim rules: `oldest` (smallest start,
//! as the seed's timeout rule), `priority` (lowest priority), `work` (least
//! work done, the seed's "optimal recovery"); ties go to input order.

use crate::InputError;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    pub id: String,
    pub start: f64,
    pub priority: f64,
    pub work: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub transactions: Vec<Transaction>,
    /// `[waiter, holder]`: the waiter waits for a lock the holder has.
    pub waits_for: Vec<[String; 2]>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Victim {
    #[default]
    Oldest,
    Priority,
    Work,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resolution {
    pub cycles: Vec<Vec<String>>,
    pub victims: Vec<String>,
}

/// The graph as adjacency lists over input indices, or the bad entry.
fn adjacency(g: &Graph) -> Result<Vec<Vec<usize>>, InputError> {
    crate::check_ids("transactions", g.transactions.iter().map(|t| t.id.as_str()), true, "")?;
    for (i, t) in g.transactions.iter().enumerate() {
        for (f, v) in [("start", t.start), ("priority", t.priority), ("work", t.work)] {
            if !v.is_finite() {
                return Err(InputError::new(format!("transactions[{i}].{f}"), format!("{v} is not a finite number")));
            }
        }
    }
    let index: std::collections::HashMap<&str, usize> =
        g.transactions.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
    let mut adj = vec![Vec::new(); g.transactions.len()];
    for (e, [w, h]) in g.waits_for.iter().enumerate() {
        let find = |id: &String, k: usize| {
            index.get(id.as_str()).copied().ok_or_else(|| InputError {
                at: format!("waits_for[{e}][{k}]"),
                message: format!("unknown transaction {id:?}"),
            })
        };
        let (a, b) = (find(w, 0)?, find(h, 1)?);
        if a == b {
            return Err(InputError { at: format!("waits_for[{e}]"), message: format!("{w:?} waits for itself") });
        }
        if !adj[a].contains(&b) {
            adj[a].push(b);
        }
    }
    Ok(adj)
}

/// A cycle among the transactions still `alive`, if any (iterative DFS).
fn find_cycle(adj: &[Vec<usize>], alive: &[bool]) -> Option<Vec<usize>> {
    // 0 unvisited, 1 on the current path, 2 done.
    let mut state = vec![0u8; adj.len()];
    for root in (0..adj.len()).filter(|&v| alive[v]) {
        if state[root] != 0 {
            continue;
        }
        let mut path = vec![root];
        let mut next = vec![0usize];
        state[root] = 1;
        while let Some(&v) = path.last() {
            let i = next.last_mut().expect("as long as path");
            match adj[v].get(*i).copied() {
                Some(w) => {
                    *i += 1;
                    if !alive[w] {
                        continue;
                    }
                    match state[w] {
                        0 => {
                            state[w] = 1;
                            path.push(w);
                            next.push(0);
                        }
                        1 => {
                            let at = path.iter().position(|&u| u == w).expect("on the path");
                            return Some(path[at..].to_vec());
                        }
                        _ => {}
                    }
                }
                None => {
                    state[v] = 2;
                    path.pop();
                    next.pop();
                }
            }
        }
    }
    None
}

/// Finds a cycle, aborts the rule's choice among it, until none is left.
pub fn resolve(g: &Graph, rule: Victim) -> Result<Resolution, InputError> {
    let adj = adjacency(g)?;
    let mut alive = vec![true; adj.len()];
    let (mut cycles, mut victims) = (Vec::new(), Vec::new());
    while let Some(cycle) = find_cycle(&adj, &alive) {
        let key = |&i: &usize| {
            let t = &g.transactions[i];
            match rule {
                Victim::Oldest => t.start,
                Victim::Priority => t.priority,
                Victim::Work => t.work,
            }
        };
        // The smallest key; ties to the earlier transaction in the input.
        let v = *cycle.iter().min_by(|a, b| key(a).total_cmp(&key(b)).then(a.cmp(b))).expect("a cycle is not empty");
        alive[v] = false;
        cycles.push(cycle.iter().map(|&i| g.transactions[i].id.clone()).collect());
        victims.push(g.transactions[v].id.clone());
    }
    Ok(Resolution { cycles, victims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_assert, prop_assert_eq, proptest};

    fn graph(n: usize, edges: &[(usize, usize)]) -> Graph {
        Graph {
            transactions: (1..=n)
                .map(|i| Transaction {
                    id: format!("T{i}"),
                    start: i as f64,
                    priority: (n - i) as f64,
                    work: (i % 3) as f64,
                })
                .collect(),
            waits_for: edges.iter().map(|&(a, b)| [format!("T{a}"), format!("T{b}")]).collect(),
        }
    }

    #[test]
    fn the_seed_example_has_two_cycles_and_two_victims() {
        let g = graph(6, &[(1, 2), (2, 3), (3, 4), (4, 1), (5, 6), (6, 5)]);
        let r = resolve(&g, Victim::Oldest).unwrap();
        assert_eq!(r.cycles, vec![vec!["T1", "T2", "T3", "T4"], vec!["T5", "T6"]]);
        assert_eq!(r.victims, ["T1", "T5"], "the oldest of each");
        let r = resolve(&g, Victim::Priority).unwrap();
        assert_eq!(r.victims, ["T4", "T6"], "the lowest priority of each");
        let r = resolve(&g, Victim::Work).unwrap();
        assert_eq!(r.victims, ["T3", "T6"], "the least work (3 % 3 = 0, 6 % 3 = 0)");
    }

    #[test]
    fn bad_entries_are_named() {
        let mut g = graph(2, &[(1, 2)]);
        g.waits_for.push(["T2".into(), "T9".into()]);
        assert_eq!(resolve(&g, Victim::Oldest).unwrap_err().to_string(), "waits_for[1][1]: unknown transaction \"T9\"");
        let g = graph(2, &[(1, 1)]);
        assert_eq!(resolve(&g, Victim::Oldest).unwrap_err().at, "waits_for[0]");
        let mut g = graph(2, &[]);
        g.transactions[1].id = "T1".into();
        assert_eq!(resolve(&g, Victim::Oldest).unwrap_err().at, "transactions[1].id");
    }

    proptest! {
        /// Whatever the graph: every reported cycle is a cycle of the graph,
        /// each has one victim from it, and without the victims the graph is
        /// acyclic; an acyclic graph reports nothing.
        #[test]
        fn victims_break_every_cycle(n in 2usize..30, edges in proptest::collection::vec((1usize..30, 1usize..30), 0..80)) {
            let edges: Vec<(usize, usize)> = edges.into_iter().filter(|&(a, b)| a <= n && b <= n && a != b).collect();
            let g = graph(n, &edges);
            let r = resolve(&g, Victim::Work).unwrap();
            prop_assert_eq!(r.cycles.len(), r.victims.len());
            let has = |a: &String, b: &String| g.waits_for.iter().any(|e| &e[0] == a && &e[1] == b);
            for (c, v) in r.cycles.iter().zip(&r.victims) {
                prop_assert!(c.contains(v));
                prop_assert!((0..c.len()).all(|i| has(&c[i], &c[(i + 1) % c.len()])));
            }
            let adj = adjacency(&g).unwrap();
            let alive: Vec<bool> = g.transactions.iter().map(|t| !r.victims.contains(&t.id)).collect();
            prop_assert!(find_cycle(&adj, &alive).is_none());
            // Forward edges only (a < b): acyclic, so nothing to report.
            let dag = graph(n, &edges.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect::<Vec<_>>());
            prop_assert!(resolve(&dag, Victim::Oldest).unwrap().victims.is_empty());
        }
    }
}
