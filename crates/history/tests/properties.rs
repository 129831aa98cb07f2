//! The search against a brute force that tries every order, on small random
//! histories; the register model on Jepsen's etcd log format; and long
//! generated histories that are linearizable by construction.

use agora_history::generate::Shape;
use agora_history::linear::{check, Operation, Outcome};
use agora_history::models::{Register, RegisterInput, RegisterOutput};
use agora_history::{Format, ModelKind};
use proptest::prelude::*;

/// Every permutation that respects real time, replayed on the model.
fn brute_force(ops: &[Operation<RegisterInput, RegisterOutput>]) -> bool {
    fn go(ops: &[Operation<RegisterInput, RegisterOutput>], done: &mut Vec<bool>, state: Option<i64>) -> bool {
        if done.iter().all(|&d| d) {
            return true;
        }
        // An operation may go next if no pending one returned before it was called.
        let earliest_ret = (0..ops.len()).filter(|&i| !done[i]).map(|i| ops[i].ret).min().unwrap();
        for i in 0..ops.len() {
            if done[i] || ops[i].call > earliest_ret {
                continue;
            }
            use agora_history::linear::Model;
            if let Some(next) = Register.step(&state, &ops[i].input, ops[i].output.as_ref()) {
                done[i] = true;
                if go(ops, done, next) {
                    return true;
                }
                done[i] = false;
            }
        }
        false
    }
    go(ops, &mut vec![false; ops.len()], None)
}

