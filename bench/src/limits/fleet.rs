//! The parent's side of the client processes ([`super::child`]): starts
//! them (this same binary with `limits --child`), hands every one the same
//! command at once and merges their answers into one [`Sample`].

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::Result;
use crate::measure::Sample;

/// What the processes did in one run besides the sample.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) admitted: u64,
    pub(crate) denied: u64,
    pub(crate) failures: u64,
    /// The client processes' CPU time, µs.
    pub(crate) cpu_us: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, other: Counts) {
        self.admitted += other.admitted;
        self.denied += other.denied;
        self.failures += other.failures;
        self.cpu_us += other.cpu_us;
    }
}

struct Process {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The running client processes; killed on drop.
pub(crate) struct Fleet {
    processes: Vec<Process>,
}

impl Fleet {
    /// Starts `n` processes with `tasks` tasks each on the server at `url`
    /// and waits until every one has connected.
    pub(crate) fn start(n: usize, tasks: usize, subjects: usize, url: &str) -> Result<Fleet> {
        let exe = std::env::current_exe()?;
        let mut fleet = Fleet {
            processes: Vec::with_capacity(n),
        };
        for id in 0..n {
            let mut child = Command::new(&exe)
                .args(["limits", "--child", &id.to_string(), "--url", url])
                .args(["--tasks", &tasks.to_string()])
                .args(["--subjects", &subjects.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let stdin = child.stdin.take().ok_or("no stdin")?;
            let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
            fleet.processes.push(Process {
                child,
                stdin,
                stdout,
            });
        }
        for p in &mut fleet.processes {
            let line = read_line(&mut p.stdout)?;
            if line.trim() != "ready" {
                return Err(format!("a client process said {line:?} instead of ready").into());
            }
        }
        Ok(fleet)
    }

    /// Every process runs `decisions` of `side` over `subjects` subjects.
    /// The sample's wall time is the slowest process's: they start within
    /// microseconds of each other, as fast as four pipe writes go.
    pub(crate) fn run(
        &mut self,
        side: &str,
        subjects: usize,
        decisions: usize,
        round: usize,
    ) -> Result<(Sample, Counts)> {
        let command = format!("run {side} {subjects} {decisions} {round}\n");
        for p in &mut self.processes {
            p.stdin.write_all(command.as_bytes())?;
            p.stdin.flush()?;
        }
        let mut sample = Sample {
            wall: Duration::ZERO,
            latencies: Vec::with_capacity(decisions * self.processes.len()),
            units: 0,
        };
        let mut counts = Counts::default();
        for p in &mut self.processes {
            let (wall, done) = parse(&read_line(&mut p.stdout)?, &mut sample.latencies)?;
            sample.wall = sample.wall.max(wall);
            sample.units += done.admitted + done.denied;
            counts.add(done);
        }
        Ok((sample, counts))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn read_line(from: &mut BufReader<ChildStdout>) -> Result<String> {
    let mut line = String::new();
    if from.read_line(&mut line)? == 0 {
        return Err("a client process exited".into());
    }
    Ok(line)
}

/// Reads an `ok` line, appending its latencies to `latencies`.
fn parse(line: &str, latencies: &mut Vec<Duration>) -> Result<(Duration, Counts)> {
    let Some(rest) = line.trim_end().strip_prefix("ok ") else {
        return Err(format!("client process: {}", line.trim_end()).into());
    };
    let mut words = rest.splitn(6, ' ');
    let mut number = || -> Result<u64> { Ok(words.next().ok_or("short reply")?.parse()?) };
    let wall = Duration::from_nanos(number()?);
    let counts = Counts {
        admitted: number()?,
        denied: number()?,
        failures: number()?,
        cpu_us: number()?,
    };
    for ns in words
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
    {
        latencies.push(Duration::from_nanos(ns.parse()?));
    }
    Ok((wall, counts))
}
