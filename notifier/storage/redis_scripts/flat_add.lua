-- Add the same ids to many flat feeds and trim each: one call for a whole fanout chunk.
-- KEYS: the feeds (see feeds.lua); ARGV: max_length, then the ids (ascending).
-- Returns {feeds, ids, elsewhere}: the positions (1-based) of the feeds where not every id
-- was new or survived the trim, and for each of them the ids that were and did; then the
-- positions of the feeds this node does not serve (a Redis Cluster slot that moved or is
-- moving), left untouched for the caller to send to their owner. Every other feed took
-- every id, so a first run's reply is three empty lists however many feeds it wrote.
-- A flat feed is one key, so its first ZADD is its probe: no separate check (feeds.lua).
local max_length = tonumber(ARGV[1])
local n_ids = #ARGV - 1
local odd_feeds, odd_ids, elsewhere = {}, {}, {}
for k, key in ipairs(KEYS) do
  local added = {}
  local first = redis.pcall('ZADD', key, 'NX', 0, ARGV[2])
  if type(first) == 'table' and first.err then
    if not string.find(first.err, 'non local key', 1, true) then error(first) end
    elsewhere[#elsewhere + 1] = k
  else
    if first == 1 then added[1] = ARGV[2] end
    for i = 3, #ARGV do
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
end
return {odd_feeds, odd_ids, elsewhere}
