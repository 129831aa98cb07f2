//! `agora`: run Agora's protocols in the simulator, as real TCP clusters, and
//! benchmark them. This crate only wires the others together.

mod registry;
mod report;
mod simulate;

use clap::{Parser, Subcommand};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(a) => simulate::run(a),
        Command::Replay(a) => simulate::replay(a),
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
