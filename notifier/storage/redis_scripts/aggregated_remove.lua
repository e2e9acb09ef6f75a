-- Remove activities from one aggregated feed. ARGV: activity ids.
-- Returns {unseen, unread, removed id...}.
local removed = {}
for _, aid in ipairs(ARGV) do
  local member = redis.call('HGET', members, aid)
  if member then
    local gid, actor = string.sub(member, 1, ID), string.sub(member, ID + 1)
    local ids_key, actors_key = base .. 'i:' .. gid, base .. 'u:' .. gid
    local old = newest(gid)
    redis.call('ZREM', ids_key, aid)
    redis.call('HDEL', members, aid)
    if redis.call('HINCRBY', actors_key, actor, -1) <= 0 then
      redis.call('HDEL', actors_key, actor)
    end
    -- When the newest group with its key goes, or moves back (it lost its newest activity),
    -- another group with that key may now be the newest: the index is recomputed for it.
    if redis.call('ZCARD', ids_key) == 0 then
      local key = drop_group(gid, old)
      if key then reindex(key) end
    else
      local new = newest(gid)
      if new ~= old then
        redis.call('ZREM', order, old .. gid)
        redis.call('ZADD', order, 0, new .. gid)
        local key = indexed_key(gid)
        if key then reindex(key) end
      end
    end
    removed[#removed + 1] = aid
  end
end
local result = current_counts()
for _, aid in ipairs(removed) do result[#result + 1] = aid end
return result
