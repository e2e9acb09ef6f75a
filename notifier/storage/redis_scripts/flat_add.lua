-- Add the same ids to many flat feeds and trim each: one call for a whole fanout chunk.
-- KEYS: the feeds; ARGV: max_length, then the ids (ascending).
-- Returns {feeds, ids}: the positions (1-based) of the feeds where not every id was new or
-- survived the trim, and for each of them the ids that were and did. Every other feed took
-- every id, so a first run's reply is two empty lists however many feeds it wrote.
local max_length = tonumber(ARGV[1])
local n_ids = #ARGV - 1
local odd_feeds, odd_ids = {}, {}
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
  if #added ~= n_ids then
    odd_feeds[#odd_feeds + 1] = k
    odd_ids[#odd_ids + 1] = added
  end
end
return {odd_feeds, odd_ids}
