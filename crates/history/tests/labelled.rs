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

/// Compare-and-set in the kv model: an `:ok` cas swapped, a `:fail` one
/// did not happen, and a read must see what the successful cas wrote.
#[test]
fn a_kv_cas_is_checked_against_what_it_expected() {
    let history = |read: &str| {
        format!(
            r#"{{:process 0, :type :invoke, :f :put, :key "k", :value "a"}}
{{:process 0, :type :ok, :f :put, :key "k", :value "a"}}
{{:process 1, :type :invoke, :f :cas, :key "k", :value ["x" "c"]}}
{{:process 1, :type :fail, :f :cas, :key "k", :value ["x" "c"]}}
{{:process 1, :type :invoke, :f :cas, :key "k", :value ["a" "b"]}}
{{:process 1, :type :ok, :f :cas, :key "k", :value ["a" "b"]}}
{{:process 2, :type :invoke, :f :get, :key "k", :value nil}}
{{:process 2, :type :ok, :f :get, :key "k", :value "{read}"}}
"#
        )
    };
    let check_kv = |text: &str| check(text, Some(Format::Edn), ModelKind::Kv, None).unwrap().linearizable;
    assert_eq!(check_kv(&history("b")), Some(true));
    assert_eq!(check_kv(&history("a")), Some(false), "the cas had swapped a for b");
    assert_eq!(check_kv(&history("c")), Some(false), "the failed cas wrote nothing");
    let bad = history("b").replace(r#"["a" "b"]}"#, r#""b"}"#);
    let e = check(&bad, Some(Format::Edn), ModelKind::Kv, None).unwrap_err();
    assert!(e.to_string().contains("[expected new]"), "{e}");
}
