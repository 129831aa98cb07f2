//! `agora quota replay` (a JSON-lines trace of charges through a pool) and
//! `agora quota guarantee` (the worst newcomer share an adversary can force,
//! against the proven bound).

use agora_fairdist::{Allocator, Quota};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum QuotaCmd {
    /// Replay charges and discharges (JSON lines) through one pool; one JSON line out per op.
    Replay(ReplayArgs),
    /// For each n, the worst share a newcomer is left by an adversarial search, beside (c + r)/G(n).
    Guarantee(GuaranteeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The allocator: exponential (A1), polynomial (A2) or quasilinear (A3).
    #[arg(long, default_value = "quasilinear")]
    pub allocator: Allocator,
    /// Slot totals, e.g. `bytes=1048576,fds=64`; the first slot is the default.
    #[arg(long, value_parser = parse_totals)]
    pub total: Totals,
    /// The trace: lines like {"op":"charge","user":"a","amount":512[,"slot":"bytes"]},
    /// {"op":"discharge","user":"a","amount":12}, {"op":"discharge_all","user":"a"}.
    pub trace: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct GuaranteeArgs {
    /// The allocator: exponential (A1), polynomial (A2) or quasilinear (A3).
    #[arg(long, default_value = "quasilinear")]
    pub allocator: Allocator,
    /// Search every n (peers already present) from 0 to this.
    #[arg(long, default_value_t = 64)]
    pub max_n: u64,
}

#[derive(Clone, Debug)]
pub struct Totals(Vec<(String, u64)>);

fn parse_totals(s: &str) -> Result<Totals, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let (name, n) = part.split_once('=').ok_or_else(|| format!("{part:?} is not SLOT=N"))?;
        let n: u64 = n.trim().parse().map_err(|_| format!("{part:?}: {n:?} is not a whole number"))?;
        let name = name.trim();
        if name.is_empty() || v.iter().any(|(m, _)| m == name) {
            return Err(format!("{part:?}: slot names must be non-empty and distinct"));
        }
        v.push((name.to_string(), n));
    }
    Ok(Totals(v))
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Op {
    Charge { user: String, amount: u64, slot: Option<String> },
    Discharge { user: String, amount: u64, slot: Option<String> },
    DischargeAll { user: String, slot: Option<String> },
}

pub fn quota(cmd: QuotaCmd) -> Result<bool> {
    match cmd {
        QuotaCmd::Replay(a) => replay(a),
        QuotaCmd::Guarantee(a) => guarantee(a),
    }
}

fn replay(args: ReplayArgs) -> Result<bool> {
    let path = args.trace.display().to_string();
    let file = std::fs::File::open(&args.trace).with_context(|| format!("cannot open {path}"))?;
    let slots: Vec<(&str, u64)> = args.total.0.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let mut q: Quota<String> = Quota::new(args.allocator, &slots);
    let root = q.root();
    let out = std::io::stdout();
    let mut out = out.lock();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let at = format!("{path}:{}", i + 1);
        let line = line.with_context(|| format!("{at}: cannot read"))?;
        if line.trim().is_empty() {
            continue;
        }
        let op: Op = serde_json::from_str(&line).with_context(|| format!("{at}: not a quota op"))?;
        let (user, slot_name) = match &op {
            Op::Charge { user, slot, .. } | Op::Discharge { user, slot, .. } | Op::DischargeAll { user, slot } => {
                (user, slot)
            }
        };
        let slot = match slot_name {
            None => 0,
            Some(s) => {
                q.slot(s).with_context(|| format!("{at}: no slot {s:?} (slots: {})", q.slot_names().join(", ")))?
            }
        };
        let c = q.claimant(user);
        let result = match op {
            Op::Charge { amount, .. } => q.charge(root, c, slot, amount),
            Op::Discharge { amount, .. } => q.discharge(root, c, slot, amount),
            Op::DischargeAll { .. } => {
                q.discharge_all(root, c);
                Ok(())
            }
        };
        let mut v = serde_json::json!({
            "ok": result.is_ok(),
            "share": q.share(root, c, slot),
            "remaining": q.remaining(root, slot),
            "claimants": q.holders(root),
        });
        if let Err(e) = result {
            v["error"] = e.to_string().into();
        }
        writeln!(out, "{v}")?;
    }
    Ok(true)
}

/// The adversary: n claimants join one after another, each taking all it
/// may (the extreme of the seed's Definition 1), then keep topping up in
/// rounds until none can take more. The newcomer then gets what is left to it.
fn worst_newcomer(a: Allocator, total: u64, n: u64) -> u64 {
    let mut q: Quota<u64> = Quota::new(a, &[("x", total)]);
    let root = q.root();
    let ids: Vec<_> = (0..n).map(|i| q.claimant(&i)).collect();
    let mut worst = u64::MAX;
    for &c in &ids {
        let h = q.headroom(root, c, 0);
        let _ = q.charge(root, c, 0, h.max(1));
    }
    worst = worst.min(a.max_grant(q.holders(root), 0, q.remaining(root, 0)));
    for _round in 0..64 {
        let mut took = false;
        for &c in &ids {
            let h = q.headroom(root, c, 0);
            if h > 0 && q.charge(root, c, 0, h).is_ok() {
                took = true;
            }
        }
        worst = worst.min(a.max_grant(q.holders(root), 0, q.remaining(root, 0)));
        if !took {
            break;
        }
    }
    worst
}

fn guarantee(args: GuaranteeArgs) -> Result<bool> {
    if args.max_n > 100_000 {
        bail!("--max-n {} is too large for the search (at most 100000)", args.max_n);
    }
    let total: u64 = 1 << 50;
    let bar = crate::report::progress(args.max_n + 1, "n");
    let mut holds = true;
    let out = std::io::stdout();
    let mut out = out.lock();
    for n in 0..=args.max_n {
        let worst = worst_newcomer(args.allocator, total, n);
        let bound = total as f64 / args.allocator.guarantee(n);
        let ok = worst as f64 >= bound.floor();
        holds &= ok;
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "n": n,
                "worst_share": worst as f64 / total as f64,
                "guaranteed_share": 1.0 / args.allocator.guarantee(n),
                "ratio": worst as f64 / bound,
                "holds": ok,
            })
        )?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(holds)
}
