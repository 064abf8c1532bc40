//! Sustained throughput and completion of the SDK's batch submitter through a gateway.
//!
//! Against a running `basalt devnet` (its genesis funds the devnet accounts; the first 32
//! are task generators), closed loop: keeps `--in-flight` transfers outstanding for
//! `--seconds`, then waits for the rest. Prints operations committed per second over the
//! window, completion, latency percentiles, and how the gateway spread the submissions.
//!
//! ```text
//! cargo build --release -p basalt -p basalt-gateway --example submitter_throughput
//! target/release/basalt devnet --home /tmp/tp --base-port 27650 &
//! target/release/examples/submitter_throughput --gateway http://127.0.0.1:27690 --seconds 20
//! ```

use basalt_client::keys::devnet_account;
use basalt_client::submitter::QUEUE_MAX_DEFAULT;
use basalt_client::types::BatchItem;
use basalt_client::WithSubscription;
use basalt_client::{BatchSubmitter, Client, OpOutcome, SubmitterConfig, Subscription};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// Devnet accounts that receive transfers (past the task generators and the signers).
const RECIPIENTS: std::ops::Range<usize> = 100..1000;

struct Args {
    gateway: String,
    seconds: u64,
    signers: usize,
    in_flight: usize,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        gateway: "http://127.0.0.1:26690".into(),
        seconds: 20,
        signers: 16,
        in_flight: 8_000,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--gateway" => args.gateway = value,
            "--seconds" => args.seconds = value.parse()?,
            "--signers" => args.signers = value.parse()?,
            "--in-flight" => args.in_flight = value.parse()?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    if args.signers == 0 || args.signers > RECIPIENTS.start || args.in_flight == 0 {
        return Err("--signers must be 1..=100 and --in-flight at least 1".into());
    }
    Ok(args)
}

type Done = Pin<Box<dyn Future<Output = (Duration, OpOutcome, Instant)> + Send>>;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let chain = WithSubscription::new(
        Client::new(&args.gateway)?,
        Subscription::connect(&[&args.gateway])?,
    );
    let signers = (0..args.signers).map(devnet_account).collect();
    let config = SubmitterConfig {
        queue_max: QUEUE_MAX_DEFAULT.max(args.in_flight),
        ..SubmitterConfig::default()
    };
    let submitter = BatchSubmitter::start(chain, signers, config).await?;
    let recipients: Vec<_> = RECIPIENTS.map(|i| devnet_account(i).public()).collect();

    let window = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut pending: FuturesUnordered<Done> = FuturesUnordered::new();
    let (mut submitted, mut committed_in_window) = (0u64, 0u64);
    let mut finished: Vec<(Duration, OpOutcome, Instant)> = Vec::new();
    while started.elapsed() < window {
        while pending.len() < args.in_flight {
            let to = recipients[submitted as usize % recipients.len()];
            let handle = submitter.submit(BatchItem::Transfer {
                to,
                asset: 0,
                amount: 1,
            });
            let queued = Instant::now();
            pending.push(Box::pin(async move {
                let outcome = handle.await;
                (queued.elapsed(), outcome, Instant::now())
            }));
            submitted += 1;
        }
        let remaining = window.saturating_sub(started.elapsed());
        if let Ok(Some(done)) = tokio::time::timeout(remaining, pending.next()).await {
            committed_in_window += u64::from(done.1.is_committed());
            finished.push(done);
        }
    }
    eprintln!(
        "window over: {submitted} submitted, {} outstanding; draining",
        pending.len()
    );
    while let Some(done) = pending.next().await {
        finished.push(done);
    }
    let committed: Vec<&(Duration, OpOutcome, Instant)> = finished
        .iter()
        .filter(|(_, o, _)| o.is_committed())
        .collect();
    let rejected = finished
        .iter()
        .filter(|(_, o, _)| matches!(o, OpOutcome::Rejected { .. }))
        .count();
    let timed_out = finished
        .iter()
        .filter(|(_, o, _)| matches!(o, OpOutcome::TimedOut))
        .count();
    let last = committed
        .iter()
        .map(|(_, _, at)| *at)
        .max()
        .unwrap_or(started);
    let mut latencies: Vec<Duration> = committed.iter().map(|(l, _, _)| *l).collect();
    latencies.sort();
    let spread = reqwest::get(format!("{}/metrics", args.gateway))
        .await?
        .text()
        .await?
        .lines()
        .filter(|line| line.starts_with("basalt_gateway_upstream_requests_total{route=\"/v1/txs\""))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    println!("gateway {}", args.gateway);
    println!(
        "window {} s, {} signers, {} in flight",
        args.seconds, args.signers, args.in_flight
    );
    println!(
        "submitted {submitted}, committed {}, rejected {rejected}, timed out {timed_out}, \
         completion {:.2} %",
        committed.len(),
        100.0 * committed.len() as f64 / submitted.max(1) as f64
    );
    println!(
        "sustained {:.0} ops/s committed during the window; {:.0} ops/s until the last commit \
         ({:.1} s)",
        committed_in_window as f64 / window.as_secs_f64(),
        committed.len() as f64 / (last - started).as_secs_f64().max(0.001),
        (last - started).as_secs_f64()
    );
    println!(
        "latency from queueing to commit: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    for line in spread {
        println!("{line}");
    }
    submitter
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
    Ok(())
}
