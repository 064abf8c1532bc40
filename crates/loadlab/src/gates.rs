//! Gates that fail a run, and the comparison with a baseline (a previous `summary.json`)
//! in the style of seed 000's Tier-10/Tier-11 table.

use crate::summary::Summary;

/// Thresholds that make a run fail. Every one is a flag of `basalt bench`.
#[derive(Debug, Clone)]
pub struct Gates {
    /// Most system errors.
    pub sys_errors_max: u64,
    /// Fail when the state roots disagree.
    pub state_roots: bool,
    /// Most chain halts.
    pub chain_halts_max: u64,
    /// A gap between blocks longer than this × the idle block time p50 is a halt.
    pub halt_factor: f64,
    /// Minimum completion.
    pub completion_min: f64,
    /// Maximum load/idle block time ratio (p50).
    pub block_time_ratio_max: f64,
    /// Most height spread between validators.
    pub height_spread_max: u64,
    /// Relative worsening against the baseline beyond which a metric regressed.
    pub regression_tolerance: f64,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            sys_errors_max: 0,
            state_roots: true,
            chain_halts_max: 0,
            halt_factor: 10.0,
            completion_min: 0.99,
            block_time_ratio_max: 1.10,
            height_spread_max: 50,
            regression_tolerance: 0.10,
        }
    }
}

/// Gate failures of `summary`, empty when it passes.
pub fn check_gates(summary: &Summary, gates: &Gates) -> Vec<String> {
    let mut failures = Vec::new();
    if summary.sys_errors > gates.sys_errors_max {
        failures.push(format!(
            "sys_errors = {} (max {})",
            summary.sys_errors, gates.sys_errors_max
        ));
    }
    if gates.state_roots && summary.state_roots_agree == Some(false) {
        failures.push("state roots disagree".into());
    }
    if summary.chain_halts > gates.chain_halts_max {
        failures.push(format!(
            "chain_halts = {} (no new block for {}× the idle block time)",
            summary.chain_halts, gates.halt_factor
        ));
    }
    if summary.height_spread_max > gates.height_spread_max {
        failures.push(format!(
            "height spread {} blocks (max {})",
            summary.height_spread_max, gates.height_spread_max
        ));
    }
    match summary.completion_rate {
        Some(c) if c < gates.completion_min => {
            failures.push(format!("completion {c:.4} below {}", gates.completion_min))
        }
        None => failures.push("completion not measured (nothing submitted)".into()),
        _ => {}
    }
    // With a control window, the reference is the same load without the disturbance
    // (what the disturbance must not move); otherwise the idle chain.
    let (reference, name) = match summary.control.as_ref().and_then(|c| c.block_time_p50_ms) {
        Some(control) => (Some(control), "the control window (same load, undisturbed)"),
        None => (summary.block_time_ms.idle_p50, "idle"),
    };
    if let (Some(reference), Some(load)) = (reference, summary.block_time_ms.load_p50) {
        if reference > 0.0 && load / reference > gates.block_time_ratio_max {
            failures.push(format!(
                "block time under load {load:.1} ms is {:.2}× {name} {reference:.1} ms (max {})",
                load / reference,
                gates.block_time_ratio_max
            ));
        }
    }
    failures
}

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Lower is better (latencies, errors).
    Lower,
    /// Higher is better (throughput, completion).
    Higher,
    /// Informational only.
    Neither,
}

/// One row of the before/after table.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// Metric name.
    pub metric: &'static str,
    /// Baseline value.
    pub before: Option<f64>,
    /// This run's value.
    pub after: Option<f64>,
    /// Which way is better.
    pub better: Better,
    /// Whether the regression gate looks at it.
    pub gated: bool,
}

impl Delta {
    /// The change as seed 000 writes it: `-53%`, `+113%`, `=`, `n/a`.
    pub fn text(&self) -> String {
        match (self.before, self.after) {
            (Some(before), Some(after)) => {
                if (after - before).abs() < 1e-9 {
                    "=".into()
                } else if before.abs() < 1e-9 {
                    format!("{:+}", after - before)
                } else {
                    format!("{:+.0}%", (after - before) / before.abs() * 100.0)
                }
            }
            _ => "n/a".into(),
        }
    }

