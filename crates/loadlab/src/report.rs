//! Reports: `report.md` with the seeds' tables (seed 000's idle/load table, seed 002's
//! load-test report, a ramp's steps, a baseline's before/after with deltas), and
//! `report.html` with the same tables and four plots rendered by plotters as inline SVG.

use crate::gates::{deltas, fmt};
use crate::summary::{Second, Series, Summary};
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::fmt::Write;

fn f(v: Option<f64>) -> String {
    fmt(v)
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{:.2} %", v * 100.0))
}

/// The Markdown report. `baseline` adds the before/after table.
pub fn markdown(summary: &Summary, baseline: Option<&Summary>) -> String {
    let s = summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Basalt bench: {}, {} validators, target {}\n\n{}; {:.0} s measured.\n",
        s.scenario, s.validators, s.target, s.load_model, s.duration_s
    );
    out.push_str("## Idle vs load (seed 000)\n\n| metric | idle | load |\n|---|---|---|\n");
    let rows = [
        (
            "Block time p50 (ms)",
            s.block_time_ms.idle_p50,
            s.block_time_ms.load_p50,
        ),
        (
            "Block time p99 (ms)",
            s.block_time_ms.idle_p99,
            s.block_time_ms.load_p99,
        ),
        (
            "Precommit p50 (ms)",
            s.precommit_ms.idle_p50,
            s.precommit_ms.load_p50,
        ),
        (
            "Precommit p99 (ms)",
            s.precommit_ms.idle_p99,
            s.precommit_ms.load_p99,
        ),
    ];
    for (name, idle, load) in rows {
        let _ = writeln!(out, "| {name} | {} | {} |", f(idle), f(load));
    }
    if let (Some(v), Some(p)) = (&s.flooded_validator, &s.flooded_precommit_ms) {
        let _ = writeln!(
            out,
            "| Precommit p50 of the loaded validator {v} (ms) | {} | {} |\n\
             | Precommit p99 of the loaded validator (ms) | {} | {} |",
            f(p.idle_p50),
            f(p.load_p50),
            f(p.idle_p99),
            f(p.load_p99)
        );
    }
    let blocks_per_s = |ms: Option<f64>| ms.filter(|m| *m > 0.0).map(|m| 1000.0 / m);
    let _ = writeln!(
        out,
        "| Blocks/s (from p50) | {} | {} |",
        f(blocks_per_s(s.block_time_ms.idle_p50)),
        f(blocks_per_s(s.block_time_ms.load_p50))
    );
    idle_load_table(
        &mut out,
        "Where block time goes: consensus steps, every validator (ms)",
        "The commit step includes the commit wait.",
        "step",
        &s.steps_ms,
    );
    idle_load_table(
        &mut out,
        "Durable writes, every validator (ms)",
        "sign_record: the signing state and consensus WAL made durable before a vote or \
         proposal leaves (inside the steps above); persist: decided blocks made durable (off \
         the consensus path).",
        "write",
        &s.durable_writes_ms,
    );
    if let Some(c) = &s.control {
        let ratio = |load: Option<f64>, control: Option<f64>| match (load, control) {
            (Some(l), Some(c)) if c > 0.0 => format!("{:.2}×", l / c),
            _ => "n/a".into(),
        };
        let flooded_p99 = s.flooded_precommit_ms.as_ref().and_then(|p| p.load_p99);
        let _ = writeln!(
            out,
            "\n## Control: the same load without the disturbance\n\n\
             {:.0} s measured right before the disturbed window.\n\n\
             | metric | control | disturbed | ratio |\n|---|---|---|---|",
            c.duration_s
        );
        let rows = [
            (
                "Block time p50 (ms)",
                c.block_time_p50_ms,
                s.block_time_ms.load_p50,
            ),
            (
                "Block time p99 (ms)",
                c.block_time_p99_ms,
                s.block_time_ms.load_p99,
            ),
            (
                "Precommit p50 (ms)",
                c.precommit_p50_ms,
                s.precommit_ms.load_p50,
            ),
            (
                "Precommit p99 (ms)",
                c.precommit_p99_ms,
                s.precommit_ms.load_p99,
            ),
            (
                "Precommit p99 of the loaded validator (ms)",
                c.flooded_precommit_p99_ms,
                flooded_p99,
            ),
            ("TPS mean", c.tps_mean, s.tps_mean),
            (
                "Submit→commit p50 (ms)",
                c.submit_to_commit_p50_ms,
                s.submit_to_commit_ms.p50,
            ),
            (
                "Submit→commit p99 (ms)",
                c.submit_to_commit_p99_ms,
                s.submit_to_commit_ms.p99,
            ),
            (
                "Admitted→commit p50 (ms)",
                c.accept_to_commit_p50_ms,
                s.accept_to_commit_ms.p50,
            ),
            (
                "Mempool wait p50, nodes' histogram (ms)",
                c.mempool_wait_p50_ms,
                s.mempool_wait_ms.p50,
            ),
            (
                "Mempool wait p99, nodes' histogram (ms)",
                c.mempool_wait_p99_ms,
                s.mempool_wait_ms.p99,
            ),
            (
                "CPU µs per op per validator",
                c.cpu_us_per_tx_per_validator,
                s.cpu_us_per_tx_per_validator,
            ),
            (
                "Chain halts",
                Some(c.chain_halts as f64),
                Some(s.chain_halts as f64),
            ),
            (
                "Height spread max (blocks)",
                Some(c.height_spread_max as f64),
                Some(s.height_spread_max as f64),
            ),
        ];
        for (name, control, load) in rows {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} |",
                f(control),
                f(load),
                ratio(load, control)
            );
        }
    }
    out.push_str("\n## Load-test report\n\n| | |\n|---|---|\n");
    let _ = writeln!(
        out,
        "| Offered rate (ops/s) | {} |\n| Submitted | {} |\n| Committed | {} ({}) |\n\
         | Timeouts | {} |\n| Shed operations / shed requests | {} / {} |\n\
         | Rejections | {} |\n| SysErr | {} |\n| TPS mean / CV | {} / {} |\n\
         | Transactions committed per the nodes' counter | {} |\n\
         | Submit→commit p50 / p95 / p99 (ms) | {} / {} / {} |\n\
         | Admitted→commit p50 / p95 / p99 (ms) | {} / {} / {} |\n\
         | Mempool wait p50 / p95 / p99, nodes' histogram (ms) | {} / {} / {} |\n\
         | HTTP p50 / p95 / p99 (ms) | {} / {} / {} |\n\
         | Round escalations | {} |\n| Validator height spread max (blocks) | {} (from {}) |\n\
         | Height spread as sampled / slowest answer to a sample (ms) | {} / {} |\n\
         | Validators unreachable (max in one sample) | {} |\n| Chain halts | {} |\n\
         | Longest gap between blocks (ms) | {} |\n\
         | State roots agree | {} |\n| CPU µs per op per validator | {} |",
        s.offered_rate,
        s.submitted,
        s.committed,
        pct(s.completion_rate),
        s.timeouts,
        s.shed,
        s.shed_requests,
        if s.rejections.is_empty() {
            "none".to_owned()
        } else {
            s.rejections
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        s.sys_errors,
        f(s.tps_mean),
        f(s.tps_cv),
        s.node_committed_txs.map_or("n/a".into(), |n| n.to_string()),
        f(s.submit_to_commit_ms.p50),
        f(s.submit_to_commit_ms.p95),
        f(s.submit_to_commit_ms.p99),
        f(s.accept_to_commit_ms.p50),
        f(s.accept_to_commit_ms.p95),
        f(s.accept_to_commit_ms.p99),
        f(s.mempool_wait_ms.p50),
        f(s.mempool_wait_ms.p95),
        f(s.mempool_wait_ms.p99),
        f(s.http_ms.p50),
        f(s.http_ms.p95),
        f(s.http_ms.p99),
        s.round_escalations.map_or("n/a".into(), |e| e.to_string()),
        s.height_spread_max,
        s.height_spread_source,
        s.height_spread_sampled_max,
        f(s.height_sample_slowest_ms),
        s.validators_unreachable_max,
        s.chain_halts,
        f(s.block_gap_max_ms),
        s.state_roots_agree.map_or("n/a".into(), |a| a.to_string()),
        f(s.cpu_us_per_tx_per_validator),
    );
    let queues = &s.node_queues;
    if !queues.gauge_max.is_empty() || !queues.drops.is_empty() {
        out.push_str("\n## Inside the nodes\n\n| series | value |\n|---|---|\n");
        for (series, value) in &queues.gauge_max {
            let _ = writeln!(out, "| max {series} | {value:.0} |");
        }
        for (series, value) in &queues.drops {
            let _ = writeln!(out, "| grew {series} | {value:.0} |");
        }
        if queues.drops.is_empty() {
            out.push_str("| drop, shed and refusal counters | none grew |\n");
        }
    }
    if let Some(first) = &s.first_stage {
        let share = |n: u64| {
            if s.submitted == 0 {
                "n/a".to_owned()
            } else {
                format!("{:.1} %", n as f64 * 100.0 / s.submitted as f64)
            }
        };
        let _ = writeln!(
            out,
            "\n## Seed 002's table\n\n\
             Configuration: {}; {:.0} s measured; effective throughput {} tasks/s\n\n\
             On-chain submit (scheduled → create committed)\n\
             - {}/{} seen ({})\n- p50: {} ms · p95: {} ms · p99: {} ms\n\n\
             End-to-end (scheduled → response committed)\n\
             - {}/{} completed ({})\n- p50: {} ms · p95: {} ms · p99: {} ms\n\n\
             Timeouts: {}/{} ({})",
            s.load_model,
            s.duration_s,
            s.offered_rate,
            first.seen,
            s.submitted,
            share(first.seen),
            f(first.latency_ms.p50),
            f(first.latency_ms.p95),
            f(first.latency_ms.p99),
            s.committed,
            s.submitted,
            share(s.committed),
            f(s.submit_to_commit_ms.p50),
            f(s.submit_to_commit_ms.p95),
            f(s.submit_to_commit_ms.p99),
            s.timeouts,
            s.submitted,
            share(s.timeouts),
        );
    }
    if !s.facts.is_empty() {
        out.push_str("\n## Scenario\n\n| | |\n|---|---|\n");
        for (k, v) in &s.facts {
            let _ = writeln!(out, "| {k} | {v} |");
        }
    }
    if let Some(ramp) = &s.ramp {
        let _ = writeln!(
            out,
            "\n## Ramp (each step held {:.0} s after settling)\n\n\
             Saturation point: **{}**\n\n\
             | offered (ops/s) | TPS | completion | p50 (ms) | p99 (ms) | block time p50 (ms) \
             | precommit p50 (ms) | SysErr | gates |\n|---|---|---|---|---|---|---|---|---|",
            ramp.step_duration_s,
            ramp.saturation_rate
                .map_or("none (the first step broke a gate)".into(), |r| format!(
                    "{r} ops/s"
                ))
        );
        for step in &ramp.steps {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                step.offered_rate,
                f(step.tps_mean),
                pct(step.completion_rate),
                f(step.latency_p50_ms),
                f(step.latency_p99_ms),
                f(step.block_time_p50_ms),
                f(step.precommit_p50_ms),
                step.sys_errors,
                if step.gate_failures.is_empty() {
                    "pass".to_owned()
                } else {
                    step.gate_failures.join("; ")
                }
            );
        }
    }
    if let Some(base) = baseline {
        let _ = writeln!(
            out,
            "\n## Baseline vs this run\n\n| Metric | Baseline ({}, {}) | This run | Delta |\n\
             |---|---|---|---|",
            base.scenario, base.load_model
        );
        for d in deltas(base, s) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                d.metric,
                f(d.before),
                f(d.after),
                d.text()
            );
        }
    }
    out.push_str("\n## Gates\n\n");
    if s.gate_failures.is_empty() {
        out.push_str("All gates passed.\n");
    } else {
        for failure in &s.gate_failures {
            let _ = writeln!(out, "- FAILED: {failure}");
        }
    }
    if !s.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for note in &s.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Markdown subset this module writes (headings, tables, lists, paragraphs) as HTML.
