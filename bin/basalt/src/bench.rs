//! `basalt bench`: run a load against a network and report what the seeds measured.

use anyhow::{bail, Context, Result};
use basalt_loadlab::gates::regressions;
use basalt_loadlab::load::{parse_ramp, Wait};
use basalt_loadlab::{
    check_gates, report, run, BenchConfig, Gates, LoadModel, Progress, ScenarioKind, Summary,
    Target,
};
use std::path::PathBuf;
use std::time::Duration;

/// Where the load goes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum TargetArg {
    /// Through `basalt gateway`, which balances over every validator.
    Gateway,
    /// Spread over all validators directly.
    All,
    /// All of it at one validator (seed 000).
    Single,
}

/// A duration: `30`, `30s`, `500ms`, `2m`.
fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration (30, 30s, 500ms, 2m)"))?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => bail!("unknown unit in {text:?}: use s, ms or m"),
    };
    Duration::try_from_secs_f64(seconds).with_context(|| format!("{text:?} is out of range"))
}

/// Arguments of `basalt bench` (boxed: the options are many, and the CLI's command enum
/// should stay small).
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    options: Box<BenchOptions>,
}

/// The options of `basalt bench`.
#[derive(clap::Args, Debug)]
struct BenchOptions {
    /// Start a devnet for the run and tear it down afterwards (default when no --endpoints).
    #[arg(long)]
    devnet: bool,
    /// Validators of that devnet.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Use a running network instead: RPC base URLs, comma separated.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// A running gateway's URL (with --endpoints and --target gateway).
    #[arg(long)]
    gateway: Option<String>,
    /// Scenario: transfer, orderbook, tasks, http-flood, gossip-flood.
    #[arg(long, default_value = "transfer")]
    scenario: ScenarioKind,
    /// Where the load goes (http-flood always targets one validator).
    #[arg(long, value_enum, default_value = "all")]
    target: TargetArg,
    /// Open loop: operations per second on a fixed schedule.
    #[arg(long, default_value_t = 2000, conflicts_with_all = ["users", "ramp"])]
    rate: u64,
    /// Closed loop: users (Locust's model); each waits for its operation's outcome.
    #[arg(long)]
    users: Option<usize>,
    /// Closed loop: users started per second.
    #[arg(long, default_value_t = 10.0, requires = "users")]
    spawn_rate: f64,
    /// Closed loop: shortest time between two starts of one user (e.g. 15s, 200ms).
    #[arg(long, default_value = "0s", value_parser = parse_duration, requires = "users")]
    pacing: Duration,
    /// Saturation search: START..END[/STEP] ops/s, each step held --duration after
    /// --warmup, stopping at the first step that breaks a gate.
    #[arg(long, conflicts_with = "users")]
    ramp: Option<String>,
    /// Measured load duration (per ramp step), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before measuring (a ramp step's settle time).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Idle phase first: idle block time and precommit latency.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    idle: Duration,
    /// A control window of this length before the load (after its own warm-up): the same
    /// load with the scenario's disturbance held back (gossip-flood: transfers without the
    /// flood). The block time gate and the halt threshold then compare with it rather than
    /// with the idle chain; the report adds a control/disturbed table. 0s: none.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    control: Duration,
    /// After the load, how long pending operations may still commit.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    drain: Duration,
    /// Concurrent users of http-flood.
    #[arg(long, default_value_t = 128)]
    flood_concurrency: usize,
    /// gossip-flood: consensus messages per second the flooding peer publishes at
    /// validator 0 (votes and proposals for far-future heights and rounds and for unknown
    /// blocks, re-sends; see `basalt_loadlab::flood`).
    #[arg(long, default_value_t = 20_000)]
    gossip_rate: u64,
    /// gossip-flood: OS niceness of the flooder's threads (0..=19). The flooder stands for
    /// an attacker's machines; above 0 it takes less of a shared box's CPU, and floods less
    /// (its achieved rate is reported): a way to tell the flood's effect from the box's.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=19))]
    flooder_niceness: u8,
    /// OS niceness of the load generator's threads (0..=19). The generator stands for
    /// clients on other machines; above 0 it takes only the CPU the validators leave on a
    /// shared box (and may offer less: the achieved rate is reported). The validators and
    /// the lab's measuring threads keep their priority.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=19))]
    generator_niceness: u8,
    /// Commit wait of the devnet, ms.
    #[arg(long, default_value_t = 0)]
    commit_wait_ms: u64,
    /// Output directory (default: a fresh bench-<time> folder here).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the summary as one JSON line at the end.
    #[arg(long)]
    json: bool,
    /// No live progress line.
    #[arg(long)]
    no_progress: bool,
    /// A previous summary.json: adds a before/after table and the regression gate.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Gate: relative worsening against the baseline that fails the run.
    #[arg(long, default_value_t = 0.10)]
    regression_tolerance: f64,
    /// Gate: minimum completion.
    #[arg(long, default_value_t = 0.99)]
    completion_min: f64,
    /// Gate: maximum load/idle block time (p50).
    #[arg(long, default_value_t = 1.10)]
    block_time_ratio_max: f64,
    /// Gate: most system errors.
    #[arg(long, default_value_t = 0)]
    sys_errors_max: u64,
    /// Gate: most chain halts.
    #[arg(long, default_value_t = 0)]
    chain_halts_max: u64,
    /// A gap between blocks longer than this × the idle block time is a chain halt.
    #[arg(long, default_value_t = 10.0)]
    halt_factor: f64,
    /// Gate: most height spread between validators, blocks.
    #[arg(long, default_value_t = 50)]
    height_spread_max: u64,
    /// Do not fail the run when state roots disagree (they are still reported).
    #[arg(long)]
    no_state_root_gate: bool,
    /// Instead of a run: sign --export-count transfers for the network at --endpoints and
    /// write them to this file, one JSON line each (for locustfile.py), then exit.
    #[arg(long, requires = "endpoints")]
    export_txs: Option<PathBuf>,
    /// Transfers to export.
    #[arg(long, default_value_t = 100_000, requires = "export_txs")]
    export_count: u64,
    /// Test hook: stop validator 1 this long after the load began.
    #[arg(long, hide = true, value_parser = parse_duration)]
    stop_validator_at: Option<Duration>,
}

