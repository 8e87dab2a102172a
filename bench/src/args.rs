//! Command-line options, parsed by hand (a handful of numeric flags).

use crate::Result;

/// An area's command line read flag by flag, the area's own name and a
/// `--` separator skipped (`cargo xtask bench limits -- --quick`):
/// `while let Some(flag) = flags.next_flag() { match flag { "--rounds" =>
/// o.rounds = flags.number(flag)?.max(1), .. } }`. Shared by the areas
/// whose options are all `--name value` or bare switches.
pub(crate) struct Flags<'a> {
    args: Vec<&'a str>,
    at: usize,
}

impl<'a> Flags<'a> {
    /// The flags of `args` after dropping the area name `area`.
    pub(crate) fn new(args: &'a [String], area: &str) -> Flags<'a> {
        Flags {
            args: args
                .iter()
                .map(String::as_str)
                .filter(|a| *a != area && *a != "--")
                .collect(),
            at: 0,
        }
    }

    /// The next flag, if any.
    pub(crate) fn next_flag(&mut self) -> Option<&'a str> {
        let flag = self.args.get(self.at).copied();
        self.at += 1;
        flag
    }

    /// The value after `flag`.
    pub(crate) fn value(&mut self, flag: &str) -> Result<String> {
        let value = self
            .next_flag()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        Ok(value.to_owned())
    }

    /// The number after `flag`.
    pub(crate) fn number(&mut self, flag: &str) -> Result<usize> {
        let value = self.value(flag)?;
        Ok(value
            .parse()
            .map_err(|_| format!("{flag}: not a number: {value}"))?)
    }

    /// The comma-separated list after `flag` (`--only a,b`).
    pub(crate) fn list(&mut self, flag: &str) -> Result<Vec<String>> {
        Ok(self.value(flag)?.split(',').map(str::to_owned).collect())
    }
}

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
    /// Run the single-row and bulk workloads (`crud`).
    pub(crate) crud: bool,
    /// Run the vector search benchmark (`vector`).
    pub(crate) vector: bool,
    /// Run the small-batch scenarios and the COPY crossover alone (`batches`).
    pub(crate) batches: bool,
    /// Rows of the vector table.
    pub(crate) vector_rows: usize,
    /// Searches per side per round of the vector benchmark.
    pub(crate) vector_ops: usize,
    /// Measured rounds per vector case (after one warm-up round).
    pub(crate) vector_rounds: usize,
    /// Leave the vector table in place afterwards.
    pub(crate) keep_vectors: bool,
}

