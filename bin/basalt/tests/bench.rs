//! `basalt bench` against devnets it starts itself: a short smoke run whose summary has every
//! field the load-lab issue names, with sane values, and its reports; and proofs that the
//! gates fail a run — against a baseline it cannot meet, and with a validator stopped
//! mid-load. Runs are short (a few seconds of load) and one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bench runs go one at a time: two 4-node devnets on a 2-core machine would only measure
/// the machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The summary fields.
const FIELDS: [&str; 23] = [
    "scenario",
    "validators",
    "target",
    "duration_s",
    "offered_rate",
    "submitted",
    "committed",
    "completion_rate",
    "timeouts",
    "sys_errors",
    "tps_mean",
    "tps_cv",
    "block_time_ms",
    "precommit_ms",
    "submit_to_commit_ms",
    "http_ms",
    "round_escalations",
    "height_spread_max",
    "chain_halts",
    "state_roots_agree",
    "cpu_us_per_tx_per_validator",
    "gate_failures",
    "notes",
];

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("basalt-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Run `basalt bench` with a short devnet run plus `extra`; (exit success, summary).
fn bench(out: &Path, extra: &[&str]) -> (bool, Value) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let output = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["bench", "--devnet", "--json", "--no-progress"])
        .args([
            "--idle",
            "2s",
            "--warmup",
            "1s",
            "--duration",
            "4s",
            "--drain",
            "5s",
        ])
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running basalt bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let summary: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the last stdout line is not the summary ({e}): {last:?}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), summary)
}

fn number(summary: &Value, pointer: &str) -> f64 {
    summary
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {summary}"))
}

