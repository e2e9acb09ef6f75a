-- One page of groups of one aggregated feed, newest position first, in one round trip.
-- ARGV: max bound, min bound (ZREVRANGEBYLEX syntax), limit, max_activities.
-- Returns {unseen, unread, {gid, key, verb, position, oldest, count, actors, state, ids}...}.
local picked = redis.call('ZREVRANGEBYLEX', order, ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local result = current_counts()
local shown = tonumber(ARGV[4])
for _, m in ipairs(picked) do
  local gid = string.sub(m, ID + 1)
  local ids_key = base .. 'i:' .. gid
  result[#result + 1] = {
    gid,
    redis.call('HGET', gkeys, gid),
    redis.call('HGET', gverbs, gid),
    string.sub(m, 1, ID),
    redis.call('ZRANGE', ids_key, 0, 0)[1],
    redis.call('ZCARD', ids_key),
    redis.call('HLEN', base .. 'u:' .. gid),
    redis.call('HGET', gstate, gid),
    redis.call('ZREVRANGE', ids_key, 0, shown - 1),
  }
end
return result
