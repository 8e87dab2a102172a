//! The queue's Lua scripts. Each runs atomically on the server, reads "now"
//! from the server's `TIME` (never the application's clock) and receives the
//! queue's fixed keys as `KEYS[1..7]` (wait, delayed, active, dead, seq,
//! signal, stats) and the key prefix as `ARGV[1]`.
//!
//! Each runs as `EVALSHA`; on `NOSCRIPT` (a restarted server, a replica
//! promoted by a cluster failover: an empty script cache) it is sent once
//! as `EVAL` with its source, which also caches it on that server. Both go
//! to the one node owning the queue's slot: `SCRIPT LOAD` would go to every
//! node of a cluster and fail while one is down.
//!
//! Job hash fields: `payload`, `attempts` (started attempts), `max_attempts`,
//! `backoff_base`, `backoff_max`, `timeout` (ms), `priority`, `key` (the
//! idempotency key or empty), `token` (fencing token, bumped on every lease
//! and every reclaim), `seq` (FIFO position), `enqueued_at`, `last_error`,
//! `died_at`, and `tenant` (the tenant's setting text) on a tenant's job
//! only: a job enqueued before jobs carried tenants, or for no tenant, has
//! no such field and is read as a job of no tenant.

use std::sync::LazyLock;

pub(crate) use crate::lua::Lua;

/// Helpers every script starts with.
macro_rules! prelude {
    () => {
        r#"
local PRI = 4398046511104 -- 2^42: priority above, FIFO sequence below
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function wait_score(priority, seq)
  return tonumber(priority) * PRI + (tonumber(seq) % PRI)
end
-- Wakes up to n blocked fetchers; the list is a hint, kept short.
local function signal(n)
  if n <= 0 then return end
  -- A long list already wakes every fetcher: nothing to add (the common
  -- case under load, one cheap LLEN instead of a push and a trim).
  local room = 64 - redis.call('LLEN', KEYS[6])
  if n > room then n = room end
  if n <= 0 then return end
  -- One RPUSH of n elements, not n calls.
  local ones = {}
  for i = 1, n do ones[i] = '1' end
  redis.call('RPUSH', KEYS[6], unpack(ones))
end
local function job_key(id) return ARGV[1] .. 'job:' .. id end
-- True when `id` is leased and `token` is its current fencing token.
local function owned(id, token)
  if not redis.call('ZSCORE', KEYS[3], id) then return false end
  return redis.call('HGET', job_key(id), 'token') == token
end
-- The marker key of an idempotency key: a tenant's job's is its tenant's
-- (a tenant holds no newline, so the pair is unambiguous), so two tenants'
-- jobs never dedupe each other; a job of no tenant keeps the key alone.
local function dedup_key(key, tenant)
  if tenant and tenant ~= '' then key = tenant .. '\n' .. key end
  return ARGV[1] .. 'dedup:' .. redis.sha1hex(key)
end
-- Frees the idempotency key of job `id` if `id` still holds it: the key
-- dedupes only while its job is pending, so a later job with it is new.
local function release_key(id)
  local f = redis.call('HMGET', job_key(id), 'key', 'tenant')
  if not f[1] or f[1] == '' then return end
  local dk = dedup_key(f[1], f[2])
  if redis.call('GET', dk) == id then redis.call('DEL', dk) end
end
local function bury(id, now, err)
  release_key(id)
  redis.call('HSET', job_key(id), 'last_error', err, 'died_at', now)
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('HINCRBY', KEYS[7], 'dead', 1)
end
"#
    };
}

