//! SIGTERM to a worker process with jobs in flight: the process stops
//! fetching, lets quick jobs finish, hands slow ones back to the queue by
//! its deadline and exits cleanly; another worker then runs what was handed
//! back, so every job completes once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reposmith::queue::{Queue, Worker};
use reposmith::{RedisBackend, RedisConfig};

use super::{Task, redis, wait_for_stats};

const URL: &str = "REPOSMITH_SIGTERM_REDIS_URL";
/// How long a worker lets running jobs finish after SIGTERM.
const GRACE: Duration = Duration::from_millis(800);

/// The child: a worker whose even jobs take 200 ms and odd ones 30 s; on
/// SIGTERM it shuts down with `GRACE` and prints what it handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the SIGTERM test as a child process"]
async fn worker_child() {
    let Ok(url) = std::env::var(URL) else {
        return;
    };
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let backend = RedisBackend::connect(&RedisConfig::new(url)).await.unwrap();
    let worker = Worker::new(Queue::<Task>::new(&backend).unwrap())
        .concurrency(6)
        .run(|ctx| async move {
            let slow = ctx.job().n % 2 == 1;
            let pause = if slow { 30_000 } else { 200 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
            Ok(())
        })
        .await
        .unwrap();
    println!("READY");
    terminate.recv().await;
    let report = worker.shutdown(GRACE).await;
    println!(
        "STOPPED finished={} released={} left_leased={}",
        report.finished,
        report.released.len(),
        report.left_leased.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_or_hands_back_every_running_job_by_the_deadline() {
    let (server, backend) = redis().await;
    let queue = Queue::<Task>::new(&backend).unwrap();
    queue
        .enqueue_many(&(0..6).map(Task::new).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "queue::sigterm::worker_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(URL, server.url())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (sent, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sent.send(line);
        }
    });
    let wait_line = |prefix: &str| loop {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect(prefix);
        if line.starts_with(prefix) {
            return line;
        }
    };
    wait_line("READY");
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.active == 6).await;
    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stopped = wait_line("STOPPED");
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    println!("{stopped} after {took:?}");
    assert!(status.success(), "the worker exited cleanly: {status:?}");
    assert!(
        took < GRACE + Duration::from_secs(5),
        "stopped within its deadline: {took:?}"
    );
    assert_eq!(stopped, "STOPPED finished=3 released=3 left_leased=0");

    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.completed, stats.waiting, stats.active),
        (3, 3, 0),
        "{stats:?}"
    );
    // Another worker runs what was handed back (quickly this time).
    let worker = Worker::new(queue.clone())
        .concurrency(3)
        .run(|_ctx| async { Ok(()) })
        .await
        .unwrap();
    wait_for_stats(&queue, Duration::from_secs(10), |s| s.completed == 6).await;
    worker.shutdown(Duration::from_secs(2)).await;
    drop(backend);
}