pub(crate) const USAGE: &str = "\
reposmith-bench [crud] [vector] [OPTIONS]

  crud              only the single-row, concurrent and insert_many workloads
  vector            only the vector search benchmark (100k x 384, HNSW)
  batches           only insert_users_1/_100 (also in crud) and the table of
                    multi-row INSERT against COPY by batch size
                    (neither word: both)
  associations      only loading_associations (users -> posts -> comments),
                    reposmith's relation loaders against raw sqlx
                    (--rounds N, --ops N, --users N, --quick)
  tenancy           only one tenant's get by id and filtered vector top-10:
                    by hand against for_tenant, with and without row-level
                    security (--rounds N, --ops N, --quick)
  testkit           only #[reposmith::test]'s per-test setup (template clone,
                    MongoDB database, Redis prefix) against #[sqlx::test]'s
                    (--tests N, default 100; --quick: 10)

  --rounds N        measured rounds per workload (default 10; each adds a warm-up)
  --ops N           single-row operations per side per round (default 2000)
  --bulk-rows N     rows per insert_many (default 100000)
  --seed-rows N     rows seeded for the reads (default 20000)
  --tasks N         tasks of the concurrent get (default 32)
  --pool N          pool size of the concurrent get (default 8)
  --own-pool        raw sqlx on its own pool built with reposmith's settings
                    (default: both sides share the store's pool)
  --no-memory       skip the peak-memory measurement of insert_many
  --vector-rows N   rows of the vector table (default 100000)
  --vector-ops N    vector searches per side per round, over 8 tasks (default 800)
  --vector-rounds N measured rounds per vector case (default 5; each adds a warm-up)
  --keep-vectors    leave the bench_vectors table in place afterwards
  --quick           smoke run: 3 rounds, 100 ops, 5000 bulk rows, 2000 seed rows;
                    vector: 5000 rows, 2 rounds of 80 searches

Needs DATABASE_URL; `cargo xtask bench -- OPTIONS` provides it.

reposmith-bench recall [OPTIONS]  the recall monitor and ef_search tuner alone:
                    isotropic clustered 50k x 768 halfvec, HNSW, tuned to recall@10 0.95
  --rows N, --queries N (200), --clusters N (100), --spread X (0.45), --rate X (0.25), --target X,
  --minutes N (15: the tuner's time limit), --seed N, --keep, --quick

reposmith-bench ingest [OPTIONS]  insert_many against bulk_load, 50k x 768 halfvec + HNSW
  --rows N, --dims N, --queries N, --sides LIST, --keep, --quick

reposmith-bench queue [OPTIONS]   Redis job queues end to end (raw LPUSH/BLMOVE/LREM,
                    apalis-redis, reposmith Queue + Worker, the outbox relay from
                    PostgreSQL units of work) on a redis-server the bench starts
                    itself; the outbox contenders need DATABASE_URL
  --jobs N (20000), --outbox-jobs N (jobs / 4), --rounds N (5), --workers N (8),
  --producers N (4), --quick (2 rounds of 2000 jobs),
  --only LIST (raw,apalis,reposmith,reposmith-batch,outbox,outbox-10)

reposmith-bench cache [OPTIONS]   the repository cache (Redis, near cache) against Postgres,
                    on a redis-server the bench starts itself (needs DATABASE_URL):
                    get by id cached/uncached/raw sqlx from 1 and 32 tasks, a filtered
                    vector top-10 .cached(ttl) against uncached, the near cache's hit
                    against the Redis hit, and Redis killed / paused mid-run
  --rounds N (5), --ops N (4000 gets per side per round), --seed-rows N (10000),
  --keys N (1000: the warm set), --tasks N (32), --pool N (10),
  --vector-rows N (20000), --queries N (100), --vector-ops N (400),
  --shards N (10: the search's equality filter keeps 1/N of the rows),
  --only LIST (get,concurrent,vector,near,down), --quick (2 rounds of 500 gets,
  3000 vectors; about half a minute)

reposmith-bench limits [OPTIONS]  the rate limiter on a redis-server the bench starts itself:
                    decisions/s and p50/p99 from 4 client processes, on 1 subject and on
                    10k; a redis_rate-style GCRA script (baseline), reposmith with 1 limit,
                    3 limits (rpm+tpm+daily), 4 limits (+inflight, check then release),
                    governor in process (the ceiling)
  --rounds N (5), --decisions N (4000 per process per side per round), --processes N (4),
  --tasks N (4 per process), --subjects N (10000),
  --only LIST (redis_rate,single,three,four,governor), --quick (3 rounds of 1500)

reposmith-bench replicas [OPTIONS] read replicas (needs DATABASE_URL and its streaming replica,
                    REPOSMITH_TEST_PG_REPLICA_URL): a read mix (filtered top-10 + filtered
                    count) on the primary alone against routed to the replica, and
                    read-your-writes (insert, then get on_primary / in a Session / routed);
                    20k x 64-dim HNSW rows in a schema of its own, dropped at the end
  --rounds N (5), --seconds N (5 per side per round), --tasks N (32: also the pools),
  --rows N (20000), --ryw-rounds N (5), --ryw-seconds N (3), --ryw-tasks N (8),
  --only LIST (reads,ryw), --quick (2 rounds of 1 s, 5000 rows)

reposmith-bench mongo [OPTIONS]   the MongoDB benchmark alone (needs MONGODB_URL)

  --rounds N, --ops N, --bulk-rows N, --seed-rows N, --quick
                    as above; defaults 5, 500, 100000, 5000
  --only LIST       comma-separated workloads: insert_one,get,find,insert_many
  --server-pid PID  also report the server process's CPU time per op/doc
  --commands        print the commands each side sends, with their server
                    milliseconds (the server's profiler), and stop
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
            crud: false,
            vector: false,
            batches: false,
            vector_rows: 100_000,
            vector_ops: 800,
            vector_rounds: 5,
            keep_vectors: false,
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
                "crud" => o.crud = true,
                "vector" => o.vector = true,
                "batches" => o.batches = true,
                "--vector-rows" => o.vector_rows = value()?.max(1000),
                "--vector-ops" => o.vector_ops = value()?.max(1),
                "--vector-rounds" => o.vector_rounds = value()?.max(1),
                "--keep-vectors" => o.keep_vectors = true,
                "--no-memory" => o.memory = false,
                "--quick" => {
                    (o.rounds, o.ops, o.bulk_rows, o.seed_rows) = (3, 100, 5000, 2000);
                    (o.vector_rows, o.vector_ops, o.vector_rounds) = (5000, 80, 2);
                }
                "--memory-child" => {
                    let side = it.next().ok_or("--memory-child needs a side")?;
                    o.memory_child = Some(side.clone());
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown option {other}\n\n{USAGE}").into()),
            }
        }
        if !o.crud && !o.vector && !o.batches {
            (o.crud, o.vector) = (true, true);
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

#[cfg(test)]
mod tests {
    use super::Flags;

    #[test]
    fn flags_read_values_numbers_and_lists_and_name_what_is_wrong() {
        let args: Vec<String> = [
            "limits", "--", "--rounds", "7", "--only", "a,b", "--quick", "--x",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let mut flags = Flags::new(&args, "limits");
        assert_eq!(flags.next_flag(), Some("--rounds"));
        assert_eq!(flags.number("--rounds").unwrap(), 7);
        assert_eq!(flags.next_flag(), Some("--only"));
        assert_eq!(flags.list("--only").unwrap(), ["a", "b"]);
        assert_eq!(flags.next_flag(), Some("--quick"));
        assert_eq!(flags.next_flag(), Some("--x"));
        let missing = flags.value("--x").unwrap_err().to_string();
        assert_eq!(missing, "--x needs a value");
        let bad: Vec<String> = vec!["--rounds".into(), "many".into()];
        let mut flags = Flags::new(&bad, "cache");
        let flag = flags.next_flag().unwrap();
        let err = flags.number(flag).unwrap_err().to_string();
        assert_eq!(err, "--rounds: not a number: many");
    }
}
