//! The limiter's script on the shared Redis (`REDIS_URL`), every test under
//! a prefix of its own: GCRA arithmetic, all-or-nothing, quotas, leases,
//! reservations, headers, bad input, `NOSCRIPT`, and a TTL on every key.

use std::time::Duration;

use reposmith::limit::{Decision, Denial, Limit, Limiter, LimiterOptions, Policy, Source, Window};
use reposmith::{Error, RedisBackend, RedisConfig};
use reposmith_core::limit::gcra::window_of;
use reposmith_tests::{redis_url, unique_name};

pub(crate) async fn backend() -> RedisBackend {
    let config = RedisConfig::new(redis_url());
    RedisBackend::connect(&config)
        .await
        .expect("connect to Redis")
}

/// Options under a prefix no other test uses.
pub(crate) fn options() -> LimiterOptions {
    LimiterOptions::fail_closed().prefix(unique_name("lim"))
}

async fn limiter(policy: Policy) -> (RedisBackend, Limiter) {
    let redis = backend().await;
    let limiter = redis.limiter(policy, options()).expect("a valid policy");
    (redis, limiter)
}

fn minute() -> Duration {
    Duration::from_secs(60)
}

/// Scans every key under `prefix` and asserts none lacks a TTL. `PTTL` is
/// -1 for a key without one; 0 (under a millisecond left) and -2 (expired
/// between `SCAN` and `PTTL`) are keys that expire. Returns how many
/// distinct keys there were (`SCAN` may return one twice).
pub(crate) async fn assert_every_key_expires(redis: &RedisBackend, prefix: &str) -> usize {
    let mut conn = redis.connection();
    let pattern = format!("{{{prefix}:*");
    let mut keys = std::collections::HashSet::new();
    let mut cursor = 0u64;
    // Bounded: a few hundred keys under a prefix, 1,000 looked at per step.
    for _ in 0..100_000 {
        let (next, batch): (u64, Vec<String>) = reposmith::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            for key in &keys {
                let ttl: i64 = reposmith::redis::cmd("PTTL")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert_ne!(ttl, -1, "{key} has no TTL");
            }
            return keys.len();
        }
        cursor = next;
    }
    panic!("SCAN {pattern} did not end");
}

fn admitted(d: &Decision) -> bool {
    d.allowed && d.source == Source::Server
}

#[tokio::test]
async fn a_burst_is_admitted_then_calls_wait_one_interval_each() {
    let (redis, limiter) =
        limiter(Policy::new("api").with(Limit::requests("rpm", 60, minute()).burst(3))).await;
    for left in [2, 1, 0] {
        let d = limiter.check("t1", 1).await.unwrap();
        assert!(admitted(&d), "{d:?}");
        assert_eq!(d.remaining, left);
    }
    let denied = limiter.check("t1", 1).await.unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.denied_by(), Some("rpm"));
    assert!(
        denied.retry_after > Duration::from_millis(900)
            && denied.retry_after <= Duration::from_secs(1),
        "one interval (1 s) minus the time the calls took: {:?}",
        denied.retry_after
    );
    assert_eq!(denied.retry_after_header(), Some(1));
    assert!(
        limiter.check("t2", 1).await.unwrap().allowed,
        "subjects are independent"
    );
    assert_eq!(
        assert_every_key_expires(&redis, &limiter.options().prefix).await,
        2
    );
}

#[tokio::test]
async fn nothing_is_charged_when_one_limit_refuses() {
    let (_redis, limiter) = limiter(
        Policy::new("llm")
            .with(Limit::requests("rpm", 100, minute()))
            .with(Limit::tokens("tpm", 1_000, minute())),
    )
    .await;
    assert!(limiter.check("t", 900).await.unwrap().allowed);
    let denied = limiter.check("t", 200).await.unwrap();
    assert_eq!(denied.denied_by(), Some("tpm"), "{denied:?}");
    let rpm = &denied.limits[0];
    assert!(
        rpm.admitted && rpm.remaining == 99,
        "rpm judged but not charged: {rpm:?}"
    );
    let next = limiter.check("t", 100).await.unwrap();
    assert!(next.allowed);
    assert_eq!(
        next.limits[0].remaining, 98,
        "the refused call took no request"
    );
    assert_eq!(next.limits[1].remaining, 0);
}

