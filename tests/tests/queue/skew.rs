//! A producer whose clock is five minutes fast or slow (libfaketime
//! preloaded into a child process) schedules delayed jobs: they start after
//! their delay on the Redis server's clock, neither at once nor five minutes
//! late, because no queue decision reads the application's clock.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reposmith::queue::{Queue, Worker};
use reposmith::{RedisBackend, RedisConfig};

use super::{Task, redis};

const URL: &str = "REPOSMITH_SKEW_REDIS_URL";
const DELAY: Duration = Duration::from_millis(1500);

/// The child: print its wall clock, enqueue one delayed job, say so.
#[tokio::test]
#[ignore = "run by the clock-skew test as a child process"]
async fn skewed_producer() {
    let Ok(url) = std::env::var(URL) else {
        return;
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    println!("CLOCK {}", now.as_millis());
    let backend = RedisBackend::connect(&RedisConfig::new(url)).await.unwrap();
    let queue = Queue::<Task>::new(&backend).unwrap();
    queue.enqueue_in(&Task::new(7), DELAY).await.unwrap();
    println!("ENQUEUED");
}

/// Runs the child with its clock moved by `skew` ("+5m", "-5m"); returns
/// its wall clock minus ours in seconds and when it enqueued.
fn run_skewed(skew: &str, url: &str) -> (i64, Instant) {
    let library = std::env::var("REPOSMITH_LIBFAKETIME").unwrap_or_else(|_| {
        panic!(
            "REPOSMITH_LIBFAKETIME is not set: run the suite with `cargo xtask test`, whose \
             services venv installs libfaketime (see `cargo xtask services env`)"
        )
    });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "queue::skew::skewed_producer",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(URL, url)
        .env("LD_PRELOAD", library)
        .env("FAKETIME", skew)
        // tokio's timers run on the monotonic clock: leave it alone.
        .env("DONT_FAKE_MONOTONIC", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ours = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (sent, received) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("CLOCK") || line == "ENQUEUED" {
                let _ = sent.send((line, Instant::now()));
            }
        }
    });
    let (clock, _) = received.recv_timeout(Duration::from_secs(30)).unwrap();
    let (_, enqueued) = received.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(child.wait().unwrap().success());
    let theirs: i64 = clock.trim_start_matches("CLOCK ").parse().unwrap();
    ((theirs - ours) / 1000, enqueued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_start_on_the_server_clock_whatever_the_producer_clock() {
    let (server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    let (started, mut starts) = tokio::sync::mpsc::unbounded_channel();
    let worker = Worker::new(queue.clone())
        .concurrency(2)
        .run(move |_ctx| {
            let started = started.clone();
            async move {
                let _ = started.send(Instant::now());
                Ok(())
            }
        })
        .await
        .unwrap();
    for (skew, seconds) in [("+5m", 300), ("-5m", -300)] {
        let (measured, enqueued) = run_skewed(skew, &server.url());
        assert!(
            (measured - seconds).abs() < 30,
            "the child's clock is off by {measured} s, not {seconds} s: libfaketime did not take"
        );
        let start = tokio::time::timeout(Duration::from_secs(20), starts.recv())
            .await
            .unwrap_or_else(|_| panic!("{skew}: the job did not start within 20 s"))
            .unwrap();
        let after = start.duration_since(enqueued);
        println!("producer clock {skew}: job started {after:?} after it was enqueued");
        assert!(
            after >= DELAY - Duration::from_millis(100),
            "{skew}: started early, after {after:?}"
        );
        assert!(
            after < DELAY + Duration::from_secs(10),
            "{skew}: started late, after {after:?}"
        );
    }
    worker.shutdown(Duration::from_secs(5)).await;
    drop(backend);
}