/// Enqueues a batch. `ARGV[2]` dedup window (ms), `ARGV[3]` count, `ARGV[4]`
/// `1` when the ids came from the caller (an outbox relay: a second
/// delivery of an id is a duplicate, so ids are checked and remembered for
/// the window) or `0` when the queue made them just now (fresh UUIDs: no
/// check, and no marker key per job), then 11 fields per job: id, payload, max_attempts, backoff_base, backoff_max,
/// timeout, priority, key ('' for none), start kind (now|after|at), start
/// value (ms), tenant ('' for none). Returns `status, id` per job: `new` with the job's id, or
/// `duplicate` with the id of the job already enqueued (the same id, or the
/// one holding the idempotency key).
pub(crate) static ENQUEUE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local caller_ids = ARGV[4] == '1'
local now = now_ms()
local out = {}
local woken, deduped = 0, 0
for i = 0, n - 1 do
  local b = 5 + i * 11
  local id = ARGV[b]
  local key = ARGV[b + 7]
  local tenant = ARGV[b + 10]
  local jk = job_key(id)
  local idk = ARGV[1] .. 'id:' .. id
  local status, holder = 'new', id
  if caller_ids and redis.call('EXISTS', jk, idk) > 0 then
    status = 'duplicate'
  elseif key ~= '' then
    local dk = dedup_key(key, tenant)
    local prior = redis.call('GET', dk)
    if prior then
      status, holder = 'duplicate', prior
    else
      redis.call('SET', dk, id, 'PX', window)
    end
  end
  if status == 'duplicate' then
    deduped = deduped + 1
  else
    if caller_ids then redis.call('SET', idk, '1', 'PX', window) end
    local seq = redis.call('INCR', KEYS[5])
    local priority = tonumber(ARGV[b + 6])
    redis.call('HSET', jk, 'payload', ARGV[b + 1], 'attempts', 0,
      'max_attempts', ARGV[b + 2], 'backoff_base', ARGV[b + 3],
      'backoff_max', ARGV[b + 4], 'timeout', ARGV[b + 5], 'priority', priority,
      'key', key, 'token', 0, 'seq', seq, 'enqueued_at', now)
    if tenant ~= '' then redis.call('HSET', jk, 'tenant', tenant) end
    local kind, value = ARGV[b + 8], tonumber(ARGV[b + 9])
    local due = now
    if kind == 'after' then due = now + value elseif kind == 'at' then due = value end
    if due > now then
      redis.call('ZADD', KEYS[2], due, id)
    else
      redis.call('ZADD', KEYS[1], wait_score(priority, seq), id)
    end
    -- A delayed job wakes a fetcher too: it recomputes how long to sleep.
    woken = woken + 1
  end
  out[#out + 1] = status
  out[#out + 1] = holder
end
-- Counted once per call, not per job.
if woken > 0 then redis.call('HINCRBY', KEYS[7], 'enqueued', woken) end
if deduped > 0 then redis.call('HINCRBY', KEYS[7], 'deduped', deduped) end
signal(woken)
return out
"#
    ))
});

/// Leases up to `ARGV[3]` jobs for `ARGV[2]` ms. First reclaims up to
/// `ARGV[4]` expired leases (bumping their token so the stale owner can no
/// longer settle them; dead-lettered when out of attempts), then promotes up
/// to `ARGV[5]` due delayed jobs. Returns `next_due_ms` (-1: nothing delayed;
/// only computed when nothing was leased) followed by 11 fields per job: id,
/// attempts, token, payload, max_attempts, backoff_base, backoff_max,
/// timeout, priority, key, tenant (nil for none).
pub(crate) static FETCH: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local lease = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[3], id)
  local jk = job_key(id)
  if redis.call('EXISTS', jk) == 1 then
    redis.call('HINCRBY', jk, 'token', 1)
    redis.call('HINCRBY', KEYS[7], 'redelivered', 1)
    local f = redis.call('HMGET', jk, 'attempts', 'max_attempts', 'priority', 'seq')
    if tonumber(f[1]) >= tonumber(f[2]) then
      bury(id, now, 'lease expired (worker died or stalled)')
    else
      redis.call('ZADD', KEYS[1], wait_score(f[3], f[4]), id)
    end
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  local jk = job_key(id)
  if redis.call('EXISTS', jk) == 1 then
    -- Ready now: queued behind what was ready before it.
    local seq = redis.call('INCR', KEYS[5])
    redis.call('HSET', jk, 'seq', seq)
    redis.call('ZADD', KEYS[1], wait_score(redis.call('HGET', jk, 'priority'), seq), id)
  end
end
local out = {-1}
local got = 0
for _ = 1, want + 100 do
  if got >= want then break end
  local popped = redis.call('ZPOPMIN', KEYS[1], 1)
  if #popped == 0 then break end
  local id = popped[1]
  local jk = job_key(id)
  -- Every job hash has a payload: no payload, no job (read first, so no
  -- separate EXISTS).
  local f = redis.call('HMGET', jk, 'payload', 'max_attempts', 'backoff_base',
    'backoff_max', 'timeout', 'priority', 'key', 'attempts', 'token', 'tenant')
  if f[1] then
    -- Read above, written back in one command.
    local attempts = tonumber(f[8]) + 1
    local token = tonumber(f[9]) + 1
    redis.call('HSET', jk, 'attempts', attempts, 'token', token)
    redis.call('ZADD', KEYS[3], now + lease, id)
    out[#out + 1] = id
    out[#out + 1] = attempts
    out[#out + 1] = token
    for j = 1, 7 do out[#out + 1] = f[j] end
    out[#out + 1] = f[10]
    got = got + 1
  end
end
if got == 0 then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if #first > 0 then
    local wait = tonumber(first[2]) - now
    if wait < 0 then wait = 0 end
    out[1] = wait
  end
end
return out
"#
    ))
});

/// Extends the lease of job `ARGV[2]` held with token `ARGV[3]` to `ARGV[4]`
/// ms from now. Returns 1, or 0 when the lease was lost.
pub(crate) static RENEW: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
if not owned(ARGV[2], ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[3], now_ms() + tonumber(ARGV[4]), ARGV[2])
return 1
"#
    ))
});

