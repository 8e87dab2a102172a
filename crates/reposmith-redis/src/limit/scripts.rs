//! The limiter's Lua scripts. Each runs atomically on the server and reads
//! "now" from the server's `TIME` in integer µs, never from an application.
//!
//! Keys (one hash tag, one cluster slot): `KEYS[1]` the state hash,
//! `KEYS[2]` the permits (sorted set, id → expiry µs), `KEYS[3]` the
//! reservations (same), `KEYS[4]` the reservations' `estimate:at` (hash).
//!
//! A policy's limits travel as arguments, five per limit: kind (`r` rate,
//! `q` quota, `c` concurrency), name, unit (`n` calls, `c` cost), and two
//! parameters: a rate's emission interval in µs (a decimal that reads back
//! exactly) and burst; a quota's limit and window (`d` day, `m` month, or
//! seconds); a concurrency limit's permits. The server keeps no policy, so
//! changing one needs no migration.
//!
//! State fields: `r:<name>` a rate's TAT offset (µs ahead of `a:<name>`, the
//! server time it was written; see `reposmith_core::limit::gcra` for why an
//! offset), `q:<name>` a quota's count in window `w:<name>`. Keys only ever
//! get a longer TTL (`grow_ttl`): a process running an older policy cannot
//! cut short state a newer one still needs.

use std::sync::LazyLock;

use crate::lua::Lua;