    /// How much worse this run is, relative to the baseline (0 or less: not worse).
    pub fn worsening(&self) -> Option<f64> {
        let (before, after) = (self.before?, self.after?);
        let change = match self.better {
            Better::Lower => after - before,
            Better::Higher => before - after,
            Better::Neither => return None,
        };
        if before.abs() < 1e-9 {
            return Some(if change > 0.0 { f64::INFINITY } else { 0.0 });
        }
        Some(change / before.abs())
    }
}

/// The before/after rows of `baseline` against `run`.
pub fn deltas(baseline: &Summary, run: &Summary) -> Vec<Delta> {
    let count = |v: u64| Some(v as f64);
    let row = |metric, before, after, better, gated| Delta {
        metric,
        before,
        after,
        better,
        gated,
    };
    use Better::{Higher, Lower, Neither};
    let (b, r) = (baseline, run);
    vec![
        row(
            "Block time idle p50 (ms)",
            b.block_time_ms.idle_p50,
            r.block_time_ms.idle_p50,
            Lower,
            false,
        ),
        row(
            "Block time load p50 (ms)",
            b.block_time_ms.load_p50,
            r.block_time_ms.load_p50,
            Lower,
            true,
        ),
        row(
            "Block time load p99 (ms)",
            b.block_time_ms.load_p99,
            r.block_time_ms.load_p99,
            Lower,
            false,
        ),
        row(
            "Precommit idle p50 (ms)",
            b.precommit_ms.idle_p50,
            r.precommit_ms.idle_p50,
            Lower,
            false,
        ),
        row(
            "Precommit load p50 (ms)",
            b.precommit_ms.load_p50,
            r.precommit_ms.load_p50,
            Lower,
            true,
        ),
        row("TPS mean", b.tps_mean, r.tps_mean, Higher, true),
        row("TPS variance (CV)", b.tps_cv, r.tps_cv, Lower, false),
        row(
            "Submit→commit p50 (ms)",
            b.submit_to_commit_ms.p50,
            r.submit_to_commit_ms.p50,
            Lower,
            true,
        ),
        row(
            "Submit→commit p99 (ms)",
            b.submit_to_commit_ms.p99,
            r.submit_to_commit_ms.p99,
            Lower,
            true,
        ),
        row(
            "Completion",
            b.completion_rate,
            r.completion_rate,
            Higher,
            true,
        ),
        row(
            "SysErr",
            count(b.sys_errors),
            count(r.sys_errors),
            Lower,
            true,
        ),
        row(
            "Round escalations",
            b.round_escalations.map(|v| v as f64),
            r.round_escalations.map(|v| v as f64),
            Lower,
            false,
        ),
        row(
            "Validator height spread (blocks)",
            count(b.height_spread_max),
            count(r.height_spread_max),
            Lower,
            false,
        ),
        row(
            "Chain halts",
            count(b.chain_halts),
            count(r.chain_halts),
            Lower,
            true,
        ),
        row(
            "CPU µs per tx per validator",
            b.cpu_us_per_tx_per_validator,
            r.cpu_us_per_tx_per_validator,
            Lower,
            false,
        ),
        row(
            "Offered rate (ops/s)",
            count(b.offered_rate),
            count(r.offered_rate),
            Neither,
            false,
        ),
    ]
}

/// Gated metrics of `run` that are worse than `baseline` by more than `tolerance`
/// (relative), as gate failures.
pub fn regressions(baseline: &Summary, run: &Summary, tolerance: f64) -> Vec<String> {
    deltas(baseline, run)
        .into_iter()
        .filter(|d| d.gated)
        .filter_map(|d| {
            let worse = d.worsening()?;
            (worse > tolerance).then(|| {
                format!(
                    "regression: {} {} → {} ({}, tolerance {:.0}%)",
                    d.metric,
                    fmt(d.before),
                    fmt(d.after),
                    d.text(),
                    tolerance * 100.0
                )
            })
        })
        .collect()
}