#[tokio::test]
async fn a_quota_counts_cost_until_its_window_ends() {
    let (_redis, limiter) =
        limiter(Policy::new("q").with(Limit::quota("daily", 10_000, Window::Day))).await;
    assert!(limiter.check("t", 6_000).await.unwrap().allowed);
    let denied = limiter.check("t", 5_000).await.unwrap();
    assert_eq!(denied.denied_by(), Some("daily"));
    assert_eq!(denied.remaining, 4_000);
    let now = denied.decided_at_us.unwrap();
    let (_, end) = window_of(Window::Day, now);
    let expected = Duration::from_micros((end - now) as u64);
    assert_eq!(denied.retry_after, expected, "until 00:00 UTC");
    assert!(limiter.check("t", 4_000).await.unwrap().allowed);
}

#[tokio::test]
async fn the_server_calendar_matches_the_rust_calendar() {
    let redis = backend().await;
    // Month ends, a leap February, a century and the epoch.
    let instants = [
        "1970-01-01T00:00:00Z",
        "2000-02-29T12:00:00Z",
        "2024-02-29T23:59:59.999999Z",
        "2026-12-31T23:59:59Z",
        "2027-01-01T00:00:00Z",
        "2100-03-01T00:00:00Z",
    ];
    for text in instants {
        let at = chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros();
        let server = reposmith_redis::limit::month_window_on_server(&redis, at)
            .await
            .unwrap();
        assert_eq!(server, window_of(Window::Month, at), "{text}");
    }
}

#[tokio::test]
async fn permits_are_leases_renewed_released_or_expired_on_the_server_clock() {
    let redis = backend().await;
    let limiter = redis
        .limiter(
            Policy::new("c").with(Limit::concurrency("inflight", 2)),
            options().lease_ttl(Duration::from_millis(300)),
        )
        .unwrap();
    let a = limiter.acquire("t").await.unwrap();
    let b = limiter.acquire("t").await.unwrap();
    assert!(a.allowed && b.allowed);
    let full = limiter.acquire("t").await.unwrap();
    assert_eq!(full.denied_by(), Some("inflight"));
    assert!(full.retry_after <= Duration::from_millis(300));
    let a = a.lease.unwrap();
    let mut b = b.lease.unwrap();
    assert!(a.holds_permit() && !a.is_local());
    assert!(limiter.release(&a).await.unwrap());
    assert!(
        !limiter.release(&a).await.unwrap(),
        "a second release finds nothing"
    );
    let c = limiter.acquire("t").await.unwrap();
    assert!(c.allowed, "the released permit is free again");
    // b is renewed past c's expiry; c, never released, frees itself.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = b.expires_at();
    assert!(limiter.renew(&mut b).await.unwrap());
    assert!(b.expires_at() > before);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let d = limiter.acquire("t").await.unwrap();
    assert!(d.allowed, "c's lease ended on the server's clock: {d:?}");
    assert!(
        !limiter.acquire("t").await.unwrap().allowed,
        "b still holds its permit"
    );
    let mut c = c.lease.unwrap();
    assert!(
        !limiter.renew(&mut c).await.unwrap(),
        "an ended lease cannot be renewed"
    );
    assert_every_key_expires(&redis, &limiter.options().prefix).await;
}

#[tokio::test]
async fn reservations_reconcile_to_the_real_usage() {
    let (redis, limiter) = limiter(
        Policy::new("tok")
            .with(Limit::tokens("tpm", 10_000, Duration::from_secs(3600)))
            .with(Limit::quota("daily", 50_000, Window::Day)),
    )
    .await;
    let d = limiter.reserve("t", 8_000).await.unwrap();
    assert!(d.allowed);
    let lease = d.lease.unwrap();
    assert_eq!(lease.reserved(), 8_000);
    assert_eq!(
        limiter.check("t", 3_000).await.unwrap().denied_by(),
        Some("tpm")
    );
    let settled = limiter.reconcile(&lease, 2_500).await.unwrap();
    assert!(settled.settled);
    assert_eq!(settled.charged, -5_500);
    let after = limiter.check("t", 3_000).await.unwrap();
    assert!(after.allowed, "the refund made room: {after:?}");
    assert_eq!(after.limits[1].remaining, 50_000 - 2_500 - 3_000);
    let again = limiter.reconcile(&lease, 1).await.unwrap();
    assert!(
        !again.settled && again.charged == 0,
        "a reservation settles once"
    );
    // A charge above the estimate is taken even past the limit: the
    // tokens were spent.
    let big = limiter.reserve("u", 1_000).await.unwrap().lease.unwrap();
    assert_eq!(
        limiter.reconcile(&big, 12_000).await.unwrap().charged,
        11_000
    );
    assert_eq!(
        limiter.check("u", 1).await.unwrap().denied_by(),
        Some("tpm")
    );
    assert_every_key_expires(&redis, &limiter.options().prefix).await;
}

