//! The cache's Lua scripts. Each runs atomically on the server and reads
//! "now" from the server's `TIME`, never from an application's clock.
//!
//! An entry is one hash: `v` the encoded value, `d` the milliseconds its
//! database read took (for XFetch), `l` the lease token, `le` the lease's
//! expiry (server milliseconds). A key with a lease and no value expires
//! with its lease, so a crashed holder's lease dies with the key.
//!
//! Every script declares the key that routes it (`KEYS[1]`). The query
//! lookup and the query discard also touch one key they do not declare:
//! the entry under the current generation, whose name the script builds
//! from the generation it just read (`ARGV` carries the text before and
//! after the generation). That key carries the same hash tag as the
//! generation key, so it sits in the same cluster slot and Redis allows the
//! access; declaring it would need the generation first, a second round
//! trip on every cached query.

use std::sync::LazyLock;

pub(crate) use crate::lua::Lua;

/// Reply kinds of the lookup scripts.
pub(crate) const HIT: i64 = 1;
/// The caller took the lease.
pub(crate) const MISS: i64 = 2;
/// Another caller holds the lease.
pub(crate) const BUSY: i64 = 3;

/// The row logic both lookups share: `look(key, token, lease_ttl, xfetch)`
/// returns `{kind, value, lease, ms}` (`''` for no value or lease), where
/// `ms` is the entry's remaining TTL on a hit and the wait on a busy.
macro_rules! prelude {
    () => {
        r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function look(key, token, lease_ttl, xfetch)
  local f = redis.call('HMGET', key, 'v', 'd', 'l', 'le')
  local v, d, l, le = f[1], tonumber(f[2]), f[3], tonumber(f[4])
  local now = now_ms()
  local live = l and le and le > now
  if v then
    local pttl = redis.call('PTTL', key)
    -- XFetch: nobody refreshes yet and the rest of the TTL is within the
    -- recompute time times the caller's random factor.
    if not live and d and xfetch > 0 and pttl >= 0 and pttl <= d * xfetch then
      redis.call('HSET', key, 'l', token, 'le', now + lease_ttl)
      return {1, v, token, pttl}
    end
    return {1, v, '', pttl}
  end
  if live then
    local wait = d or 2
    if wait < 1 then wait = 1 elseif wait > 50 then wait = 50 end
    if wait > le - now then wait = le - now end
    return {3, '', '', math.floor(wait)}
  end
  redis.call('HSET', key, 'l', token, 'le', now + lease_ttl)
  -- No value here: the key lives as long as the lease.
  redis.call('PEXPIRE', key, lease_ttl)
  return {2, '', token, 0}
end
"#
    };
}

/// Looks up row entry `KEYS[1]`. `ARGV[1]` the caller's token, `ARGV[2]`
/// the lease TTL (ms), `ARGV[3]` the XFetch factor. Returns `{kind, value,
/// lease, ms}`.
pub(crate) static LOOKUP_ROW: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
return look(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
"#
    ))
});

/// Looks up a query entry under the generation at `KEYS[1]` (made from
/// the caller's token `ARGV[1]`, for `ARGV[6]` ms, when absent). The entry
/// key is `ARGV[4] .. generation .. ARGV[5]` (same hash tag as `KEYS[1]`,
/// not declared: see the module docs). Returns the row reply with the
/// generation appended.
pub(crate) static LOOKUP_QUERY: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        prelude!(),
        r#"
local gen = redis.call('GET', KEYS[1])
if not gen then
  gen = ARGV[1]
  redis.call('SET', KEYS[1], gen, 'PX', ARGV[6])
end
local r = look(ARGV[4] .. gen .. ARGV[5], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
r[5] = gen
return r
"#
    ))
});

/// Fills entry `KEYS[#KEYS]` if its lease is still `ARGV[1]` and, with two
/// keys (a query), the generation at `KEYS[1]` is still `ARGV[5]`: the
/// hash becomes `v = ARGV[2]`, `d = ARGV[3]`, expiring in `ARGV[4]` ms.
/// Returns 1, or 0 for refused.
pub(crate) static FILL: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
local key = KEYS[1]
if #KEYS == 2 then
  if redis.call('GET', KEYS[1]) ~= ARGV[5] then return 0 end
  key = KEYS[2]
end
if redis.call('HGET', key, 'l') ~= ARGV[1] then return 0 end
redis.call('DEL', key)
redis.call('HSET', key, 'v', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', key, ARGV[4])
return 1
"#,
    )
});

/// Gives up lease `ARGV[1]` of entry `KEYS[1]`: the lease fields go, and
/// the key too when it holds no value. Returns 1, or 0 when not held.
pub(crate) static RELEASE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
if redis.call('HGET', KEYS[1], 'l') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'v') == 1 then
  redis.call('HDEL', KEYS[1], 'l', 'le')
else
  redis.call('DEL', KEYS[1])
end
return 1
"#,
    )
});

/// Deletes an entry if its value is exactly `ARGV[1]`. A row entry is
/// `KEYS[1]`; with `ARGV[2]` and `ARGV[3]`, `KEYS[1]` is a generation key
/// and the entry is `ARGV[2] .. generation .. ARGV[3]` (not declared, same
/// slot: see the module docs). Returns 1 when deleted.
pub(crate) static DISCARD: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
local key = KEYS[1]
if #ARGV == 3 then
  local gen = redis.call('GET', KEYS[1])
  if not gen then return 0 end
  key = ARGV[2] .. gen .. ARGV[3]
end
if redis.call('HGET', key, 'v') == ARGV[1] then
  redis.call('DEL', key)
  return 1
end
return 0
"#,
    )
});
