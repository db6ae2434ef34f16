//! Shared by Cordon's benches: the machine, the samples that criterion measured, and the
//! summary lines (figure, target, ratio to target) that `BENCHMARKS.md` quotes.
//!
//! Every bench measures through criterion's `iter_custom`, and records each sample
//! (iterations, elapsed time) it hands back to criterion. A figure is the **median of the
//! per-iteration times of those samples**, so the summary and criterion's own report come
//! from the same measurements; ratios are between benchmarks of one run of one binary.
//! Benchmarks are not tests: a missed target is printed, never a failure.
//!
//! A figure that is a ratio of two ways of doing one thing is also measured **paired**
//! ([`paired`]): after criterion's runs, batches of the two alternate, back to back, for many
//! rounds, and the figure is the median of the rounds' ratios. On a machine whose speed drifts
//! (a VM with busy neighbours), two criterion benchmarks run seconds apart can differ by more
//! than what is measured; the two batches of a round run within milliseconds of each other,
//! so drift cancels in their ratio.

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

/// A ratio measured in alternating rounds (see the module's documentation).
pub struct Paired {
    /// The median of the rounds' ratios: the figure.
    pub median: f64,
    /// The 10th and 90th percentiles of the rounds' ratios: how much one round can vary.
    pub p10: f64,
    pub p90: f64,
    pub rounds: usize,
    /// The median time of one batch of `a` and of `b`.
    pub a: Duration,
    pub b: Duration,
}

impl std::fmt::Display for Paired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (10th to 90th percentile of {} paired rounds: {} to {})",
            fmt(self.median),
            self.rounds,
            fmt(self.p10),
            fmt(self.p90)
        )
    }
}

/// How long `iters` calls of `f` take, back to back (each result kept from the optimiser).
pub fn time_iters<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let started = std::time::Instant::now();
    for _ in 0..iters {
        std::hint::black_box(f());
    }
    started.elapsed()
}

/// Rounds of a paired measurement.
pub const PAIRED_ROUNDS: usize = 41;
/// How long one batch of a paired round should take.
pub const PAIRED_BATCH: Duration = Duration::from_millis(25);

/// The iterations that make a batch of [`PAIRED_BATCH`], for something that takes `per_iter`.
pub fn batch_iters(per_iter: Duration) -> u64 {
    (PAIRED_BATCH.as_secs_f64() / per_iter.as_secs_f64().max(1e-9)).ceil() as u64
}

/// `rounds` rounds of one batch of `a` and one of `b` (each returns how long its batch took),
/// alternating which goes first; the rounds' ratios `a / b`.
pub fn paired(
    rounds: usize,
    mut a: impl FnMut() -> Duration,
    mut b: impl FnMut() -> Duration,
) -> Paired {
    let (mut times_a, mut times_b) = (Vec::new(), Vec::new());
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|round| {
            let (ta, tb) = if round % 2 == 0 {
                let ta = a();
                (ta, b())
            } else {
                let tb = b();
                (a(), tb)
            };
            times_a.push(ta);
            times_b.push(tb);
            ta.as_secs_f64() / tb.as_secs_f64().max(1e-12)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    times_a.sort();
    times_b.sort();
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    Paired {
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
        rounds,
        a: times_a[rounds / 2],
        b: times_b[rounds / 2],
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
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// Microseconds of a duration.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