#[tokio::test]
async fn an_unreconciled_reservation_expires_settled_at_its_estimate() {
    let redis = backend().await;
    let limiter = redis
        .limiter(
            Policy::new("tok")
                .with(Limit::tokens("tpm", 1_000, Duration::from_secs(3600)))
                .with(Limit::concurrency("inflight", 1)),
            options().lease_ttl(Duration::from_millis(200)),
        )
        .unwrap();
    let lease = limiter.reserve("t", 600).await.unwrap().lease.unwrap();
    assert!(lease.holds_permit());
    assert_eq!(
        limiter.check("t", 1).await.unwrap().denied_by(),
        Some("inflight")
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let next = limiter.check("t", 400).await.unwrap();
    assert!(
        next.allowed,
        "the crashed holder's permit freed itself: {next:?}"
    );
    assert_eq!(next.limits[0].remaining, 0, "its 600 stayed charged");
    let late = limiter.reconcile(&lease, 100).await.unwrap();
    assert!(!late.settled, "too late to reconcile");
}

#[tokio::test]
async fn decisions_render_the_rate_limit_headers() {
    let (_redis, limiter) = limiter(
        Policy::new("chat")
            .with(Limit::requests("rpm", 2, minute()))
            .with(Limit::tokens("tpm", 9_000, minute())),
    )
    .await;
    let ok = limiter.check("t", 1_000).await.unwrap();
    let headers = ok.headers();
    assert_eq!(
        headers.len(),
        2,
        "no Retry-After when admitted: {headers:?}"
    );
    assert_eq!(
        headers[0],
        (
            "RateLimit-Policy",
            "\"chat.rpm\";q=2;qu=\"requests\";w=60, \"chat.tpm\";q=9000;w=60".to_owned()
        )
    );
    assert!(
        headers[1]
            .1
            .starts_with("\"chat.rpm\";r=1;t=30, \"chat.tpm\";r=8000;t="),
        "{headers:?}"
    );
    limiter.check("t", 1).await.unwrap();
    let denied = limiter.check("t", 1).await.unwrap();
    let retry = denied
        .headers()
        .into_iter()
        .find(|(k, _)| *k == "Retry-After");
    assert_eq!(
        retry,
        Some(("Retry-After", "30".to_owned())),
        "30 s rounded up"
    );
}

#[tokio::test]
async fn bad_input_is_a_typed_error_naming_the_argument() {
    let (_redis, limiter) =
        limiter(Policy::new("p").with(Limit::tokens("tpm", 1_000, minute()).burst(500))).await;
    let field = |e: Error| match e {
        Error::InvalidInput { field, .. } => field,
        other => panic!("not InvalidInput: {other}"),
    };
    assert_eq!(field(limiter.check("", 1).await.unwrap_err()), "subject");
    assert_eq!(
        field(limiter.check(&"x".repeat(513), 1).await.unwrap_err()),
        "subject"
    );
    assert_eq!(field(limiter.check("t", 0).await.unwrap_err()), "cost");
    let over = limiter.check("t", 501).await.unwrap_err();
    assert!(
        matches!(&over, Error::ExceedsCapacity { limit, cost: 501, capacity: 500, .. } if limit == "tpm"),
        "{over}"
    );
    assert!(
        matches!(limiter.acquire("t").await, Err(Error::Config { .. })),
        "no permits to acquire"
    );
    let redis = backend().await;
    for policy in [
        Policy::new("p"),
        Policy::new("p").with(Limit::requests("rpm", 0, minute())),
        Policy::new("p p").with(Limit::requests("rpm", 1, minute())),
    ] {
        assert!(matches!(
            redis.limiter(policy, options()),
            Err(Error::Config { .. })
        ));
    }
}

#[tokio::test]
async fn hostile_subjects_are_escaped_into_one_slot() {
    let (redis, limiter) =
        limiter(Policy::new("p").with(Limit::requests("rpm", 1, minute()))).await;
    for subject in ["*", "a}{b", "user:1\r\nFLUSHALL", "\u{0}", "ü"] {
        assert!(
            limiter.check(subject, 1).await.unwrap().allowed,
            "{subject:?}"
        );
        assert!(
            !limiter.check(subject, 1).await.unwrap().allowed,
            "{subject:?}"
        );
    }
    assert_eq!(
        assert_every_key_expires(&redis, &limiter.options().prefix).await,
        5
    );
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    let (redis, limiter) =
        limiter(Policy::new("p").with(Limit::requests("rpm", 100, minute()))).await;
    assert!(limiter.check("t", 1).await.unwrap().allowed);
    let mut conn = redis.connection();
    reposmith::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let d = limiter.check("t", 1).await.unwrap();
    assert!(admitted(&d), "NOSCRIPT answered by EVAL: {d:?}");
    assert_eq!(d.remaining, 98);
}

#[tokio::test]
async fn a_denied_subject_is_answered_locally_until_its_retry_after() {
    let (_redis, limiter) =
        limiter(Policy::new("p").with(Limit::tokens("tpm", 1_000, minute()))).await;
    assert!(limiter.check("t", 1_000).await.unwrap().allowed);
    let first = limiter.check("t", 500).await.unwrap();
    assert_eq!(first.source, Source::Server);
    let cached = limiter.check("t", 600).await.unwrap();
    assert_eq!(
        cached.source,
        Source::DenyCache,
        "a larger cost is denied locally"
    );
    assert!(!cached.allowed && cached.retry_after <= first.retry_after);
    let smaller = limiter.check("t", 10).await.unwrap();
    assert_eq!(
        smaller.source,
        Source::Server,
        "a smaller cost may fit sooner: asked"
    );
    assert_eq!(limiter.stats().deny_cache_hits, 1);
    limiter.reset("t").await.unwrap();
    assert!(
        limiter.check("t", 600).await.unwrap().allowed,
        "a reset clears the deny cache"
    );
}

#[tokio::test]
async fn fail_closed_denies_with_a_typed_reason_when_redis_is_unreachable() {
    let port = reposmith_tests::closed_port();
    let config = RedisConfig::new(format!("redis://127.0.0.1:{port}")).lazy(true);
    let redis = RedisBackend::connect(&config).await.unwrap();
    let limiter = redis
        .limiter(
            Policy::new("p").with(Limit::requests("rpm", 10, minute())),
            options(),
        )
        .unwrap();
    let started = std::time::Instant::now();
    let d = limiter.check("t", 1).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded: {:?}",
        started.elapsed()
    );
    assert!(!d.allowed);
    assert!(
        matches!(d.denied, Some(Denial::Unavailable { .. })),
        "{d:?}"
    );
    assert_eq!(d.source, Source::Nobody);
    assert!(d.retry_after_header().is_some());
}

