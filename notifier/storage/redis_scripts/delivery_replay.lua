#!lua
-- Make a delivery pending again, whatever its status: attempts and any running attempt's
-- lease kept (a replay never overlaps an attempt in flight).
-- KEYS[1]: the record (hash). ARGV: now (µs since the epoch), retention (ms).
-- Returns the updated record (HGETALL), or nothing when unknown. One script, so a record
-- that expires between a check and the write is never recreated as a partial hash.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {}
end
redis.call('HSET', KEYS[1], 'status', 'pending', 'updated_at', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
