//! What the cache and the redis-server did for each side in the measured
//! rounds: the cache's counters (hits, misses, bypasses, errors) and the
//! server's command counts (`INFO commandstats`, zeroed before each round),
//! per operation. Taken outside the timed region.

use std::collections::BTreeMap;

use reposmith::cache::{Cache, CacheStats};

use crate::Result;
use crate::bench::Side;
use crate::measure::Sample;
use crate::queue::server::Server;

/// One side's totals over its measured rounds.
#[derive(Debug, Default, Clone)]
struct Totals {
    ops: u64,
    hits: u64,
    misses: u64,
    bypassed: u64,
    errors: u64,
    coalesced: u64,
    early_refreshes: u64,
    /// Calls by command (INFO, CONFIG and the like left out).
    calls: BTreeMap<String, u64>,
    /// Microseconds the server spent in those commands.
    server_us: u64,
    /// Whether the server's counters were read (a live server).
    counted: bool,
}

/// Every workload's totals, in order, for printing under the tables.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    workloads: Vec<Tally>,
}

/// Counts one workload's sides.
#[derive(Debug)]
pub(crate) struct Tally {
    name: String,
    unit: &'static str,
    sides: Vec<(Side, Totals)>,
}

/// What is read before a round.
pub(crate) struct Before {
    stats: Option<CacheStats>,
    counted: bool,
}

impl Tally {
    /// A tally of `workload` whose operations are `unit`s.
    pub(crate) fn new(workload: &str, unit: &'static str) -> Tally {
        Tally {
            name: workload.to_owned(),
            unit,
            sides: Vec::new(),
        }
    }

    /// Before a round: the cache's counters, and the server's zeroed when
    /// it is given (a live server; the warm-up is not counted).
    pub(crate) async fn before(
        cache: Option<&Cache>,
        server: Option<&Server>,
        round: usize,
    ) -> Result<Before> {
        let counted = round != usize::MAX && server.is_some();
        if let (true, Some(server)) = (counted, server) {
            server.reset_usage().await?;
        }
        Ok(Before {
            stats: cache.map(Cache::stats),
            counted,
        })
    }

    /// After a measured round of `side` that ran `sample`.
    pub(crate) async fn after(
        &mut self,
        side: Side,
        before: Before,
        cache: Option<&Cache>,
        server: Option<&Server>,
        round: usize,
        sample: &Sample,
    ) -> Result<()> {
        if round == usize::MAX {
            return Ok(());
        }
        let at = match self.sides.iter().position(|(s, _)| *s == side) {
            Some(at) => at,
            None => {
                self.sides.push((side, Totals::default()));
                self.sides.len() - 1
            }
        };
        let totals = &mut self.sides[at].1;
        totals.ops += sample.units;
        if let (Some(then), Some(cache)) = (before.stats, cache) {
            let now = cache.stats();
            totals.hits += now.hits - then.hits;
            totals.misses += now.misses - then.misses;
            totals.bypassed += now.bypassed - then.bypassed;
            totals.errors += now.errors - then.errors;
            totals.coalesced += now.coalesced - then.coalesced;
            totals.early_refreshes += now.early_refreshes - then.early_refreshes;
        }
        if let (true, Some(server)) = (before.counted, server) {
            let usage = server.usage(0.0).await?;
            for (name, n) in usage.calls {
                // The bench's own: INFO, CONFIG RESETSTAT (`config|resetstat`).
                if !(name.starts_with("info") || name.starts_with("config")) {
                    *totals.calls.entry(name).or_default() += n;
                }
            }
            totals.server_us += usage.command_us;
            totals.counted = true;
        }
        Ok(())
    }
}

impl Notes {
    /// Keeps `tally` for printing.
    pub(crate) fn add(&mut self, tally: Tally) {
        self.workloads.push(tally);
    }

    /// Per workload and side: the cache's counters and the server's
    /// commands, per operation.
    pub(crate) fn print(&self) {
        println!(
            "\nwhat the cache did in the measured rounds, per operation: the cache's counters \
             (coalesced: shared another task's lookup in this process; bypassed: read the \
             database without asking Redis), and the bench's redis-server's INFO commandstats \
             (the commands a script runs count too: one EVALSHA is one round trip) and its \
             command time"
        );
        for Tally { name, unit, sides } in &self.workloads {
            println!("  {name}");
            for (side, t) in sides {
                let n = t.ops.max(1) as f64;
                let per = |x: u64| x as f64 / n;
                let redis = match t.counted {
                    false => "redis: not counted (server down)".to_owned(),
                    true => {
                        let mut parts: Vec<String> = t
                            .calls
                            .iter()
                            .map(|(c, k)| (c, per(*k)))
                            .filter(|(_, k)| *k >= 0.005)
                            .map(|(c, k)| format!("{c} {k:.2}"))
                            .collect();
                        let total: u64 = t.calls.values().sum();
                        parts.push(format!("= {:.2} commands", per(total)));
                        format!(
                            "redis: {}, {:.1} µs server time",
                            parts.join(", "),
                            per(t.server_us)
                        )
                    }
                };
                println!(
                    "    {:<26} {} {unit}: hits {:.2}, misses {:.2}, coalesced {:.2}, \
                     early refreshes {:.3}, bypassed {:.2}, errors {:.4}; {redis}",
                    side.label(),
                    t.ops,
                    per(t.hits),
                    per(t.misses),
                    per(t.coalesced),
                    per(t.early_refreshes),
                    per(t.bypassed),
                    per(t.errors),
                );
            }
        }
    }
}
