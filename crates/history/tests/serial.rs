//! The serializability check: histories executed one transaction at a
//! time pass whatever their overlap; the classic anomalies are caught and
//! named.

use agora_history::serial::{check, Edge};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn txn(p: u32, kind: &str, ops: &str) -> String {
    format!("{{:process {p}, :type :{kind}, :f :txn, :value [{ops}]}}\n")
}

/// Transactions run atomically at their completion, in the order drawn;
/// invocations are spread before them, so transactions overlap in time.
fn serial_history(plan: &[(u8, Vec<(bool, u8)>)]) -> String {
    let mut store: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
    let mut next = 0u32;
    let mut lines = Vec::new();
    let mut busy: BTreeMap<u8, String> = BTreeMap::new();
    for (client, ops) in plan {
        let client = client % 4;
        // A client with one open transaction completes it first.
        if let Some(done) = busy.remove(&client) {
            lines.push(done);
        }
        let mut invoke = Vec::new();
        let mut done = Vec::new();
        for &(append, key) in ops {
            let key = key % 3;
            if append {
                next += 1;
                store.entry(key).or_default().push(next);
                invoke.push(format!("[:append {key} {next}]"));
                done.push(format!("[:append {key} {next}]"));
            } else {
                invoke.push(format!("[:r {key} nil]"));
                let list = store.get(&key).map(|l| l.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" "));
                done.push(format!("[:r {key} [{}]]", list.unwrap_or_default()));
            }
        }
        lines.push(txn(client as u32, "invoke", &invoke.join(" ")));
        busy.insert(client, txn(client as u32, "ok", &done.join(" ")));
    }
    // Completions in their execution order keep the story serial: each
    // ran when it was drawn, whenever its ok is written.
    lines.extend(busy.into_values());
    lines.concat()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn histories_run_one_transaction_at_a_time_are_serializable(
        plan in proptest::collection::vec((any::<u8>(), proptest::collection::vec((any::<bool>(), any::<u8>()), 1..5)), 1..40)
    ) {
        let r = check(&serial_history(&plan)).unwrap();
        prop_assert!(r.serializable, "{:?}", r);
    }
}

#[test]
fn a_write_cycle_is_g0() {
    let h = [
        txn(0, "invoke", "[:append :x 1] [:append :y 1]"),
        txn(1, "invoke", "[:append :x 2] [:append :y 2]"),
        txn(0, "ok", "[:append :x 1] [:append :y 1]"),
        txn(1, "ok", "[:append :x 2] [:append :y 2]"),
        txn(2, "invoke", "[:r :x nil] [:r :y nil]"),
        txn(2, "ok", "[:r :x [1 2]] [:r :y [2 1]]"),
    ]
    .concat();
    let r = check(&h).unwrap();
    assert_eq!((r.serializable, r.anomaly.as_deref()), (false, Some("G0")), "{r:?}");
    assert_eq!(r.cycle.len(), 2);
    assert!(r.cycle.iter().all(|s| s.edge == Edge::Ww));
    assert_eq!(r.cycle.iter().map(|s| s.line).collect::<Vec<_>>(), [3, 4]);
}

#[test]
fn write_skew_is_g2() {
    let h = [
        txn(0, "invoke", "[:r :x nil] [:r :y nil] [:append :x 1]"),
        txn(1, "invoke", "[:r :x nil] [:r :y nil] [:append :y 1]"),
        txn(0, "ok", "[:r :x nil] [:r :y nil] [:append :x 1]"),
        txn(1, "ok", "[:r :x nil] [:r :y nil] [:append :y 1]"),
        txn(2, "invoke", "[:r :x nil] [:r :y nil]"),
        txn(2, "ok", "[:r :x [1]] [:r :y [1]]"),
    ]
    .concat();
    let r = check(&h).unwrap();
    assert_eq!(r.anomaly.as_deref(), Some("G2"), "{r:?}");
    assert!(r.cycle.iter().all(|s| s.edge == Edge::Rw));
}

#[test]
fn circular_information_flow_is_g1c() {
    // Each saw the other's write.
    let h = [
        txn(0, "invoke", "[:append :x 1] [:r :y nil]"),
        txn(1, "invoke", "[:append :y 1] [:r :x nil]"),
        txn(0, "ok", "[:append :x 1] [:r :y [1]]"),
        txn(1, "ok", "[:append :y 1] [:r :x [1]]"),
    ]
    .concat();
    let r = check(&h).unwrap();
    assert_eq!(r.anomaly.as_deref(), Some("G1c"), "{r:?}");
}

#[test]
fn aborted_reads_and_diverging_orders_are_caught() {
    let h = [
        txn(0, "invoke", "[:append :x 1]"),
        txn(0, "fail", "[:append :x 1]"),
        txn(1, "invoke", "[:r :x nil]"),
        txn(1, "ok", "[:r :x [1]]"),
    ]
    .concat();
    assert_eq!(check(&h).unwrap().anomaly.as_deref(), Some("G1a"));
    let h = [
        txn(0, "invoke", "[:append :x 1] [:append :x 2]"),
        txn(0, "ok", "[:append :x 1] [:append :x 2]"),
        txn(1, "invoke", "[:r :x nil]"),
        txn(1, "ok", "[:r :x [2]]"),
    ]
    .concat();
    assert_eq!(check(&h).unwrap().anomaly.as_deref(), Some("incompatible-order"));
    let h = [
        txn(0, "invoke", "[:append :x 1] [:append :x 2]"),
        txn(0, "ok", "[:append :x 1] [:append :x 2]"),
        txn(1, "invoke", "[:r :x nil]"),
        txn(1, "ok", "[:r :x [1]]"),
    ]
    .concat();
    assert_eq!(check(&h).unwrap().anomaly.as_deref(), Some("G1b"));
    // Bad input names the line.
    let e = check(&txn(0, "invoke", "[:frob :x 1]")).unwrap_err();
    assert_eq!(e.to_string(), "line 1: expected [:append k v] or [:r k list], found [:frob :x 1]");
}