impl BenchOptions {
    fn gates(&self) -> Gates {
        Gates {
            sys_errors_max: self.sys_errors_max,
            state_roots: !self.no_state_root_gate,
            chain_halts_max: self.chain_halts_max,
            halt_factor: self.halt_factor,
            completion_min: self.completion_min,
            block_time_ratio_max: self.block_time_ratio_max,
            height_spread_max: self.height_spread_max,
            regression_tolerance: self.regression_tolerance,
        }
    }

    fn model(&self) -> LoadModel {
        if self.scenario.is_flood() {
            return LoadModel::Closed {
                users: self.flood_concurrency.max(1),
                spawn_rate: f64::INFINITY,
                pacing: Duration::ZERO,
                wait: Wait::Answer,
            };
        }
        match self.users {
            Some(users) => LoadModel::Closed {
                users,
                spawn_rate: self.spawn_rate,
                pacing: self.pacing,
                wait: Wait::Outcome,
            },
            None => LoadModel::Open {
                rate: self.rate as f64,
            },
        }
    }
}

fn read_baseline(path: &PathBuf) -> Result<Summary> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the baseline {}", path.display()))?;
    // A summary.json, or a bench log whose last line is the summary.
    let last = text.lines().rev().find(|l| l.trim_start().starts_with('{'));
    serde_json::from_str(&text)
        .or_else(|e| last.map_or(Err(e), serde_json::from_str))
        .with_context(|| format!("{} is not a bench summary", path.display()))
}

fn export(args: &BenchOptions, path: &std::path::Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let written = runtime.block_on(basalt_loadlab::export::export_transfers_from(
        &args.endpoints,
        args.export_count,
        path,
    ))?;
    eprintln!("wrote {written} pre-signed transfers to {}", path.display());
    Ok(())
}

/// Run `basalt bench`.
pub fn run_bench(args: BenchArgs) -> Result<()> {
    let args = *args.options;
    if let Some(path) = &args.export_txs {
        return export(&args, path);
    }
    if args.devnet && !args.endpoints.is_empty() {
        bail!("--devnet starts a network for the run; --endpoints uses a running one: pick one");
    }
    if args.scenario.is_flood() && args.ramp.is_some() {
        bail!(
            "--ramp steps an offered rate; {} offers as much as it can",
            args.scenario
        );
    }
    let ramp = args.ramp.as_deref().map(parse_ramp).transpose()?;
    let baseline = args.baseline.as_ref().map(read_baseline).transpose()?;
    let out = args.out.clone().unwrap_or_else(|| {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("bench-{seconds}"))
    });
    std::fs::create_dir_all(&out)?;
    let gates = args.gates();
    let config = BenchConfig {
        endpoints: args.endpoints.clone(),
        gateway_url: args.gateway.clone(),
        validators: args.validators,
        exe: std::env::current_exe()?,
        devnet_dir: out.join("devnet"),
        commit_wait_ms: args.commit_wait_ms,
        target: match args.target {
            TargetArg::Gateway => Target::Gateway,
            TargetArg::All => Target::All,
            TargetArg::Single => Target::Single,
        },
        scenario: args.scenario,
        model: args.model(),
        ramp,
        duration: args.duration,
        warmup: args.warmup,
        idle: args.idle,
        control: args.control,
        flood_concurrency: args.flood_concurrency.max(1),
        gossip_rate: args.gossip_rate.max(1),
        flooder_niceness: args.flooder_niceness,
        generator_niceness: args.generator_niceness,
        stop_validator_at: args.stop_validator_at,
        gates: gates.clone(),
        drain: args.drain,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let progress = Progress::new(!args.no_progress);
    let outcome = runtime.block_on(run(&config, &progress))?;
    let mut summary = outcome.summary;
    let mut failures = check_gates(&summary, &gates);
    if let Some(base) = &baseline {
        failures.extend(regressions(base, &summary, gates.regression_tolerance));
    }
    summary.gate_failures = failures.clone();
    let markdown = report::markdown(&summary, baseline.as_ref());
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    std::fs::write(
        out.join("series.json"),
        serde_json::to_string(&outcome.series)?,
    )?;
    std::fs::write(out.join("report.md"), &markdown)?;
    std::fs::write(
        out.join("report.html"),
        report::html(&summary, baseline.as_ref(), &outcome.series)?,
    )?;
    eprintln!("{markdown}");
    eprintln!(
        "wrote {0}/summary.json, {0}/report.md and {0}/report.html",
        out.display()
    );
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    drop(runtime);
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("gates failed: {}", failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s").ok(), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