/// A value for a table cell.
pub fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".to_owned(), |v| {
        if v.abs() >= 100.0 || v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::IdleLoad;

    fn passing() -> Summary {
        Summary {
            submitted: 100,
            committed: 100,
            completion_rate: Some(1.0),
            tps_mean: Some(1000.0),
            block_time_ms: IdleLoad {
                idle_p50: Some(15.0),
                load_p50: Some(15.5),
                ..IdleLoad::default()
            },
            state_roots_agree: Some(true),
            ..Summary::default()
        }
    }

    #[test]
    fn a_control_window_is_the_block_time_reference() {
        let gates = Gates::default();
        let mut summary = passing();
        summary.block_time_ms.load_p50 = Some(40.0);
        assert_eq!(check_gates(&summary, &gates).len(), 1, "40 ms is 2.7× idle");
        summary.control = Some(crate::summary::Control {
            block_time_p50_ms: Some(38.0),
            ..Default::default()
        });
        assert!(
            check_gates(&summary, &gates).is_empty(),
            "40 ms is 1.05× the control"
        );
        summary.block_time_ms.load_p50 = Some(42.0);
        let failures = check_gates(&summary, &gates);
        assert!(
            failures.len() == 1 && failures[0].contains("control window"),
            "{failures:?}"
        );
    }

    #[test]
    fn gates_pass_a_clean_run_and_catch_each_failure() {
        let gates = Gates::default();
        assert!(check_gates(&passing(), &gates).is_empty());
        type Plant = Box<dyn Fn(&mut Summary)>;
        let cases: Vec<(&str, Plant)> = vec![
            ("sys_errors", Box::new(|s| s.sys_errors = 1)),
            (
                "state roots",
                Box::new(|s| s.state_roots_agree = Some(false)),
            ),
            ("chain_halts", Box::new(|s| s.chain_halts = 1)),
            ("height spread", Box::new(|s| s.height_spread_max = 51)),
            ("completion", Box::new(|s| s.completion_rate = Some(0.98))),
            (
                "block time",
                Box::new(|s| s.block_time_ms.load_p50 = Some(17.0)),
            ),
        ];
        for (what, plant) in cases {
            let mut summary = passing();
            plant(&mut summary);
            let failures = check_gates(&summary, &gates);
            assert!(
                failures.iter().any(|f| f.contains(what)),
                "{what}: {failures:?}"
            );
        }
        // Each gate can be relaxed.
        let mut summary = passing();
        summary.sys_errors = 3;
        summary.state_roots_agree = Some(false);
        let relaxed = Gates {
            sys_errors_max: 3,
            state_roots: false,
            ..Gates::default()
        };
        assert!(check_gates(&summary, &relaxed).is_empty());
    }

    #[test]
    fn deltas_read_like_seed_000() {
        let mut before = passing();
        before.block_time_ms.idle_p50 = Some(111.0);
        let mut after = passing();
        after.block_time_ms.idle_p50 = Some(52.0);
        let rows = deltas(&before, &after);
        let idle = rows
            .iter()
            .find(|d| d.metric.starts_with("Block time idle"));
        assert_eq!(idle.map(Delta::text).as_deref(), Some("-53%"));
        let sys = rows.iter().find(|d| d.metric == "SysErr");
        assert_eq!(sys.map(Delta::text).as_deref(), Some("="));
        after.sys_errors = 2;
        let rows = deltas(&before, &after);
        let sys = rows.iter().find(|d| d.metric == "SysErr");
        assert_eq!(sys.map(Delta::text).as_deref(), Some("+2"));
    }

    #[test]
    fn regressions_respect_direction_and_tolerance() {
        let before = passing();
        let mut after = passing();
        after.tps_mean = Some(950.0); // 5 % worse: inside 10 %.
        after.block_time_ms.load_p50 = Some(14.0); // better
        assert!(regressions(&before, &after, 0.10).is_empty());
        after.tps_mean = Some(800.0); // 20 % worse
        let found = regressions(&before, &after, 0.10);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("TPS mean"));
        assert!(regressions(&before, &after, 0.25).is_empty());
        // An unmeetable baseline.
        let mut impossible = passing();
        impossible.tps_mean = Some(1e9);
        impossible.submit_to_commit_ms.p99 = Some(0.001);
        after.submit_to_commit_ms.p99 = Some(50.0);
        let found = regressions(&impossible, &after, 0.10);
        assert!(found.iter().any(|f| f.contains("TPS")));
        assert!(found.iter().any(|f| f.contains("p99")));
        // From zero errors to some is a regression whatever the tolerance.
        after.sys_errors = 1;
        assert!(regressions(&before, &after, 10.0)
            .iter()
            .any(|f| f.contains("SysErr")));
    }
}
