-- Add the same entries (oldest first) to each of KEYS, aggregated feeds: merge them into
-- groups, trim, count. One call for a whole fanout chunk; every feed is still changed
-- atomically (a script runs alone).
-- ARGV: merge_window, max_length, then (id, actor, verb, key) per entry.
-- Returns, per feed, {unseen, unread, added id...}.
local window = tonumber(ARGV[1])
local max_length = tonumber(ARGV[2])
local out = {}
for f = 1, #KEYS do
  use(KEYS[f])
  local added = {}
  for i = 3, #ARGV, 4 do
    local aid, actor, verb, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    if redis.call('HEXISTS', members, aid) == 0 then
      local gid = nil
      local recent = redis.call('ZREVRANGE', order, 0, window - 1)
      if #recent > 0 then
        local gids = {}
        for j, m in ipairs(recent) do gids[j] = string.sub(m, ID + 1) end
        local keys = redis.call('HMGET', gkeys, unpack(gids))
        for j, k in ipairs(keys) do
          if k == key then gid = gids[j]; break end
        end
      end
      if gid then
        redis.call('ZREM', order, newest(gid) .. gid)
      else
        gid = aid
        -- Same rule as storage.base.fresh_group_id: the next free id up in the suffix.
        while redis.call('HEXISTS', gkeys, gid) == 1 do
          local suffix = (tonumber(string.sub(gid, 15), 16) + 1) % 281474976710656
          gid = string.sub(gid, 1, 14) .. string.format('%012x', suffix)
        end
        redis.call('HSET', gkeys, gid, key)
        redis.call('HSET', gverbs, gid, verb)
      end
      redis.call('ZADD', base .. 'i:' .. gid, 0, aid)
      redis.call('HINCRBY', base .. 'u:' .. gid, actor, 1)
      redis.call('HSET', members, aid, gid .. actor)
      redis.call('ZADD', order, 0, newest(gid) .. gid)
      set_state(gid, '000')
      added[#added + 1] = aid
    end
  end
  local size = redis.call('ZCARD', order)
  if size > max_length then
    for _, m in ipairs(redis.call('ZRANGE', order, 0, size - max_length - 1)) do
      drop_group(string.sub(m, ID + 1), string.sub(m, 1, ID))
    end
  end
  local result = current_counts()
  for _, aid in ipairs(added) do
    if redis.call('HEXISTS', members, aid) == 1 then result[#result + 1] = aid end
  end
  out[f] = result
end
return out
