//! `basalt sim`: run simulator seeds and print the checkers' totals.

use anyhow::{bail, Result};
use basalt_sim::{run_seeds, SimConfig};
use std::time::Instant;

/// Arguments of `basalt sim`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed (a failing seed is replayed with `--seed-start S --seeds 1`).
    #[arg(long, default_value_t = 0)]
    seed_start: u64,
    /// Validators per run.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Byzantine validators (equivocating, silent or twin, rotating with the seed).
    #[arg(long, default_value_t = 0)]
    byzantine: usize,
    /// Message loss probability during the fault phase (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Partitions during the fault phase.
    #[arg(long)]
    partitions: bool,
    /// Crashes and restarts of honest validators during the fault phase.
    #[arg(long)]
    crashes: bool,
    /// Length of the fault phase in simulated ms.
    #[arg(long, default_value_t = 4_000)]
    fault_ms: u64,
    /// Commit wait in ms.
    #[arg(long, default_value_t = 100)]
    commit_wait_ms: u64,
    /// Print the summary as one JSON line at the end.
    #[arg(long)]
    json: bool,
}

/// Run `basalt sim`.
pub fn run(args: SimArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.loss) {
        bail!("--loss must be between 0 and 1");
    }
    if args.validators == 0 || args.byzantine >= args.validators {
        bail!("need at least one validator and fewer byzantine validators than validators");
    }
    let mut config = SimConfig {
        validators: args.validators,
        byzantine: args.byzantine,
        loss_permille: (args.loss * 1000.0).round() as u32,
        partitions: args.partitions,
        crashes: args.crashes,
        fault_ms: args.fault_ms,
        ..SimConfig::default()
    };
    config.consensus.commit_wait_ms = args.commit_wait_ms;
    let started = Instant::now();
    let summary = run_seeds(&config, args.seed_start, args.seeds);
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "{} seeds in {elapsed:.1} s ({:.1} seeds/s): heights {} safety {} liveness {} roots {} \
         double-signs {}",
        summary.seeds,
        summary.seeds as f64 / elapsed.max(1e-9),
        summary.heights_committed,
        summary.safety_violations,
        summary.liveness_failures,
        summary.root_mismatches,
        summary.double_signs,
    );
    for seed in &summary.failing_seeds {
        eprintln!(
            "failing seed {seed}: replay with `basalt sim --seed-start {seed} --seeds 1 \
             --validators {} --byzantine {} --loss {} --fault-ms {} --commit-wait-ms {}{}{}`",
            args.validators,
            args.byzantine,
            args.loss,
            args.fault_ms,
            args.commit_wait_ms,
            if args.partitions { " --partitions" } else { "" },
            if args.crashes { " --crashes" } else { "" },
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    if summary.failing_seeds.is_empty() {
        Ok(())
    } else {
        bail!("{} failing seeds", summary.failing_seeds.len())
    }
}