fn markdown_to_html(md: &str) -> String {
    let mut html = String::new();
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut list = false;
    let flush_table = |table: &mut Vec<Vec<String>>, html: &mut String| {
        if table.is_empty() {
            return;
        }
        html.push_str("<table>");
        for (i, row) in table.iter().enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            html.push_str("<tr>");
            for cell in row {
                let _ = write!(html, "<{tag}>{}</{tag}>", escape(cell));
            }
            html.push_str("</tr>");
        }
        html.push_str("</table>\n");
        table.clear();
    };
    for line in md.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('|') {
            let cells: Vec<String> = trimmed
                .trim_start_matches('|')
                .trim_end_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            if !cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
                table.push(cells);
            }
            continue;
        }
        flush_table(&mut table, &mut html);
        if let Some(item) = trimmed.strip_prefix("- ") {
            if !list {
                html.push_str("<ul>");
                list = true;
            }
            let _ = write!(html, "<li>{}</li>", escape(item));
            continue;
        }
        if list {
            html.push_str("</ul>\n");
            list = false;
        }
        if let Some(h) = trimmed.strip_prefix("## ") {
            let _ = writeln!(html, "<h2>{}</h2>", escape(h));
        } else if let Some(h) = trimmed.strip_prefix("# ") {
            let _ = writeln!(html, "<h1>{}</h1>", escape(h));
        } else if !trimmed.is_empty() {
            let _ = writeln!(html, "<p>{}</p>", escape(&trimmed.replace("**", "")));
        }
    }
    flush_table(&mut table, &mut html);
    if list {
        html.push_str("</ul>\n");
    }
    html
}

