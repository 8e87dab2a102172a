//! The benchmark's printed report.

use std::time::Duration;

use reposmith_postgres::recall::RecallConfig;

use super::tune::Run;
use super::{DIMS, K, Options, TASKS};

/// `/proc/loadavg`'s three averages.
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

pub(super) struct Report {
    pub(super) opts: Options,
    pub(super) loaded: Duration,
    pub(super) built: Duration,
    pub(super) at_default: f64,
    pub(super) run: Run,
    pub(super) at_settled: f64,
    pub(super) smallest: Option<u32>,
    pub(super) evaluated: Vec<(u32, f64)>,
    pub(super) load: (String, String),
}

impl Report {
    pub(super) fn print(&self, config: &RecallConfig) {
        let o = &self.opts;
        let data = match o.clusters {
            0 => "isotropic Gaussian".to_owned(),
            c => format!("{c} isotropic Gaussian clusters"),
        };
        println!(
            "\nrecall: {} x {DIMS} halfvec, cosine, {data} (seed {}); insert_many {:.1} s, then HNSW \
             (m 16, ef_construction 64, maintenance_work_mem 1GB) built in {:.1} s",
            o.rows,
            o.seed,
            self.loaded.as_secs_f64(),
            self.built.as_secs_f64()
        );
        println!(
            "load average: {} at start, {} at end (2 cores)",
            self.load.0, self.load.1
        );
        println!(
            "\nexact-checked recall@{K} over {} queries (server-side sequential scan as truth)",
            o.queries
        );
        println!(
            "  ef_search 40 (pgvector's default)      {:.3}",
            self.at_default
        );
        let tune = config.tune.as_ref();
        let (floor, ceiling) = tune.map_or((0, 0), |t| t.ef_search);
        println!(
            "\ntuner: target {}, ef_search {floor}..={ceiling}, verdicts after {}..{} samples \
             (confidence {} se), margin {}; monitor: rate {}, {} re-run at a time, queue {}, {TASKS} search tasks",
            o.target,
            tune.map_or(0, |t| t.min_samples),
            tune.map_or(0, |t| t.max_samples),
            tune.map_or(0.0, |t| t.confidence),
            tune.map_or(0.0, |t| t.margin),
            o.rate,
            config.concurrency,
            config.queue,
        );
        let f = &self.run.field;
        let path: Vec<String> = f
            .tuning
            .iter()
            .flat_map(|t| &t.changes)
            .map(|c| format!("{} ({:.3}/{})", c.from, c.recall, c.samples))
            .collect();
        let settled = f.current.unwrap_or(0);
        let tuning = f.tuning.as_ref();
        let mut path = path;
        path.push(settled.to_string());
        println!(
            "  path: {}   (value (recall measured there / samples))",
            path.join(" -> ")
        );
        println!(
            "  settled at ef_search {settled} after {} samples; held for a re-check block ({} samples in all, {} searches, {:.0} s, {} samples dropped: queue full)",
            self.run.samples_to_settle,
            f.samples,
            self.run.searches,
            self.run.elapsed.as_secs_f64(),
            self.run.dropped
        );
        println!(
            "  monitor's recall@{K} at {settled}: {:.3} over {} samples there; too low: {:?}",
            tuning.and_then(|t| t.recall_at_current).unwrap_or(f64::NAN),
            tuning.map_or(0, |t| t.samples_at_current),
            tuning.and_then(|t| t.too_low)
        );
        println!(
            "  exact-checked recall@{K} at {settled}: {:.3}",
            self.at_settled
        );
        let grid: Vec<String> = self
            .evaluated
            .iter()
            .map(|(e, r)| format!("{e}:{r:.3}"))
            .collect();
        println!(
            "\nexact-checked grid from 40 (2.5 % steps): {}",
            grid.join(" ")
        );
        let step = (f64::from(settled) * 0.1).ceil() as u32;
        match self.smallest {
            Some(s) => println!(
                "smallest ef_search reaching {}: {s}; tuner at {settled}: {} (one step = {step}); recall there {}",
                o.target,
                if settled <= s + step {
                    "no higher than needed, within one step"
                } else {
                    "HIGHER than one step above"
                },
                if self.at_settled >= o.target - 1e-9 {
                    "reaches the target"
                } else {
                    "MISSES the target"
                },
            ),
            None => println!("no ef_search up to 1000 reaches {}", o.target),
        }
    }
}
