#!lua
-- Record how attempt ARGV[1] of a delivery ended, unless another attempt started since.
-- KEYS[1]: the record (hash). ARGV: attempt, status, at (µs since the epoch), error,
-- retention (ms). Returns the delivery's target when recorded, else nil.
local attempts = redis.call('HGET', KEYS[1], 'attempts')
if not attempts or tonumber(attempts) ~= tonumber(ARGV[1]) then
  return false
end
-- lease_until 0: the epoch, the lease ended with the attempt.
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'lease_until', '0', 'last_error', ARGV[4],
           'updated_at', ARGV[3])
if ARGV[2] == 'delivered' then
  redis.call('HSET', KEYS[1], 'delivered_at', ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return redis.call('HGET', KEYS[1], 'target')
