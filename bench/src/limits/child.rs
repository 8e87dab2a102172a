//! One of the limits bench's client processes. It connects once, builds
//! every side's decider, says `ready`, then runs what the parent asks, one
//! line at a time on stdin, each answered by one line on stdout:
//!
//! ```text
//! run <side> <subjects> <decisions> <round>
//! ok <wall ns> <admitted> <denied> <store failures> <cpu µs> <latency ns>,<latency ns>,...
//! ```
//!
//! The decisions are split over `--tasks` tokio tasks, each drawing its
//! subject uniformly from the first `<subjects>` of `tenant-0 ..`. The wall
//! time runs from the command to the last task's end; the CPU time is the
//! process's (user + system, every thread) over the same span. Waiting for the next
//! command blocks the main thread only: no task runs then.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use reposmith::{RedisBackend, RedisConfig};

use super::decider::{Decider, SIDES, side_named};
use crate::Result;
use crate::bench::Side;

/// What one task did.
#[derive(Default)]
struct Done {
    latencies: Vec<u64>,
    admitted: u64,
    denied: u64,
}

/// Serves the parent until its stdin closes.
pub(crate) async fn serve(url: &str, id: usize, tasks: usize, subjects: usize) -> Result<()> {
    let redis = RedisBackend::connect(&RedisConfig::new(url)).await?;
    let deciders: Vec<(Side, Decider)> = SIDES
        .iter()
        .map(|&(side, _)| Ok((side, Decider::of(side, &redis)?)))
        .collect::<Result<_>>()?;
    let names: Arc<Vec<String>> = Arc::new((0..subjects).map(|i| format!("tenant-{i}")).collect());
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line)? > 0 {
        let reply = match command(&line, &deciders, &names, id, tasks).await {
            Ok(reply) => reply,
            Err(e) => format!("err {e}"),
        };
        writeln!(out, "{reply}")?;
        out.flush()?;
        line.clear();
    }
    Ok(())
}

/// Runs one `run` line and returns its `ok` line.
async fn command(
    line: &str,
    deciders: &[(Side, Decider)],
    names: &Arc<Vec<String>>,
    id: usize,
    tasks: usize,
) -> Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let ["run", side, subjects, decisions, round] = words[..] else {
        return Err(format!("not a command: {line:?}").into());
    };
    let side = side_named(side).ok_or_else(|| format!("no side {side}"))?;
    let (_, decider) = deciders
        .iter()
        .find(|(s, _)| *s == side)
        .ok_or("side not built")?;
    let subjects: usize = subjects.parse()?;
    if subjects == 0 || subjects > names.len() {
        return Err(format!("subjects must be 1..={}", names.len()).into());
    }
    let failures = decider.failures();
    let cpu = cpu_us()?;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    let decisions: usize = decisions.parse()?;
    let round: usize = round.parse()?;
    for task in 0..tasks {
        let share = decisions / tasks + usize::from(task < decisions % tasks);
        let (decider, names) = (decider.clone(), names.clone());
        let rng = crate::cache::rng(round, id * 1024 + task);
        handles.push(tokio::spawn(one_task(decider, names, subjects, share, rng)));
    }
    let mut all = Done::default();
    for handle in handles {
        let done = handle.await??;
        all.latencies.extend(done.latencies);
        all.admitted += done.admitted;
        all.denied += done.denied;
    }
    let wall = started.elapsed().as_nanos();
    let cpu = cpu_us()? - cpu;
    let latencies: Vec<String> = all.latencies.iter().map(u64::to_string).collect();
    Ok(format!(
        "ok {wall} {} {} {} {cpu} {}",
        all.admitted,
        all.denied,
        decider.failures() - failures,
        latencies.join(",")
    ))
}

/// One task's `share` of the decisions, each for a subject drawn by `rng`
/// from the first `subjects` names.
async fn one_task(
    decider: Decider,
    names: Arc<Vec<String>>,
    subjects: usize,
    share: usize,
    mut rng: crate::item::Rng,
) -> Result<Done> {
    let mut done = Done {
        latencies: Vec::with_capacity(share),
        ..Done::default()
    };
    for _ in 0..share {
        let subject = &names[rng.below(subjects)];
        let t = Instant::now();
        let admitted = decider.decide(subject).await?;
        done.latencies
            .push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        match admitted {
            true => done.admitted += 1,
            false => done.denied += 1,
        }
    }
    Ok(done)
}

/// This process's CPU time so far, user + system, in µs (`/proc/self/stat`,
/// whose clock ticks are 10 ms: summed over rounds and processes, good to a
/// few percent).
fn cpu_us() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').ok_or("odd /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks =
        |i: usize| -> Result<u64> { Ok(fields.get(i).ok_or("short /proc/self/stat")?.parse()?) };
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 here.
    Ok((ticks(11)? + ticks(12)?) * 10_000)
}
