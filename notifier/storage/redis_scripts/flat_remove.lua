-- Remove ids from one flat feed. KEYS[1]: the feed; ARGV: ids. Returns the ids removed.
local removed = {}
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then removed[#removed + 1] = ARGV[i] end
end
return removed
