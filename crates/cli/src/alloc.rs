//! `agora alloc …`: need-fulfillment allocation. So far: `gen`.

use anyhow::{bail, Result};

#[derive(clap::Subcommand, Debug)]
pub enum AllocCmd {
    /// Print a random instance (JSON), deterministic in the seed.
    Gen {
        #[arg(long)]
        providers: usize,
        #[arg(long)]
        recipients: usize,
        /// Providers per recipient.
        #[arg(long)]
        degree: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

pub fn alloc(cmd: AllocCmd) -> Result<bool> {
    match cmd {
        AllocCmd::Gen { providers, recipients, degree, seed } => {
            let instance = match agora_alloc::generate(providers, recipients, degree, seed) {
                Ok(i) => i,
                Err(e) => bail!(e),
            };
            println!("{}", serde_json::to_string_pretty(&instance)?);
            Ok(true)
        }
    }
}
