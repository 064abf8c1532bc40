//! Percentiles, dispersion, and reading Prometheus text.

use std::collections::HashMap;

/// The `q` quantile (0..=1) of `values` (sorted in place), nearest rank.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values.get(rank - 1).copied()
}

/// Mean and coefficient of variation (stddev / mean).
pub fn mean_cv(values: &[f64]) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    let cv = (mean > 0.0).then(|| variance.sqrt() / mean);
    (Some(mean), cv)
}

/// One scrape: every sample line `name{labels} value`, keyed by `name{labels}`.
pub type Scrape = HashMap<String, f64>;

/// Parse Prometheus/OpenMetrics text exposition.
pub fn parse(text: &str) -> Scrape {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// A counter or gauge summed over every label set of `name`.
pub fn total(scrape: &Scrape, name: &str) -> f64 {
    scrape
        .iter()
        .filter(|(series, _)| series.as_str() == name || series.starts_with(&format!("{name}{{")))
        .map(|(_, v)| v)
        .sum()
}

/// Cumulative histogram buckets of `name` (upper bound → count), merged over scrapes
/// `after - before` (the observations between two scrapes).
pub fn bucket_delta(after: &[&Scrape], before: &[&Scrape], name: &str) -> Vec<(f64, f64)> {
    bucket_delta_of(after, before, name, "")
}

/// [`bucket_delta`] of the series of histogram `name` whose labels include `label` (e.g.
/// `step="commit"`; empty: the unlabelled histogram).
pub fn bucket_delta_of(
    after: &[&Scrape],
    before: &[&Scrape],
    name: &str,
    label: &str,
) -> Vec<(f64, f64)> {
    let mut buckets: HashMap<String, f64> = HashMap::new();
    let prefix = format!("{name}_bucket{{");
    for (scrapes, sign) in [(after, 1.0), (before, -1.0)] {
        for scrape in scrapes {
            for (series, value) in scrape.iter() {
                let Some(labels) = series.strip_prefix(&prefix) else {
                    continue;
                };
                // Label values here hold no commas: `k="v"` pairs, `le` anywhere.
                let (mut bound, mut others) = (None, Vec::new());
                for pair in labels.trim_end_matches('}').split(',') {
                    match pair.strip_prefix("le=\"") {
                        Some(le) => bound = Some(le.trim_end_matches('"')),
                        None => others.push(pair),
                    }
                }
                match bound {
                    Some(bound) if others.join(",") == label => {
                        *buckets.entry(bound.to_owned()).or_insert(0.0) += sign * value;
                    }
                    _ => {}
                }
            }
        }
    }
    let mut out: Vec<(f64, f64)> = buckets
        .into_iter()
        .map(|(bound, count)| {
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().unwrap_or(f64::INFINITY)
            };
            (bound, count)
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside the bucket.
pub fn bucket_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let target = q * total;
    let mut previous = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= target {
            if !bound.is_finite() {
                return Some(previous.0);
            }
            let width = count - previous.1;
            let fraction = if width > 0.0 {
                (target - previous.1) / width
            } else {
                1.0
            };
            return Some(previous.0 + (bound - previous.0) * fraction);
        }
        previous = (bound, count);
    }
    Some(previous.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_histogram_buckets_are_picked_by_label() {
        let scrape = parse(
            "h_bucket{step=\"propose\",le=\"0.01\"} 3\n\
             h_bucket{step=\"propose\",le=\"+Inf\"} 4\n\
             h_bucket{le=\"0.01\",step=\"commit\"} 7\n\
             h_bucket{le=\"+Inf\",step=\"commit\"} 9\n\
             g_bucket{le=\"0.01\"} 5\n",
        );
        let empty = Scrape::new();
        let propose = bucket_delta_of(&[&scrape], &[&empty], "h", "step=\"propose\"");
        assert_eq!(propose, vec![(0.01, 3.0), (f64::INFINITY, 4.0)]);
        let commit = bucket_delta_of(&[&scrape], &[&empty], "h", "step=\"commit\"");
        assert_eq!(commit, vec![(0.01, 7.0), (f64::INFINITY, 9.0)]);
        assert_eq!(bucket_delta(&[&scrape], &[&empty], "g"), vec![(0.01, 5.0)]);
        assert!(bucket_delta(&[&scrape], &[&empty], "h").is_empty());
    }

    #[test]
    fn percentiles_and_buckets() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 0.5), Some(50.0));
        assert_eq!(percentile(&mut v, 0.99), Some(99.0));
        let (mean, cv) = mean_cv(&[10.0, 10.0]);
        assert_eq!((mean, cv), (Some(10.0), Some(0.0)));
        let text = "# TYPE x histogram\nx_bucket{le=\"1\"} 10\nx_bucket{le=\"2\"} 30\nx_bucket{le=\"+Inf\"} 30\nx_count 30\n";
        let before =
            parse("x_bucket{le=\"1\"} 0\nx_bucket{le=\"2\"} 10\nx_bucket{le=\"+Inf\"} 10\n");
        let after = parse(text);
        let buckets = bucket_delta(&[&after], &[&before], "x");
        assert_eq!(
            buckets,
            vec![(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)]
        );
        assert_eq!(bucket_quantile(&buckets, 0.5), Some(1.0));
        assert_eq!(bucket_quantile(&buckets, 0.75), Some(1.5));
        assert_eq!(total(&after, "x_count"), 30.0);
    }
}