#[tokio::test]
async fn a_late_refund_gives_back_only_what_has_not_drained() {
    // 100 per 100 ms, burst 100: a full burst drains in 100 ms.
    let (_redis, limiter) =
        limiter(Policy::new("p").with(Limit::tokens("t", 100, Duration::from_millis(100)))).await;
    let lease = limiter.reserve("s", 100).await.unwrap().lease.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        limiter.check("s", 100).await.unwrap().allowed,
        "drained: a full burst again"
    );
    let settled = limiter.reconcile(&lease, 0).await.unwrap();
    assert!(settled.settled && settled.charged == -100);
    let again = limiter.check("s", 100).await.unwrap();
    assert!(
        !again.allowed,
        "the reservation's charge had drained: refunding it would admit a second burst at once"
    );
}

#[tokio::test]
async fn a_permit_is_released_not_reconciled() {
    let (_redis, limiter) = limiter(
        Policy::new("p")
            .with(Limit::requests("rpm", 10, minute()))
            .with(Limit::concurrency("inflight", 1)),
    )
    .await;
    let lease = limiter.check("s", 1).await.unwrap().lease.unwrap();
    let err = limiter.reconcile(&lease, 1).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "lease"),
        "{err}"
    );
    assert!(limiter.release(&lease).await.unwrap());
}
