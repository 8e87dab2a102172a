//! The in-run baseline: one GCRA limit on one key per subject, judged by a
//! short Lua script on the server's clock, in the manner of go-redis'
//! `redis_rate` (itself after redis-gcra): `GET` the theoretical arrival
//! time, move it by the cost's emission intervals, `SET` it with a TTL when
//! the call fits. Written for this bench; what it leaves out against
//! reposmith's script is the point of the comparison: no permits, no
//! quotas, no several limits, one key and two commands.

use std::sync::LazyLock;

use redis::{Script, Value};
use reposmith::RedisConnection;

use crate::Result;

/// `KEYS[1]` the TAT (µs since the script's epoch, a decimal); `ARGV`:
/// emission interval µs, burst, cost. Returns `{allowed, remaining,
/// retry-after µs, reset-after µs}`. The epoch is moved to 2024 so the µs
/// clock stays well inside a double's exact integers.
const SOURCE: &str = r"
local interval, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = (tonumber(clock[1]) - 1704067200) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + cost * interval
local allow_at = next_tat - burst * interval
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
local reset = next_tat - now
redis.call('SET', KEYS[1], string.format('%.17g', next_tat), 'PX', math.max(math.ceil(reset / 1000), 1))
return {1, math.floor((now - allow_at) / interval), 0, math.ceil(reset)}
";

/// The script's SHA-1, hashed once.
static HASH: LazyLock<String> = LazyLock::new(|| Script::new(SOURCE).get_hash().to_owned());

/// One limit of `limit` per `period_us` with a burst of `burst`, on a
/// connection of the same kind reposmith's limiter uses (the backend's
/// shared, multiplexed one).
#[derive(Clone)]
pub(crate) struct RedisRate {
    conn: RedisConnection,
    interval_us: f64,
    burst: u64,
}

impl RedisRate {
    pub(crate) fn new(conn: RedisConnection, limit: u64, period_us: u64, burst: u64) -> RedisRate {
        RedisRate {
            conn,
            interval_us: period_us as f64 / limit as f64,
            burst,
        }
    }

    /// Charges `cost` to `subject`: `EVALSHA`, `EVAL` on `NOSCRIPT`, as
    /// reposmith's store does. True when admitted.
    pub(crate) async fn allow(&self, subject: &str, cost: u64) -> Result<bool> {
        let key = format!("rate:{subject}");
        let call = |verb: &str, body: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(body)
                .arg(1)
                .arg(&key)
                .arg(self.interval_us)
                .arg(self.burst)
                .arg(cost);
            cmd
        };
        let mut conn = self.conn.clone();
        let reply: Value = match call("EVALSHA", &HASH).query_async(&mut conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                call("EVAL", SOURCE).query_async(&mut conn).await?
            }
            other => other?,
        };
        match reply {
            Value::Array(items) => Ok(matches!(items.first(), Some(Value::Int(1)))),
            other => Err(format!("redis_rate script: unexpected reply {other:?}").into()),
        }
    }
}
