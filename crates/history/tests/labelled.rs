//! Outside evidence: Porcupine's labelled key–value histories (copied from
//! `shared/data/kv-histories`, MIT licence): every `-ok` is linearizable,
//! every `-bad` is not.

use agora_history::{check, Format, ModelKind};
use std::time::Duration;

fn verdict(name: &str) -> agora_history::Report {
    let path = format!("{}/tests/data/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    check(&text, Some(Format::Edn), ModelKind::Kv, Some(Duration::from_secs(60))).unwrap()
}

#[test]
fn porcupines_linearizable_histories_pass() {
    for name in ["c01-ok", "c10-ok", "c50-ok"] {
        let r = verdict(name);
        assert_eq!(r.linearizable, Some(true), "{name}: {r:?}");
        assert!(r.ops > 50 && r.partitions >= 1 && r.stuck.is_none(), "{name}: {r:?}");
    }
}

#[test]
fn porcupines_non_linearizable_histories_fail() {
    for name in ["c01-bad", "c10-bad", "c50-bad"] {
        let r = verdict(name);
        assert_eq!(r.linearizable, Some(false), "{name}: {r:?}");
        let stuck = r.stuck.expect("a failed check names where");
        assert!(stuck.line >= 1, "{name}: {stuck:?}");
    }
}
