#!lua
-- Note a write of a delivery in its target's log, and trim the log of entries not written
-- for the retention. Idempotent: the member is added (or its time refreshed), never twice.
-- KEYS[1]: the log (zset, scores 0: members '<id>:<scope>' in lexical = id order);
-- KEYS[2]: the same members scored by when their delivery was last written (ms, Redis time).
-- ARGV: the member, retention (ms), at most how many stale entries to trim.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local score = string.format('%d', ms)
local retention = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('ZADD', KEYS[2], score, ARGV[1])
local cutoff = string.format('%d', ms - retention)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[3]))
if #stale > 0 then
  redis.call('ZREM', KEYS[1], unpack(stale))
  redis.call('ZREM', KEYS[2], unpack(stale))
end
-- A target that gets nothing more: the whole log goes with its last entry.
redis.call('PEXPIRE', KEYS[1], retention)
redis.call('PEXPIRE', KEYS[2], retention)
return #stale