#[test]
fn smoke_run_reports_every_field_with_sane_values() {
    let out = out_dir("smoke");
    // Loose timing gates: a shared CI machine is not a performance lab (a gap of 10 idle
    // block times, ~100 ms, happens on a busy one; 100 of them, ~1 s, is a halt). The
    // correctness gates (sys errors, state roots, completion) stay on.
    let (ok, summary) = bench(
        &out,
        &[
            "--rate",
            "200",
            "--block-time-ratio-max",
            "1000",
            "--halt-factor",
            "100",
            "--completion-min",
            "0.95",
        ],
    );
    assert!(ok, "gates failed: {}", summary["gate_failures"]);
    for field in FIELDS {
        assert!(summary.get(field).is_some(), "{field} missing in {summary}");
    }
    for group in ["block_time_ms", "precommit_ms"] {
        for key in ["idle_p50", "idle_p99", "load_p50", "load_p99"] {
            let value = number(&summary, &format!("/{group}/{key}"));
            assert!(value > 0.0 && value < 10_000.0, "{group}.{key} = {value}");
        }
    }
    assert_eq!(summary["scenario"], "transfer");
    assert_eq!(summary["validators"], 4);
    assert_eq!(summary["target"], "all");
    assert_eq!(summary["offered_rate"], 200);
    let submitted = number(&summary, "/submitted");
    let committed = number(&summary, "/committed");
    // 4 s at 200/s, give or take the schedule's edges.
    assert!(
        (700.0..=820.0).contains(&submitted),
        "submitted {submitted}"
    );
    assert!(committed <= submitted && committed >= 0.95 * submitted);
    assert_eq!(summary["sys_errors"], 0);
    assert_eq!(summary["state_roots_agree"], true);
    assert!(summary["chain_halts"].is_u64());
    let tps = number(&summary, "/tps_mean");
    assert!((100.0..=300.0).contains(&tps), "tps {tps}");
    let p50 = number(&summary, "/submit_to_commit_ms/p50");
    let p99 = number(&summary, "/submit_to_commit_ms/p99");
    assert!(0.0 < p50 && p50 <= p99, "latency {p50} {p99}");
    assert!(number(&summary, "/http_ms/p50") > 0.0);
    // The chain's part of the latency: from the node's admission answer (the lab's view),
    // and the nodes' own mempool histogram.
    let admitted = number(&summary, "/accept_to_commit_ms/p50");
    assert!(
        0.0 < admitted && admitted <= p50,
        "admitted→commit {admitted}"
    );
    assert!(number(&summary, "/mempool_wait_ms/p50") > 0.0);
    assert!(
        summary["control"].is_null(),
        "no --control, no control window"
    );
    assert!(number(&summary, "/cpu_us_per_tx_per_validator") > 0.0);
    // Every validator answered its commit times: the spread is exact, not sampled.
    assert_eq!(summary["height_spread_source"], "commit_times", "{summary}");
    assert!(summary["height_spread_sampled_max"].is_u64());
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "four plots");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| Block time p50 (ms) |"));
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(written, summary);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn gossip_flood_measures_a_control_window_without_the_flood() {
    let out = out_dir("control");
    let (_, summary) = bench(
        &out,
        &[
            "--scenario",
            "gossip-flood",
            "--rate",
            "100",
            "--gossip-rate",
            "2000",
            "--control",
            "3s",
        ],
    );
    let control = &summary["control"];
    assert!(control.is_object(), "no control window in {summary}");
    assert_eq!(number(&summary, "/control/duration_s"), 3.0);
    assert!(number(&summary, "/control/block_time_p50_ms") > 0.0);
    assert!(number(&summary, "/control/tps_mean") > 0.0);
    // The flood ran in the disturbed window only: the flooded validator's monitor (which
    // starts with the flooder) saw the flood, and the run reports what was sent.
    let facts = summary["facts"].to_string();
    assert!(facts.contains("flood sent"), "{facts}");
    assert!(
        summary["notes"]
            .to_string()
            .contains("control window's block time"),
        "halts are judged against the control: {}",
        summary["notes"]
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Control: the same load without the disturbance"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_baseline_the_run_cannot_meet_fails_it() {
    let out = out_dir("baseline");
    std::fs::create_dir_all(&out).unwrap();
    let baseline = out.join("baseline.json");
    let impossible = serde_json::json!({
        "scenario": "transfer",
        "tps_mean": 1.0e9,
        "completion_rate": 1.0,
        "submit_to_commit_ms": {"p50": 0.001, "p95": 0.001, "p99": 0.001},
    });
    std::fs::write(&baseline, impossible.to_string()).unwrap();
    let (ok, summary) = bench(
        &out,
        &[
            "--rate",
            "100",
            "--block-time-ratio-max",
            "1000",
            "--completion-min",
            "0",
            "--baseline",
            baseline.to_str().unwrap(),
        ],
    );
    assert!(
        !ok,
        "a run against an unmeetable baseline passed: {summary}"
    );
    let failures = summary["gate_failures"].to_string();
    assert!(failures.contains("regression: TPS mean"), "{failures}");
    assert!(
        failures.contains("regression: Submit→commit p99"),
        "{failures}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Baseline vs this run"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_validator_stopped_mid_load_fails_the_run() {
    let out = out_dir("stop");
    // Only the halt and height-spread gates may fail this run: the stopped validator's
    // refused connections (sys errors) and lost transactions (completion) are let through.
    let (ok, summary) = bench(
        &out,
        &[
            "--rate",
            "100",
            "--block-time-ratio-max",
            "1000",
            "--completion-min",
            "0",
            "--sys-errors-max",
            "1000000",
            "--height-spread-max",
            "10",
            "--stop-validator-at",
            "1s",
        ],
    );
    assert!(!ok, "a run with a stopped validator passed: {summary}");
    let spread = number(&summary, "/height_spread_max");
    let halts = number(&summary, "/chain_halts");
    assert!(spread > 10.0 || halts > 0.0, "{summary}");
    assert!(number(&summary, "/validators_unreachable_max") >= 1.0);
    // The stopped validator cannot answer its commit times: the sampler stands in, with
    // the stopped one at its last height.
    assert_eq!(summary["height_spread_source"], "sampler", "{summary}");
    let failures = summary["gate_failures"].to_string();
    assert!(
        failures.contains("height spread") || failures.contains("chain_halts"),
        "{failures}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
