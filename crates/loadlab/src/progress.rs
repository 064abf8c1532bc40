//! Live progress on stderr: an indicatif line with the phase, elapsed time, offered and
//! committed rate and the recent p99 latency when stderr is a terminal; plain phase lines
//! otherwise (CI logs, pipes).

use crate::tracker::Tracker;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// How often the live line is refreshed with rates.
pub const RATE_INTERVAL: Duration = Duration::from_secs(1);

/// Where progress goes.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A live line when `live` and stderr is a terminal; phase lines otherwise.
    pub fn new(live: bool) -> Progress {
        let bar = (live && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {prefix:.bold} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar }
    }

    /// Progress that prints nothing (library callers, tests).
    pub fn silent() -> Progress {
        Progress {
            bar: Some(ProgressBar::hidden()),
        }
    }

    /// A new phase began.
    pub fn phase(&self, phase: &str) {
        match &self.bar {
            Some(bar) => bar.set_prefix(phase.to_owned()),
            None => eprintln!("bench: {phase}"),
        }
    }

    /// Refresh the rates from `tracker` every [`RATE_INTERVAL`] until the task is aborted.
    pub fn spawn_rates(&self, tracker: Arc<Tracker>) -> Option<tokio::task::JoinHandle<()>> {
        let bar = self.bar.clone()?;
        Some(tokio::spawn(async move {
            let (mut issued, mut committed) = (tracker.issued(), tracker.committed());
            loop {
                tokio::time::sleep(RATE_INTERVAL).await;
                let (now_issued, now_committed) = (tracker.issued(), tracker.committed());
                let p99 = tracker
                    .recent_p99()
                    .map_or("n/a".to_owned(), |p| format!("{p:.0} ms"));
                bar.set_message(format!(
                    "offered {}/s  committed {}/s  p99 {p99}  shed {}",
                    now_issued - issued,
                    now_committed - committed,
                    tracker.shed_requests()
                ));
                (issued, committed) = (now_issued, now_committed);
            }
        }))
    }

    /// Clear the live line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
