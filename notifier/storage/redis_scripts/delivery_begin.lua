#!lua
-- Start an attempt of a delivery if it is pending and its lease has ended.
-- KEYS[1]: the record (hash). ARGV: now, lease_until (µs since the epoch), retention (ms).
-- Returns the updated record (HGETALL), or nothing (unknown, delivered, dead or leased).
-- Times compare as Lua numbers (doubles): exact up to 2^53 µs, the year 2255.
local state = redis.call('HMGET', KEYS[1], 'status', 'lease_until')
if state[1] ~= 'pending' or tonumber(state[2]) > tonumber(ARGV[1]) then
  return {}
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'lease_until', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HGETALL', KEYS[1])
