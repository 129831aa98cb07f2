//! Histories that are linearizable by construction, for tests and
//! benchmarks: clients with overlapping operations on one store, each
//! operation taking effect at a random moment between its invocation and
//! its completion. With `info_rate`, some operations time out (`:info`)
//! whether or not they took effect.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Shape {
    pub clients: usize,
    pub ops: usize,
    /// Keys of a kv history (a register has one).
    pub keys: usize,
    /// Share of writes that time out.
    pub info_rate: f64,
    pub seed: u64,
}

struct Pending {
    /// Events of other clients before this one takes effect.
    wait: u32,
    f: &'static str,
    key: usize,
    arg: String,
}

/// A register with read, write and cas, as the text log of Jepsen's etcd
/// test (one `jepsen.util` line per event).
pub fn register_log(shape: &Shape) -> String {
    let mut value: Option<i64> = None;
    run(
        shape,
        |rng, _| match rng.random_range(0..3) {
            0 => ("read", "nil".to_string()),
            1 => ("write", rng.random_range(0..5).to_string()),
            _ => ("cas", format!("[{} {}]", rng.random_range(0..5), rng.random_range(0..5))),
        },
        |p| match p.f {
            "read" => (true, value.map_or("nil".to_string(), |x| x.to_string())),
            "write" => {
                value = Some(p.arg.parse().expect("generated"));
                (true, p.arg.clone())
            }
            _ => {
                let (from, to) = p.arg.trim_matches(['[', ']']).split_once(' ').expect("generated");
                let ok = value == Some(from.parse().expect("generated"));
                if ok {
                    value = Some(to.parse().expect("generated"));
                }
                (ok, p.arg.clone())
            }
        },
        |c, kind, p, out| format!("INFO  jepsen.util - {c}\t:{kind}\t:{}\t{}", p.f, out.unwrap_or(&p.arg)),
    )
}

/// A key–value store with get, put and append, as Jepsen EDN (the format
/// of Porcupine's kv histories).
pub fn kv_edn(shape: &Shape) -> String {
    let mut store: BTreeMap<usize, String> = BTreeMap::new();
    let mut tag = 0u64;
    run(
        shape,
        |rng, c| {
            tag += 1;
            match rng.random_range(0..4) {
                0 | 1 => ("get", String::new()),
                2 => ("put", format!("x {c} {tag} y")),
                _ => ("append", format!("x {c} {tag} y")),
            }
        },
        |p| {
            let v = store.entry(p.key).or_default();
            match p.f {
                "get" => (true, v.clone()),
                "put" => {
                    *v = p.arg.clone();
                    (true, p.arg.clone())
                }
                _ => {
                    v.push_str(&p.arg);
                    (true, p.arg.clone())
                }
            }
        },
        |c, kind, p, out| {
            let value = match (p.f, out) {
                ("get", None) => "nil".to_string(),
                ("get", Some(v)) => format!("{v:?}"),
                _ => format!("{:?}", p.arg),
            };
            format!("{{:process {c}, :type :{kind}, :f :{}, :key \"{}\", :value {value}}}", p.f, p.key)
        },
    )
}

/// The common loop: `invoke` draws an operation, `apply` makes it take
/// effect (whether it succeeded, its answer), `line` writes an event.
fn run(
    shape: &Shape,
    mut invoke: impl FnMut(&mut ChaCha8Rng, usize) -> (&'static str, String),
    mut apply: impl FnMut(&Pending) -> (bool, String),
    line: impl Fn(usize, &str, &Pending, Option<&str>) -> String,
) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(shape.seed);
    let mut lines = Vec::with_capacity(2 * shape.ops);
    let mut busy: Vec<Option<Pending>> = (0..shape.clients).map(|_| None).collect();
    // A client whose operation timed out goes on as a new process, as
    // Jepsen's do.
    let mut process: Vec<usize> = (0..shape.clients).collect();
    let mut issued = 0;
    while issued < shape.ops || busy.iter().any(Option::is_some) {
        let c = rng.random_range(0..shape.clients);
        match busy[c].take() {
            None if issued < shape.ops => {
                issued += 1;
                let (f, arg) = invoke(&mut rng, process[c]);
                let p = Pending {
                    wait: rng.random_range(0..2 * shape.clients as u32),
                    f,
                    key: rng.random_range(0..shape.keys.max(1)),
                    arg,
                };
                lines.push(line(process[c], "invoke", &p, None));
                busy[c] = Some(p);
            }
            None => {}
            Some(p) if p.wait == 0 => {
                let timed_out = p.f != "read" && p.f != "get" && rng.random_bool(shape.info_rate);
                // A timed-out operation may or may not take effect.
                let (ok, out) = if !timed_out || rng.random_bool(0.5) { apply(&p) } else { (false, String::new()) };
                if timed_out {
                    lines.push(line(process[c], "info", &p, Some(":timed-out")));
                    process[c] += shape.clients;
                } else {
                    lines.push(line(process[c], if ok { "ok" } else { "fail" }, &p, Some(&out)));
                }
            }
            Some(mut p) => {
                p.wait -= 1;
                busy[c] = Some(p);
            }
        }
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_histories_have_the_shape_asked_for() {
        let shape = Shape { clients: 4, ops: 100, keys: 3, info_rate: 0.1, seed: 3 };
        let log = register_log(&shape);
        assert_eq!(log.lines().filter(|l| l.contains(":invoke")).count(), 100);
        assert!(log.lines().any(|l| l.contains(":info")));
        assert_eq!(log.lines().count(), 200);
        let kv = kv_edn(&shape);
        assert_eq!(kv.lines().filter(|l| l.contains(":invoke")).count(), 100);
        assert_eq!(register_log(&shape), log, "same seed, same history");
    }
}