/// Completes job `ARGV[2]` held with token `ARGV[3]`: its hash and its hold
/// on its idempotency key go, its id marker stays until the dedup window
/// ends. Returns 1, or 0 when stale.
pub(crate) static ACK: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local id = ARGV[2]
local jk = job_key(id)
-- The token and the key in one read; the lease check is the ZREM itself.
local f = redis.call('HMGET', jk, 'token', 'key', 'tenant')
if f[1] ~= ARGV[3] then return 0 end
if redis.call('ZREM', KEYS[3], id) == 0 then return 0 end
if f[2] and f[2] ~= '' then
  local dk = dedup_key(f[2], f[3])
  if redis.call('GET', dk) == id then redis.call('DEL', dk) end
end
redis.call('DEL', jk)
redis.call('HINCRBY', KEYS[7], 'completed', 1)
return 1
"#
    ))
});

/// Records a failed attempt of job `ARGV[2]` held with token `ARGV[3]`:
/// error `ARGV[4]`, retry after `ARGV[5]` ms unless `ARGV[6]` is `1` (dead
/// now) or the attempts are spent. Returns `retry`, `dead` or `stale`.
pub(crate) static FAIL: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local id = ARGV[2]
if not owned(id, ARGV[3]) then return 'stale' end
local now = now_ms()
redis.call('ZREM', KEYS[3], id)
local f = redis.call('HMGET', job_key(id), 'attempts', 'max_attempts')
if ARGV[6] == '1' or tonumber(f[1]) >= tonumber(f[2]) then
  bury(id, now, ARGV[4])
  return 'dead'
end
redis.call('HSET', job_key(id), 'last_error', ARGV[4])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), id)
redis.call('HINCRBY', KEYS[7], 'retried', 1)
signal(1)
return 'retry'
"#
    ))
});

/// Hands job `ARGV[2]` held with token `ARGV[3]` back to the wait set
/// without counting the attempt (worker shutdown). Returns 1, or 0 when stale.
pub(crate) static RELEASE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local id = ARGV[2]
if not owned(id, ARGV[3]) then return 0 end
local jk = job_key(id)
redis.call('ZREM', KEYS[3], id)
redis.call('HINCRBY', jk, 'attempts', -1)
redis.call('HINCRBY', jk, 'token', 1)
local f = redis.call('HMGET', jk, 'priority', 'seq')
redis.call('ZADD', KEYS[1], wait_score(f[1], f[2]), id)
signal(1)
return 1
"#
    ))
});

/// A page of the dead set, newest first: `ARGV[2]` offset, `ARGV[3]` count.
/// Returns 5 fields per job: id, died_at, payload, attempts, last_error.
pub(crate) static DEAD_PAGE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local from = tonumber(ARGV[2])
local rows = redis.call('ZREVRANGE', KEYS[4], from, from + tonumber(ARGV[3]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #rows, 2 do
  local f = redis.call('HMGET', job_key(rows[i]), 'payload', 'attempts', 'last_error')
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
  out[#out + 1] = f[3]
end
return out
"#
    ))
});

/// Moves dead job `ARGV[2]` back to the wait set with its attempts reset.
/// Returns 1, or 0 when it is not dead.
pub(crate) static REPLAY: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local id = ARGV[2]
local jk = job_key(id)
if redis.call('ZREM', KEYS[4], id) == 0 then return 0 end
if redis.call('EXISTS', jk) == 0 then return 0 end
local seq = redis.call('INCR', KEYS[5])
redis.call('HINCRBY', jk, 'token', 1)
redis.call('HSET', jk, 'attempts', 0, 'seq', seq)
redis.call('HDEL', jk, 'died_at')
redis.call('ZADD', KEYS[1], wait_score(redis.call('HGET', jk, 'priority'), seq), id)
signal(1)
return 1
"#
    ))
});

/// Deletes dead job `ARGV[2]`, or, when it is empty, up to `ARGV[3]` dead
/// jobs (oldest first). Returns how many were deleted.
pub(crate) static PURGE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local ids
if ARGV[2] ~= '' then
  ids = {ARGV[2]}
else
  ids = redis.call('ZRANGE', KEYS[4], 0, tonumber(ARGV[3]) - 1)
end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[4], id) == 1 then
    release_key(id)
    redis.call('DEL', job_key(id))
    n = n + 1
  end
end
return n
"#
    ))
});
