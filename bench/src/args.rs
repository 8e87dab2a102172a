//! Command-line options, parsed by hand (a handful of numeric flags).

use crate::Result;

/// What to run and how big.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Measured rounds per workload (after one warm-up round).
    pub(crate) rounds: usize,
    /// Single-row operations per side per round.
    pub(crate) ops: usize,
    /// Rows per `insert_many`.
    pub(crate) bulk_rows: usize,
    /// Rows seeded for the read workloads.
    pub(crate) seed_rows: usize,
    /// Tasks of the concurrent workload.
    pub(crate) tasks: usize,
    /// Pool size of the concurrent workload.
    pub(crate) pool: u32,
    /// Raw sqlx gets its own pool with reposmith's settings instead of sharing the store's.
    pub(crate) own_pool: bool,
    /// Measure peak memory of `insert_many` in child processes.
    pub(crate) memory: bool,
    /// Set in a child process: run one side's `insert_many` and report VmHWM.
    pub(crate) memory_child: Option<String>,
}

pub(crate) const USAGE: &str = "\
reposmith-bench [OPTIONS]

  --rounds N        measured rounds per workload (default 10; each adds a warm-up)
  --ops N           single-row operations per side per round (default 2000)
  --bulk-rows N     rows per insert_many (default 100000)
  --seed-rows N     rows seeded for the reads (default 20000)
  --tasks N         tasks of the concurrent get (default 32)
  --pool N          pool size of the concurrent get (default 8)
  --own-pool        raw sqlx on its own pool built with reposmith's settings
                    (default: both sides share the store's pool)
  --no-memory       skip the peak-memory measurement of insert_many
  --quick           smoke run: 3 rounds, 100 ops, 5000 bulk rows, 2000 seed rows

Needs DATABASE_URL; `cargo xtask bench -- OPTIONS` provides it.
";

impl Options {
    /// Parses the process arguments after the program name.
    pub(crate) fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            rounds: 10,
            ops: 2000,
            bulk_rows: 100_000,
            seed_rows: 20_000,
            tasks: 32,
            pool: 8,
            own_pool: false,
            memory: true,
            memory_child: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || -> Result<usize> {
                let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
                Ok(v.parse().map_err(|_| format!("{arg}: not a number: {v}"))?)
            };
            match arg.as_str() {
                "--rounds" => o.rounds = value()?.max(1),
                "--ops" => o.ops = value()?.max(1),
                "--bulk-rows" => o.bulk_rows = value()?.max(1),
                "--seed-rows" => o.seed_rows = value()?.max(100),
                "--tasks" => o.tasks = value()?.max(1),
                "--pool" => o.pool = u32::try_from(value()?.max(1))?,
                "--own-pool" => o.own_pool = true,
                "--no-memory" => o.memory = false,
                "--quick" => {
                    (o.rounds, o.ops, o.bulk_rows, o.seed_rows) = (3, 100, 5000, 2000);
                }
                "--memory-child" => {
                    let side = it.next().ok_or("--memory-child needs a side")?;
                    o.memory_child = Some(side.clone());
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown option {other}\n\n{USAGE}").into()),
            }
        }
        Ok(o)
    }

    /// Buckets for the seed: 40 rows each, so `find` by bucket always fills 20.
    pub(crate) fn buckets(&self) -> i32 {
        i32::try_from(self.seed_rows / 40)
            .unwrap_or(i32::MAX)
            .max(1)
    }
}