/// One line of a chart: name and points.
type Line = (String, Vec<(f64, f64)>);

/// A line chart as an SVG document, with grey marks at the phase boundaries.
/// With `from_min` the y axis starts at the lowest value (heights), else at 0.
fn chart(
    title: &str,
    y_desc: &str,
    lines: &[Line],
    marks: &[f64],
    from_min: bool,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
        let points = lines.iter().flat_map(|(_, p)| p.iter());
        let x_max = points
            .clone()
            .map(|p| p.0)
            .chain(marks.iter().copied())
            .fold(1.0, f64::max);
        let y_max = points.clone().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
        let y_min = if from_min {
            points.map(|p| p.1).fold(f64::INFINITY, f64::min).min(y_max) * 0.98
        } else {
            0.0
        };
        let y_min = if y_min.is_finite() { y_min } else { 0.0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, y_min..y_max)
            .map_err(|e| anyhow!("{e:?}"))?;
        chart
            .configure_mesh()
            .x_desc("seconds since the idle phase began")
            .y_desc(y_desc)
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
        for mark in marks {
            chart
                .draw_series(LineSeries::new(
                    vec![(*mark, y_min), (*mark, y_max)],
                    BLACK.mix(0.6).stroke_width(2),
                ))
                .map_err(|e| anyhow!("{e:?}"))?;
        }
        for (i, (name, points)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| anyhow!("{e:?}"))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
        root.present().map_err(|e| anyhow!("{e:?}"))?;
    }
    Ok(svg)
}

