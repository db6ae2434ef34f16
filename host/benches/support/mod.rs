//! Shared by Cordon's benches: the machine, the samples that criterion measured, and the
//! summary lines (figure, target, ratio to target) that `BENCHMARKS.md` quotes.
//!
//! Every bench measures through criterion's `iter_custom`, and records each sample
//! (iterations, elapsed time) it hands back to criterion. A figure is the **median of the
//! per-iteration times of those samples**, so the summary and criterion's own report come
//! from the same measurements; ratios are between benchmarks of one run of one binary.
//! Benchmarks are not tests: a missed target is printed, never a failure.

#![allow(dead_code)] // each bench binary uses a part of it

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// What the figures were measured on: cores and CPU model, for the summary's first line.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!("{cores} cores, {model}")
}

/// The number of cores (the concurrency of the "at the number of cores" figures).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The samples criterion measured, by benchmark id.
#[derive(Default)]
pub struct Recorder {
    samples: Mutex<BTreeMap<String, Vec<(u64, Duration)>>>,
}

impl Recorder {
    /// Record one sample of `id`: `iters` iterations took `elapsed`. Returns `elapsed`, for
    /// `iter_custom`.
    pub fn record(&self, id: &str, iters: u64, elapsed: Duration) -> Duration {
        self.samples
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .push((iters, elapsed));
        elapsed
    }

    /// The median time per iteration of `id`'s samples; `None` when it was not run (filtered
    /// out, or `--test` mode with a single iteration).
    pub fn per_iter(&self, id: &str) -> Option<Duration> {
        let samples = self.samples.lock().unwrap();
        let samples = samples.get(id)?;
        if samples.len() < 5 {
            return None;
        }
        let mut per: Vec<f64> = samples
            .iter()
            .filter(|(iters, _)| *iters > 0)
            .map(|(iters, d)| d.as_secs_f64() / *iters as f64)
            .collect();
        per.sort_by(f64::total_cmp);
        Some(Duration::from_secs_f64(per[per.len() / 2]))
    }
}

/// Whether a target is a ceiling or a floor.
#[derive(Clone, Copy)]
pub enum Goal {
    /// The figure must be at most the target.
    AtMost,
    /// The figure must be at least the target.
    AtLeast,
}

/// The summary printed at the end of a bench.
pub struct Summary {
    title: String,
    lines: Vec<String>,
}

impl Summary {
    /// A summary titled `title` (the bench's name).
    pub fn new(title: &str) -> Summary {
        Summary {
            title: title.to_owned(),
            lines: Vec::new(),
        }
    }

    /// A line of context (no target).
    pub fn note(&mut self, text: impl Into<String>) {
        self.lines.push(format!("  {}", text.into()));
    }

    /// A figure with its target: `figure unit (target: <= target unit): ratio to target x, met`.
    pub fn figure(&mut self, what: &str, figure: f64, unit: &str, goal: Goal, target: f64) {
        let ratio = figure / target;
        let met = match goal {
            Goal::AtMost => figure <= target,
            Goal::AtLeast => figure >= target,
        };
        let op = match goal {
            Goal::AtMost => "<=",
            Goal::AtLeast => ">=",
        };
        self.lines.push(format!(
            "  {what}: {} {unit} (target {op} {} {unit}): {ratio:.2} of target, {}",
            fmt(figure),
            fmt(target),
            if met { "MET" } else { "MISSED" }
        ));
    }

    /// Print it, framed so that it stands out of criterion's output.
    pub fn print(&self) {
        println!();
        println!("== cordon bench summary: {} ({}) ==", self.title, machine());
        for line in &self.lines {
            println!("{line}");
        }
        if self.lines.is_empty() {
            println!("  (nothing measured: filtered out, or --test mode)");
        }
        println!("== end of summary ==");
    }
}

/// A number with three significant digits or so.
pub fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Microseconds of a duration.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
