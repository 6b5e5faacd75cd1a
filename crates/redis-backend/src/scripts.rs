//! The Lua scripts that make reads bounded and writes and claims atomic. They run by `EVALSHA`
//! (the script body is sent once, with `EVAL`, when Redis does not have it yet).

use std::sync::OnceLock;

/// A Lua script and its SHA-1, computed once.
pub(crate) struct LuaScript {
    pub(crate) lua: &'static str,
    hash: OnceLock<String>,
}

impl LuaScript {
    const fn new(lua: &'static str) -> Self {
        Self {
            lua,
            hash: OnceLock::new(),
        }
    }

    pub(crate) fn hash(&self) -> &str {
        self.hash.get_or_init(|| fred::util::sha1_hash(self.lua))
    }
}

/// Stores `ARGV[1]` with a TTL of `ARGV[3]` ms unless the stored envelope was fetched later than
/// `ARGV[2]` (ms). A stored `fetched_at` beyond `ARGV[4]` (now plus the allowed skew) is not
/// believed, so a planted far-future entry cannot block writes. Only the first 22 bytes of the
/// stored value are read, so a planted huge value costs no more than a small one. Returns 1 if
/// written.
pub(crate) static WRITE_IF_NEWER: LuaScript = LuaScript::new(
    r"
local current = redis.pcall('GETRANGE', KEYS[1], 0, 21)
if type(current) == 'string' and string.sub(current, 1, 4) == 'JWKS' then
  local stored = tonumber(string.sub(current, 7, 22), 16)
  if stored and stored > tonumber(ARGV[2]) and stored <= tonumber(ARGV[4]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
",
);

/// Deletes the lease `KEYS[1]` if it still holds the token `ARGV[1]`.
pub(crate) static RELEASE_LEASE: LuaScript = LuaScript::new(
    r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
);

/// Extends the lease `KEYS[1]` to `ARGV[2]` ms from now if it still holds the token `ARGV[1]`.
/// Returns 1 if renewed.
pub(crate) static RENEW_LEASE: LuaScript = LuaScript::new(
    r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
);

/// Sets `KEYS[1]` to `ARGV[1]` (now, ms) with a TTL of `ARGV[3]` ms if no claim was made within
/// `ARGV[2]` ms before now. A stored claim from the future (beyond `ARGV[4]` ms of skew) is
/// ignored. Returns 1 if claimed.
pub(crate) static CLAIM_PERIOD: LuaScript = LuaScript::new(
    r"
local last = redis.pcall('GET', KEYS[1])
local now = tonumber(ARGV[1])
if type(last) == 'string' then
  local at = tonumber(last)
  if at and at <= now + tonumber(ARGV[4]) and now < at + tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
",
);