fn points(seconds: &[Second], value: impl Fn(&Second) -> Option<f64>) -> Vec<(f64, f64)> {
    seconds
        .iter()
        .filter_map(|s| Some((s.t as f64, value(s)?)))
        .collect()
}

/// The four plots: committed TPS, latency percentiles, block time, each validator's height.
pub fn plots(series: &Series) -> Result<Vec<String>> {
    let s = &series.seconds;
    let marks = [
        series.load_start_s,
        series.measure_start_s,
        series.load_end_s,
    ];
    let validators = s.iter().map(|x| x.heights.len()).max().unwrap_or(0);
    let heights: Vec<Line> = (0..validators)
        .map(|v| {
            (
                format!("validator {v}"),
                points(s, |x| x.heights.get(v).copied().flatten().map(|h| h as f64)),
            )
        })
        .collect();
    Ok(vec![
        chart(
            "Committed operations per second",
            "ops/s",
            &[
                ("committed".into(), points(s, |x| Some(x.committed as f64))),
                ("offered".into(), points(s, |x| Some(x.offered as f64))),
            ],
            &marks,
            false,
        )?,
        chart(
            "Submit → commit latency (by second of commit)",
            "ms",
            &[
                ("p50".into(), points(s, |x| x.latency_p50_ms)),
                ("p99".into(), points(s, |x| x.latency_p99_ms)),
            ],
            &marks,
            false,
        )?,
        chart(
            "Block time",
            "ms",
            &[
                ("mean".into(), points(s, |x| x.block_time_ms)),
                ("max".into(), points(s, |x| x.block_time_max_ms)),
            ],
            &marks,
            false,
        )?,
        chart("Height of each validator", "height", &heights, &marks, true)?,
    ])
}