fn arb_op() -> impl Strategy<Value = Operation<RegisterInput, RegisterOutput>> {
    let input = prop_oneof![
        Just(RegisterInput::Read),
        (0i64..3).prop_map(RegisterInput::Write),
        (0i64..3, 0i64..3).prop_map(|(a, b)| RegisterInput::Cas(a, b)),
    ];
    (input, 0u64..20, 1u64..8, proptest::option::of(0i64..3), any::<bool>(), 0u8..8).prop_map(
        |(input, call, len, read, ok, pending)| {
            let output = match input {
                RegisterInput::Read => Some(RegisterOutput::Read(read)),
                RegisterInput::Write(_) => Some(RegisterOutput::Written),
                RegisterInput::Cas(..) => Some(RegisterOutput::Cas(ok)),
            };
            // One in eight never returns (reads excepted: they would be dropped).
            if pending == 0 && !matches!(input, RegisterInput::Read) {
                Operation { input, output: None, call, ret: u64::MAX }
            } else {
                Operation { input, output, call, ret: call + len }
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn the_search_agrees_with_trying_every_order(ops in proptest::collection::vec(arb_op(), 1..7)) {
        let fast = check(&Register, &ops, None);
        prop_assert_ne!(&fast, &Outcome::Unknown);
        prop_assert_eq!(fast == Outcome::Linearizable, brute_force(&ops), "{:?}", ops);
    }
}

fn generated_log(clients: usize, ops: usize, info_rate: f64, seed: u64) -> String {
    agora_history::generate::register_log(&Shape { clients, ops, keys: 1, info_rate, seed })
}

#[test]
fn generated_register_histories_pass_and_a_stale_read_fails() {
    for seed in 0..20 {
        let log = generated_log(5, 300, 0.05, seed);
        let r = agora_history::check(&log, Some(Format::Jepsen), ModelKind::Register, None).unwrap();
        assert_eq!(r.linearizable, Some(true), "seed {seed}: {r:?}");
        assert_eq!(r.partitions, 1);
        let kv = agora_history::generate::kv_edn(&Shape { clients: 5, ops: 300, keys: 3, info_rate: 0.05, seed });
        let r = agora_history::check(&kv, Some(Format::Edn), ModelKind::Kv, None).unwrap();
        assert_eq!((r.linearizable, r.partitions), (Some(true), 3), "seed {seed}: {r:?}");
    }
    // A read of 7 after every write is of 0..5 cannot be explained. (No
    // timeouts here: refuting a history means trying every configuration,
    // and each operation of unknown outcome doubles them.)
    let mut log = generated_log(5, 300, 0.0, 1);
    log.push_str("\nINFO  jepsen.util - 9\t:invoke\t:read\tnil\nINFO  jepsen.util - 9\t:ok\t:read\t7");
    let r = agora_history::check(&log, None, ModelKind::Register, None).unwrap();
    assert_eq!(r.linearizable, Some(false));
    assert_eq!(r.stuck.unwrap().process, 9);
}

#[test]
fn jepsens_etcd_log_lines_are_read_with_info_as_unknown() {
    // Process 1's write of 4 timed out (:info): it may have happened, and a
    // later read of 4 is explained only if it did.
    let log = "\
2024-01-01 INFO  jepsen.core - starting
INFO  jepsen.util - 1\t:invoke\t:write\t4
INFO  jepsen.util - :nemesis\t:info\t:start\tnil
INFO  jepsen.util - 1\t:info\t:write\t:timed-out
INFO  jepsen.util - 2\t:invoke\t:cas\t[0 1]
INFO  jepsen.util - 2\t:fail\t:cas\t[0 1]
INFO  jepsen.util - 3\t:invoke\t:read\tnil
INFO  jepsen.util - 3\t:ok\t:read\t4
";
    let r = agora_history::check(log, None, ModelKind::Register, None).unwrap();
    assert_eq!((r.linearizable, r.ops, r.indeterminate), (Some(true), 2, 1), "{r:?}");
    // Read 5 instead: nothing wrote 5.
    let r = agora_history::check(&log.replace(":read\t4", ":read\t5"), None, ModelKind::Register, None).unwrap();
    assert_eq!(r.linearizable, Some(false));
}

#[test]
fn bad_histories_are_refused_naming_the_line() {
    let cases = [
        (
            "INFO  jepsen.util - 1\t:invoke\t:write\n",
            "line 1: expected: process, type, function, value; found 3 fields",
        ),
        (
            "INFO  jepsen.util - 1\t:invoke\t:write\t1\nINFO  jepsen.util - 1\t:invoke\t:read\tnil\n",
            "line 2: process 1 invokes again before its call on line 1 completed",
        ),
        ("INFO  jepsen.util - 1\t:ok\t:write\t1\n", "line 1: process 1 completes an operation it never invoked"),
        ("INFO  jepsen.util - 1\t:invoke\t:write\tx\n", "line 1: a write's value must be an integer, found x"),
        (
            "INFO  jepsen.util - 1\t:invoke\t:frob\t1\n",
            "line 1: the register model knows :read, :write and :cas, not :frob",
        ),
        (
            "INFO  jepsen.util - 1\t:began\t:read\tnil\n",
            "line 1: :type must be :invoke, :ok, :fail or :info, found :began",
        ),
        (
            "{:process 0, :type :invoke, :f :write, :value 1}\n{:process 0, :type :ok, :f :read, :value 1}",
            "line 2: completes :read but process 0 invoked :write",
        ),
        ("{:process 0, :type :invoke, :f :write :value 1\n", "line 1: column 1: this '{' is never closed by a '}'"),
        ("{:type :invoke, :f :write, :value 1}\n", "line 1: the operation has no :process"),
    ];
    for (text, want) in cases {
        let e = agora_history::check(text, None, ModelKind::Register, None).unwrap_err();
        assert_eq!(e.to_string(), want);
    }
    let e = agora_history::check("# Agora\n\nA README.\n", None, ModelKind::Register, None).unwrap_err();
    assert!(e.to_string().starts_with("the history has no `jepsen.util` lines"), "{e}");
    let e = agora_history::check("{:process 0, :type :invoke, :f :get, :value nil}", None, ModelKind::Kv, None)
        .unwrap_err();
    assert_eq!(e.to_string(), "line 1: the kv model needs a :key in every operation");
}
