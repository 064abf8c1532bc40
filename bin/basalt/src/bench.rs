//! `basalt bench`: run a load against a network and report what the seeds measured.

use anyhow::{bail, Result};
use basalt_loadlab::{check_gates, report_markdown, run, BenchConfig, Gates, Target};
use std::path::PathBuf;
use std::time::Duration;

/// Where the load goes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum TargetArg {
    /// Spread over all validators.
    All,
    /// All of it at one validator (seed 000).
    Single,
}

/// Arguments of `basalt bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Start a devnet for the run (default when no --endpoints).
    #[arg(long)]
    devnet: bool,
    /// Validators of that devnet.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Use a running network instead: RPC base URLs, comma separated.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Scenario (only `transfer` so far).
    #[arg(long, default_value = "transfer")]
    scenario: String,
    /// Where the load goes.
    #[arg(long, value_enum, default_value = "all")]
    target: TargetArg,
    /// Offered rate, transactions per second (open loop).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Measured load duration, seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Load before measuring, seconds.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Idle phase first, seconds.
    #[arg(long, default_value_t = 10)]
    idle: u64,
    /// Commit wait of the devnet, ms.
    #[arg(long, default_value_t = 0)]
    commit_wait_ms: u64,
    /// Output directory (default: a fresh bench-<time> folder here).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the summary as one JSON line at the end.
    #[arg(long)]
    json: bool,
    /// Gate: minimum completion.
    #[arg(long, default_value_t = 0.99)]
    completion_min: f64,
    /// Gate: maximum load/idle block time (p50).
    #[arg(long, default_value_t = 1.10)]
    block_time_ratio_max: f64,
}

/// Run `basalt bench`.
pub fn run_bench(args: BenchArgs) -> Result<()> {
    if args.scenario != "transfer" {
        bail!(
            "scenario {:?} is not implemented yet; available: transfer",
            args.scenario
        );
    }
    if args.devnet && !args.endpoints.is_empty() {
        bail!("--devnet starts a network for the run; --endpoints uses a running one: pick one");
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("bench-{seconds}"))
    });
    std::fs::create_dir_all(&out)?;
    let config = BenchConfig {
        endpoints: args.endpoints.clone(),
        validators: args.validators,
        exe: std::env::current_exe()?,
        devnet_dir: out.join("devnet"),
        commit_wait_ms: args.commit_wait_ms,
        target: match args.target {
            TargetArg::All => Target::All,
            TargetArg::Single => Target::Single,
        },
        rate: args.rate,
        duration: Duration::from_secs(args.duration),
        warmup: Duration::from_secs(args.warmup),
        idle: Duration::from_secs(args.idle),
        chain_id: "basalt-devnet".into(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(run(&config, |phase| eprintln!("bench: {phase}")))?;
    let json = serde_json::to_string(&summary)?;
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    std::fs::write(out.join("report.md"), report_markdown(&summary))?;
    eprintln!("{}", report_markdown(&summary));
    eprintln!("wrote {}/summary.json and report.md", out.display());
    let failures = check_gates(
        &summary,
        &Gates {
            completion_min: args.completion_min,
            block_time_ratio_max: args.block_time_ratio_max,
        },
    );
    if args.json {
        println!("{json}");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("gates failed: {}", failures.join("; "))
    }
}