/// The HTML report: the Markdown report's tables and the four plots, self-contained.
pub fn html(summary: &Summary, baseline: Option<&Summary>, series: &Series) -> Result<String> {
    let body = markdown_to_html(&markdown(summary, baseline));
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Basalt bench</title>\n\
         <style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;\
         padding:3px 8px;text-align:left}th{background:#f4f4f4}svg{display:block;\
         margin:1em 0}</style></head><body>\n",
    );
    out.push_str(&body);
    out.push_str(
        "<h2>Plots</h2>\n<p>Grey lines: load start, start of the measured window, load end.</p>\n",
    );
    for svg in plots(series)? {
        // Drop the XML declaration: the SVG is inline.
        let inline = match svg.find("<svg") {
            Some(at) => svg.get(at..).unwrap_or_default(),
            None => svg.as_str(),
        };
        out.push_str(inline);
        out.push('\n');
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

/// A section with one row per entry of `rows`: idle and load p50 and p99 (ms). Nothing when
/// no entry has a figure.
fn idle_load_table(
    out: &mut String,
    title: &str,
    intro: &str,
    what: &str,
    rows: &std::collections::BTreeMap<String, crate::summary::IdleLoad>,
) {
    if !rows
        .values()
        .any(|v| v.idle_p50.is_some() || v.load_p50.is_some())
    {
        return;
    }
    let _ = writeln!(
        out,
        "\n## {title}\n\n{intro}\n\n\
         | {what} | idle p50 | load p50 | idle p99 | load p99 |\n|---|---|---|---|---|"
    );
    for (name, v) in rows {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} |",
            f(v.idle_p50),
            f(v.load_p50),
            f(v.idle_p99),
            f(v.load_p99)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{IdleLoad, Ramp, RampStep};

    fn summary() -> Summary {
        Summary {
            scenario: "transfer".into(),
            submitted: 100,
            committed: 100,
            completion_rate: Some(1.0),
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
    fn report_has_the_seed_tables() {
        let text = markdown(&summary(), None);
        assert!(
            text.contains("| Block time p50 (ms) | 15 | 15.50 |"),
            "{text}"
        );
        assert!(text.contains("| SysErr | 0 |"));
        assert!(text.contains("All gates passed."));
        let mut base = summary();
        base.block_time_ms.idle_p50 = Some(30.0);
        let text = markdown(&summary(), Some(&base));
        assert!(
            text.contains("| Block time idle p50 (ms) | 30 | 15 | -50% |"),
            "{text}"
        );
        let mut ramped = summary();
        ramped.ramp = Some(Ramp {
            steps: vec![RampStep {
                offered_rate: 500,
                ..RampStep::default()
            }],
            saturation_rate: Some(500),
            step_duration_s: 10.0,
        });
        assert!(markdown(&ramped, None).contains("Saturation point: **500 ops/s**"));
    }

    #[test]
    fn html_has_tables_and_four_inline_plots() {
        let series = Series {
            seconds: (0..5)
                .map(|t| Second {
                    t,
                    offered: 10,
                    committed: 9,
                    latency_p50_ms: Some(20.0),
                    latency_p99_ms: Some(40.0),
                    block_time_ms: Some(15.0),
                    block_time_max_ms: Some(18.0),
                    heights: vec![Some(t * 10), Some(t * 10 + 1)],
                })
                .collect(),
            load_start_s: 1.0,
            measure_start_s: 2.0,
            load_end_s: 4.0,
        };
        let page = html(&summary(), None, &series).unwrap_or_default();
        assert_eq!(page.matches("<svg").count(), 4);
        assert!(!page.contains("<?xml"));
        assert!(page.contains("<table>"));
        assert!(page.contains("validator 1"));
    }
}
