-- Add ids to one flat feed and trim it. KEYS[1]: the feed; ARGV: max_length, ids (ascending).
-- Returns the ids that were new and survived the trim.
local key = KEYS[1]
local added = {}
for i = 2, #ARGV do
  if redis.call('ZADD', key, 'NX', 0, ARGV[i]) == 1 then added[#added + 1] = ARGV[i] end
end
local max_length = tonumber(ARGV[1])
local size = redis.call('ZCARD', key)
if size > max_length and #added > 0 then
  local cut = redis.call('ZRANGE', key, size - max_length - 1, size - max_length - 1)[1]
  redis.call('ZREMRANGEBYRANK', key, 0, size - max_length - 1)
  local kept = {}
  for _, id in ipairs(added) do
    if id > cut then kept[#kept + 1] = id end
  end
  return kept
end
return added
