-- Add the same ids to many flat feeds and trim each: one call for a whole fanout chunk.
-- KEYS: the feeds; ARGV: max_length, then the ids (ascending).
-- Returns, per feed, the ids that were new there and survived its trim.
local max_length = tonumber(ARGV[1])
local out = {}
for k, key in ipairs(KEYS) do
  local added = {}
  for i = 2, #ARGV do
    if redis.call('ZADD', key, 'NX', 0, ARGV[i]) == 1 then added[#added + 1] = ARGV[i] end
  end
  if #added > 0 then
    local size = redis.call('ZCARD', key)
    if size > max_length then
      local cut = redis.call('ZRANGE', key, size - max_length - 1, size - max_length - 1)[1]
      redis.call('ZREMRANGEBYRANK', key, 0, size - max_length - 1)
      local kept = {}
      for _, id in ipairs(added) do
        if id > cut then kept[#kept + 1] = id end
      end
      added = kept
    end
  end
  out[k] = added
end
return out
