//! `agora`: run Agora's protocols in the simulator, as real TCP clusters, and
//! benchmark them. This crate only wires the others together.

mod alloc;
mod bench;
mod bench_alloc;
mod bench_history;
mod bench_net;
mod bench_pbft;
mod bench_telecom;
mod cluster;
mod history;
mod huge_pages;
mod kv;
mod kv_api;
mod quota;
mod report;
mod simulate;
mod teams;
mod telecom;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: huge_pages::HugePages = huge_pages::HugePages;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "agora", version, about = "Decentralized coordination: simulate, run and measure Agora's protocols")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario file in the deterministic simulator.
    Sim(simulate::SimArgs),
    /// Re-run a trace written by `agora sim --trace` and check it event by event.
    Replay(simulate::ReplayArgs),
    /// Run one node of a cluster file on real TCP.
    Node(cluster::NodeArgs),
    /// Benchmarks (medians, with a baseline measured in the same run).
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Need-fulfillment allocation.
    #[command(subcommand)]
    Alloc(alloc::AllocCmd),
    /// Fairdist quotas: replay a trace of charges, or search for the worst newcomer share.
    #[command(subcommand)]
    Quota(quota::QuotaCmd),
    /// Manage a local cluster of node processes.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Team formation: runs, elections, the applications and sweeps in the simulator.
    #[command(subcommand)]
    Teams(teams::TeamsCmd),
    /// The edge–core–cloud telecom system: analysis with the seed's formulas.
    ///
    /// The system itself runs from its scenario: `agora sim
    /// scenarios/edge-core-cloud.toml` in the simulator (the main job: every
    /// failure mode of the seed, with a report), `agora cluster up
    /// scenarios/edge-core-cloud.toml` as real processes, `agora kv` against
    /// a running cluster, `agora bench telecom` for its figures.
    #[command(subcommand)]
    Telecom(telecom::TelecomCmd),
    /// Client histories: linearizability (Jepsen EDN, Jepsen's etcd logs).
    #[command(subcommand)]
    History(history::HistoryCmd),
    /// A running telecom cluster's key-value API: read, write, compare-and-set.
    #[command(subcommand)]
    Kv(kv::KvCmd),
}

/// Logs to stderr; `RUST_LOG` overrides the default level (info).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Output piped into `head` and the like: end quietly when the reader
    // goes away, as Unix tools do, instead of panicking on a failed print.
    // Not for the commands that run nodes or talk to them: there a peer
    // that closes its connection would kill the process mid-write.
    #[cfg(unix)]
    if !matches!(cli.command, Command::Node(_) | Command::Cluster(_) | Command::Bench(_) | Command::Kv(_)) {
        // SAFETY: restoring the default action of a signal at start-up,
        // before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Sim(a) => simulate::run(a),
        Command::Replay(a) => simulate::replay(a),
        Command::Node(a) => cluster::node(a),
        Command::Cluster(c) => cluster::cluster(c),
        Command::Bench(b) => bench::bench(b),
        Command::Quota(q) => quota::quota(q),
        Command::Alloc(a) => alloc::alloc(a),
        Command::Teams(t) => teams::teams(t),
        Command::Telecom(t) => telecom::telecom(t),
        Command::History(h) => history::history(h),
        Command::Kv(k) => kv::kv(k),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command says what it does and every option what it takes:
    /// `--help` is the first manual a user reads.
    #[test]
    fn every_command_and_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if cmd.get_about().is_none() {
                missing.push(format!("{path}: no description"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}: no help"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "agora", &mut missing);
        assert!(missing.is_empty(), "{} without help:\n{}", missing.len(), missing.join("\n"));
        // `telecom --help` leads to the main job.
        let telecom = Cli::command().find_subcommand("telecom").unwrap().get_long_about().unwrap().to_string();
        assert!(telecom.contains("agora sim scenarios/edge-core-cloud.toml"), "{telecom}");
    }
}
