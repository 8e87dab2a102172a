//! Step 14 of the quickstart: the gateway's rate limits for one tenant.
//!
//! A chat call costs tokens, which the model provider bills and throttles
//! on. Before each call the gateway reserves the prompt's tokens plus
//! `max_tokens` against every limit of the tenant's policy at once; after
//! the call it reconciles with the tokens really used, so the unused part
//! of the estimate goes back. When the tokens-per-minute limit is spent the
//! decision says which limit denied, when to retry, and carries the HTTP
//! headers a 429 answer would send.

use std::time::Duration;

use reposmith::limit::{Limit, LimiterOptions, Policy, Window};
use reposmith::{Error, RedisBackend, Result};

/// Tokens in each call's prompt.
const PROMPT: u64 = 1_200;
/// The `max_tokens` each call asks the model for.
const MAX_TOKENS: u64 = 2_000;
/// Tokens each answer really takes.
const ANSWER: u64 = 900;

/// Runs calls for one tenant until its tokens-per-minute limit denies one,
/// printing each decision and the denial's headers.
pub async fn token_budget(redis: &RedisBackend) -> Result<()> {
    let policy = Policy::new("chat")
        .with(Limit::requests("rpm", 60, Duration::from_secs(60)))
        .with(Limit::tokens("tpm", 10_000, Duration::from_secs(60)))
        .with(Limit::concurrency("inflight", 4))
        .with(Limit::quota("daily", 200_000, Window::Day));
    let limiter = redis.limiter(policy, LimiterOptions::fail_closed().prefix("quickstart"))?;
    let tenant = "tenant-acme";
    // The demo runs again and again: start the tenant from full limits.
    limiter.reset(tenant).await?;
    println!(
        "14. rate limits for {tenant}: 60 requests/min, 10,000 tokens/min, 4 in flight, \
         200,000 tokens/day, all checked in one Redis script"
    );
    for call in 1..=10 {
        let mut decision = limiter.reserve(tenant, PROMPT + MAX_TOKENS).await?;
        // An admitted reservation holds a lease; a denied one holds nothing.
        let Some(lease) = decision.lease.take() else {
            println!(
                "    call {call}: denied by {}: retry after {:.1?}; nothing was charged \
                 ({} requests/min still left)",
                decision.denied_by().unwrap_or("?"),
                decision.retry_after,
                decision.status("rpm").map_or(0, |s| s.remaining),
            );
            for (name, value) in decision.headers() {
                println!("      {name}: {value}");
            }
            return match decision.denied_by() {
                Some("tpm") if call == 5 => Ok(()),
                other => Err(Error::config(
                    "quickstart",
                    format!("call {call} denied by {other:?}; expected call 5 by tpm"),
                )),
            };
        };
        let settled = limiter.reconcile(&lease, PROMPT + ANSWER).await?;
        let tpm_left = decision.status("tpm").map_or(0, |s| s.remaining);
        println!(
            "    call {call}: reserved {} tokens, used {}: {} refunded, {} tokens/min left",
            PROMPT + MAX_TOKENS,
            PROMPT + ANSWER,
            -settled.charged,
            tpm_left + (-settled.charged).max(0) as u64,
        );
    }
    Err(Error::config(
        "quickstart",
        "ten calls were admitted; the tokens-per-minute limit never denied",
    ))
}
