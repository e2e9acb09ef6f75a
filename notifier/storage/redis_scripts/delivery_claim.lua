#!lua
-- Claim a delivery (notifier/delivery/redis_store.py): create its record unless it exists,
-- and in the same step set its scope's marks. Both keys carry the scope's hash tag.
-- KEYS[1]: the record (hash); KEYS[2]: the scope's marks (hash).
-- ARGV[1]: retention (ms); ARGV[2]: n, how many record arguments follow (field, value, ...);
-- then the marks (name, value, ...).
-- Returns the stored record (HGETALL) when one exists, and nothing when this call created it.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGETALL', KEYS[1])
end
local retention = ARGV[1]
local last = 2 + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 3, last))
redis.call('PEXPIRE', KEYS[1], retention)
if #ARGV > last then
  -- One HSET per mark: a digest's marks are one per group, and unpack is bounded by Lua's stack.
  for i = last + 1, #ARGV, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  redis.call('PEXPIRE', KEYS[2], retention)
end
return {}
