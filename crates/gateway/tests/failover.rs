//! Acceptance: with one validator killed (`kill -9`) mid-run, clients of the gateway see no
//! failed operations beyond the retries, and the traffic was spread over the validators.
//!
//! A real 4-process devnet on loopback, the gateway in this process, and the SDK's batch
//! submitter sending transfers and task create/respond pairs through the gateway only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod devnet;

use basalt_client::types::{sha256, BatchItem, Hash};
use basalt_client::{
    BatchSubmitter, Client, OpHandle, OpOutcome, SubmitterConfig, Subscription, WithSubscription,
};
use basalt_gateway::{GatewayConfig, GatewayHandle};
use devnet::{account, metric_by_label, Devnet, ACCOUNTS, TASK_GENERATORS, VALIDATORS};
use std::time::{Duration, Instant};

/// Not a test: a devnet node, when this binary is started as one (see `devnet`).
#[test]
fn node_process() {
    devnet::node_process();
}

/// Signers of the submitter (task generators, so they may create tasks).
const SIGNERS: usize = 8;
/// Rounds of submissions, one every [`ROUND_PAUSE`].
const ROUNDS: usize = 30;
const ROUND_PAUSE: Duration = Duration::from_millis(200);
/// Transfers per round.
const TRANSFERS_PER_ROUND: usize = 10;
/// Task create/respond pairs per round.
const TASKS_PER_ROUND: usize = 2;
/// The round after which a validator is killed.
const KILL_AT_ROUND: usize = 10;
/// The validator killed.
const KILLED: usize = 2;

fn transfer(round: usize, i: usize) -> BatchItem {
    let to = TASK_GENERATORS + (round * TRANSFERS_PER_ROUND + i) % (ACCOUNTS - TASK_GENERATORS - 1);
    BatchItem::Transfer {
        to: account(to).public(),
        asset: 0,
        amount: 1 + (round * TRANSFERS_PER_ROUND + i) as u64,
    }
}

fn task_id(round: usize, i: usize) -> Hash {
    sha256(format!("gateway-failover-task-{}-{round}-{i}", std::process::id()).as_bytes())
}

async fn metrics_text(gateway: &GatewayHandle) -> String {
    reqwest::get(format!("{}/metrics", gateway.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_the_gateway_see_no_failed_operations_when_a_validator_is_killed() {
    let mut devnet = Devnet::start("failover").await;
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..GatewayConfig::new(&devnet.urls)
    };
    let gateway = tokio::task::spawn_blocking(move || basalt_gateway::spawn(config).unwrap())
        .await
        .unwrap();
    let url = gateway.url();
    let chain = WithSubscription::new(
        Client::new(&url).unwrap(),
        Subscription::connect(&[&url]).unwrap(),
    );
    let signers = (0..SIGNERS).map(account).collect();
    let submitter_config = SubmitterConfig {
        // Small batches: many transactions, so the spread over validators is measurable.
        max_batch_items: 4,
        op_timeout: Duration::from_secs(120),
        ..SubmitterConfig::default()
    };
    let submitter = BatchSubmitter::start(chain, signers, submitter_config)
        .await
        .unwrap();

    let started = Instant::now();
    let mut handles: Vec<(String, OpHandle)> = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..TRANSFERS_PER_ROUND {
            handles.push((
                format!("transfer {round}/{i}"),
                submitter.submit(transfer(round, i)),
            ));
        }
        for i in 0..TASKS_PER_ROUND {
            let task_id = task_id(round, i);
            let created = submitter.submit(BatchItem::CreateTask {
                task_id,
                payload_hash: sha256(b"payload"),
            });
            let answered = submitter.submit_after(
                BatchItem::RespondTask {
                    task_id,
                    result_hash: sha256(b"result"),
                },
                &created,
            );
            handles.push((format!("create {round}/{i}"), created));
            handles.push((format!("respond {round}/{i}"), answered));
        }
        if round == KILL_AT_ROUND {
            eprintln!("kill -9 validator {KILLED} ({})", devnet.urls[KILLED]);
            devnet.kill(KILLED);
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
    let total = handles.len();
    let outcomes = tokio::time::timeout(
        Duration::from_secs(180),
        futures::future::join_all(handles.into_iter().map(|(what, handle)| async move {
            let outcome = handle.await;
            (what, outcome)
        })),
    )
    .await
    .expect("operations did not finish in 180 s");
    let elapsed = started.elapsed();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|(_, outcome)| !matches!(outcome, OpOutcome::Committed { .. }))
        .map(|(what, outcome)| format!("{what}: {outcome:?}"))
        .collect();

    let text = metrics_text(&gateway).await;
    let submits = metric_by_label(
        &text,
        "basalt_gateway_upstream_requests_total",
        "upstream",
        &[("route", "/v1/txs"), ("outcome", "ok")],
    );
    let failovers = metric_by_label(&text, "basalt_gateway_failovers_total", "route", &[]);
    let ejections = metric_by_label(&text, "basalt_gateway_ejections_total", "reason", &[]);
    let metrics = gateway.metrics();
    eprintln!(
        "{total} operations in {elapsed:.1?}; not committed: {}; submissions per upstream: \
         {submits:?}; failovers: {failovers:?}; ejections: {ejections:?}; duplicates \
         reported admitted: {}; receipts tracked: {}; submitter retries (transient): {}",
        failed.len(),
        metrics.duplicates_admitted(),
        metrics.receipts_recorded(),
        submitter
            .metrics()
            .retries(basalt_client::RetryReason::Transient),
    );
    if !failed.is_empty() {
        devnet.dump_logs();
    }
    assert!(failed.is_empty(), "failed operations: {failed:#?}");

    // Spread: every validator served submissions (the killed one only during the first
    // third of the run), and no survivor took the bulk: an even share is a third each.
    assert_eq!(submits.len(), VALIDATORS, "{submits:?}");
    let sum: f64 = submits.values().sum();
    for (upstream, count) in &submits {
        let share = count / sum;
        assert!(*count > 0.0, "{upstream} served nothing: {submits:?}");
        if *upstream != devnet.urls[KILLED] {
            assert!(
                share > 0.15 && share < 0.5,
                "{upstream}: {share:.2} of {submits:?}"
            );
        }
    }
    assert!(!metrics.healthy(&devnet.urls[KILLED]));

    let shut = submitter
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
    assert!(shut);
    tokio::task::spawn_blocking(move || gateway.shutdown())
        .await
        .unwrap();
}