/// Helpers every script shares.
macro_rules! prelude {
    () => {
        r#"
local EPS = 0.001
local DAY = 86400000000
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function num(x) return string.format('%.17g', x) end
-- Days since 1970-01-01 to (year, month), and the first of a month back
-- to days (H. Hinnant's civil calendar algorithms).
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end
local function first_of(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + math.floor((153 * mp + 2) / 5)
  return era * 146097 + doe - 719468
end
-- The number of the window holding `now`, and a window's end (µs).
local function window_id(code, now)
  if code == 'd' then return math.floor(now / DAY) end
  if code == 'm' then
    local y, m = civil(math.floor(now / DAY))
    return y * 12 + m - 1
  end
  return math.floor(now / (tonumber(code) * 1000000))
end
local function window_end(code, id)
  if code == 'd' then return (id + 1) * DAY end
  if code == 'm' then
    local next = id + 1
    return first_of(math.floor(next / 12), next % 12 + 1) * DAY
  end
  return (id + 1) * tonumber(code) * 1000000
end
-- The window to count in: the one holding `now`, unless the count is
-- already in a later one (the clock stepped back): windows never go back.
local function window(code, now, stored)
  local id = window_id(code, now)
  if stored and stored > id then id = stored end
  return id, window_end(code, id)
end
local function limits(from)
  local out = {}
  for i = 1, tonumber(ARGV[from]) do
    local b = from + (i - 1) * 5
    out[i] = {kind = ARGV[b + 1], name = ARGV[b + 2], unit = ARGV[b + 3],
              p1 = ARGV[b + 4], p2 = ARGV[b + 5]}
  end
  return out
end
-- Gives `key` at least `us` more to live (never less than it has).
local function grow_ttl(key, us)
  local ms = math.ceil(us / 1000)
  if ms < 1 then ms = 1 end
  local p = redis.call('PTTL', key)
  if p == -1 or (p >= 0 and p < ms) then
    redis.call('PEXPIRE', key, string.format('%d', ms))
  end
end
-- Drops ended permits.
local function prune_permits(now)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
end
-- Drops a bounded batch of ended reservations (housekeeping: their
-- estimates were charged when they were taken; the keys expire with their
-- last lease anyway).
local function prune_reservations(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 100)
  if #gone > 0 then
    redis.call('HDEL', KEYS[4], unpack(gone))
    redis.call('ZREM', KEYS[3], unpack(gone))
  end
end
local function prune(now)
  prune_permits(now)
  prune_reservations(now)
end
-- A step: {admitted, remaining after, retry-after, reset-after, new state,
-- window, remaining now, reset-after now} (the last two report a limit
-- that would admit when the call as a whole is refused).
local function judge_rate(l, ahead, charge)
  local t = tonumber(l.p1)
  local tol = tonumber(l.p2) * t
  local after = ahead + charge * t
  local now_left = 0
  if tol > ahead then now_left = math.floor((tol - ahead + EPS) / t) end
  if after <= tol + EPS then
    return {1, math.floor((tol - after + EPS) / t), 0, math.ceil(after), after, 0,
            now_left, math.ceil(ahead)}
  end
  return {0, now_left, math.max(math.ceil(after - tol), 1), math.ceil(ahead), ahead}
end
local function judge_quota(l, used, stored, charge, now)
  local wid, wend = window(l.p2, now, stored)
  if stored ~= wid then used = 0 end
  local lim = tonumber(l.p1)
  if used + charge <= lim then
    return {1, lim - used - charge, 0, wend - now, used + charge, wid, lim - used, wend - now}
  end
  return {0, math.max(lim - used, 0), math.max(wend - now, 1), wend - now, used, wid}
end
local function judge_permit(l, now)
  local held = redis.call('ZCARD', KEYS[2])
  local max = tonumber(l.p1)
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local wait = 0
  if first[2] then wait = math.max(tonumber(first[2]) - now, 0) end
  if held < max then return {1, max - held - 1, 0, wait, 0, 0, max - held, wait} end
  return {0, 0, math.max(wait, 1), wait}
end
-- State writes, collected in `set` and written by one HSET.
local function put_rate(set, name, ahead, now)
  set[#set + 1] = 'r:' .. name
  set[#set + 1] = num(ahead)
  set[#set + 1] = 'a:' .. name
  set[#set + 1] = num(now)
end
local function put_quota(set, name, used, wid)
  set[#set + 1] = 'q:' .. name
  set[#set + 1] = num(used)
  set[#set + 1] = 'w:' .. name
  set[#set + 1] = num(wid)
end
local function write_state(set, horizon)
  if #set > 0 then
    redis.call('HSET', KEYS[1], unpack(set))
    grow_ttl(KEYS[1], horizon)
  end
end
-- A rate's TAT offset from `now`, from its stored offset and write time.
local function ahead_of(stored, at, now)
  local ahead = (tonumber(stored) or 0) - (now - (tonumber(at) or now))
  if ahead < 0 then return 0 end
  return ahead
end
"#
    };
}

/// Judges and charges. `ARGV`: operation (`c` check, `r` reserve, `a`
/// acquire), cost, lease id, lease TTL (µs), then the limits. Returns `{now,
/// lease expiry or 0, admitted (1/0), then per judged limit: index
/// (0-based), admitted, remaining, retry-after µs, reset-after µs}`. A
/// reservation's record is `estimate:at` followed by `;name=tat_end` for
/// each rate counting cost.
pub(crate) static ADMIT: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local op, cost, id, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local L = limits(5)
local now = now_us()
-- Only a concurrency limit reads the permits, and only a reservation adds
-- to the reservations: a plain check of rates and quotas skips both prunes.
for _, l in ipairs(L) do
  if l.kind == 'c' then prune_permits(now) break end
end
if op == 'r' then prune_reservations(now) end
local fields = {}
for _, l in ipairs(L) do
  if l.kind == 'r' then
    fields[#fields + 1] = 'r:' .. l.name
    fields[#fields + 1] = 'a:' .. l.name
  elseif l.kind == 'q' then
    fields[#fields + 1] = 'q:' .. l.name
    fields[#fields + 1] = 'w:' .. l.name
  end
end
local vals = {}
if #fields > 0 and op ~= 'a' then vals = redis.call('HMGET', KEYS[1], unpack(fields)) end
local steps, all, permits, v = {}, true, false, 1
for i, l in ipairs(L) do
  local charge = cost
  if l.unit == 'n' then charge = 1 end
  if l.kind == 'c' then
    permits = true
    steps[i] = judge_permit(l, now)
  elseif op ~= 'a' and l.kind == 'r' then
    steps[i] = judge_rate(l, ahead_of(vals[v], vals[v + 1], now), charge)
  elseif op ~= 'a' and l.kind == 'q' then
    steps[i] = judge_quota(l, tonumber(vals[v]) or 0, tonumber(vals[v + 1]), charge, now)
  end
  if l.kind ~= 'c' then v = v + 2 end
  if steps[i] and steps[i][1] == 0 then all = false end
end
local expires = 0
if all then
  -- The state, and for a reservation where each cost rate's TAT ends:
  -- a refund may give back only what has not drained yet.
  local set, horizon, ends = {}, 0, ''
  for i, l in ipairs(L) do
    local s = steps[i]
    if s and l.kind == 'r' then
      put_rate(set, l.name, s[5], now)
      horizon = math.max(horizon, s[5])
      if l.unit == 'c' then ends = ends .. ';' .. l.name .. '=' .. num(now + s[5]) end
    elseif s and l.kind == 'q' then
      put_quota(set, l.name, s[5], s[6])
      horizon = math.max(horizon, s[4])
    end
  end
  write_state(set, horizon)
  if permits or op == 'r' then
    expires = now + ttl
    if permits then
      redis.call('ZADD', KEYS[2], expires, id)
      grow_ttl(KEYS[2], ttl)
    end
    if op == 'r' then
      redis.call('ZADD', KEYS[3], expires, id)
      redis.call('HSET', KEYS[4], id, num(cost) .. ':' .. num(now) .. ends)
      grow_ttl(KEYS[3], ttl)
      grow_ttl(KEYS[4], ttl)
    end
  end
end
local out = {now, expires, all and 1 or 0}
for i = 1, #L do
  local s = steps[i]
  if s then
    -- Refused as a whole: a limit that would have admitted reports what
    -- it has now, since nothing was charged.
    local remaining, reset = s[2], s[4]
    if not all and s[1] == 1 then remaining, reset = s[7], s[8] end
    out[#out + 1] = i - 1
    out[#out + 1] = s[1]
    out[#out + 1] = remaining
    out[#out + 1] = s[3]
    out[#out + 1] = reset
  end
end
return out
"#
    ))
});

/// Settles reservation `ARGV[1]` at `ARGV[2]` units (limits from
/// `ARGV[3]`). Returns `{1, charged}` or `{0, 0}` when it had ended.
pub(crate) static RECONCILE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local id, actual = ARGV[1], tonumber(ARGV[2])
local L = limits(3)
local now = now_us()
local score = tonumber(redis.call('ZSCORE', KEYS[3], id))
local record = redis.call('HGET', KEYS[4], id)
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
prune(now)
if not score or score <= now or not record then return {0, 0} end
local estimate, at, rest = string.match(record, '^([^:]+):([^;]+)(.*)$')
estimate, at = tonumber(estimate), tonumber(at)
local ends = {}
for name, t in string.gmatch(rest, ';([^=]+)=([^;]+)') do ends[name] = tonumber(t) end
local delta = actual - estimate
local set, horizon = {}, 0
for _, l in ipairs(L) do
  if l.unit == 'c' and l.kind == 'r' then
    local f = redis.call('HMGET', KEYS[1], 'r:' .. l.name, 'a:' .. l.name)
    local change = delta * tonumber(l.p1)
    if delta < 0 then
      -- Give back at most what of the reservation's charge is still
      -- ahead of now: a drained charge must not be returned twice.
      change = math.max(change, -math.max((ends[l.name] or 0) - now, 0))
    end
    local ahead = math.max(ahead_of(f[1], f[2], now) + change, 0)
    put_rate(set, l.name, ahead, now)
    horizon = math.max(horizon, ahead)
  elseif l.unit == 'c' and l.kind == 'q' then
    local f = redis.call('HMGET', KEYS[1], 'q:' .. l.name, 'w:' .. l.name)
    local stored = tonumber(f[2])
    local wid, wend = window(l.p2, now, stored)
    local used = tonumber(f[1]) or 0
    if stored ~= wid then used = 0 end
    -- A refund goes back only to the window it was taken from; a charge
    -- lands in the current one.
    if delta > 0 or window_id(l.p2, at) == wid then used = math.max(used + delta, 0) end
    put_quota(set, l.name, used, wid)
    horizon = math.max(horizon, wend - now)
  end
end
write_state(set, horizon)
return {1, delta}
"#
    ))
});

/// Extends lease `ARGV[1]` to `ARGV[2]` µs from now. Returns the new
/// expiry, or 0 when the lease had ended.
pub(crate) static RENEW: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local id, ttl = ARGV[1], tonumber(ARGV[2])
local now = now_us()
prune(now)
local expires, found = now + ttl, false
for _, k in ipairs({KEYS[2], KEYS[3]}) do
  if redis.call('ZSCORE', k, id) then
    redis.call('ZADD', k, 'XX', expires, id)
    grow_ttl(k, ttl)
    found = true
  end
end
if not found then return 0 end
if redis.call('HEXISTS', KEYS[4], id) == 1 then grow_ttl(KEYS[4], ttl) end
return expires
"#
    ))
});

/// Ends lease `ARGV[1]`. Returns 1, or 0 when it had ended.
pub(crate) static RELEASE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local id = ARGV[1]
prune(now_us())
local n = redis.call('ZREM', KEYS[2], id) + redis.call('ZREM', KEYS[3], id)
redis.call('HDEL', KEYS[4], id)
if n > 0 then return 1 end
return 0
"#
    ))
});

/// For tests: the month window the script computes for `ARGV[1]` µs.
/// Returns `{number, end}`.
pub(crate) static MONTH_OF: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local id, wend = window('m', tonumber(ARGV[1]))
return {id, wend}
"#
    ))
});
