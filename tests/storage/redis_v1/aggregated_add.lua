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
  local checked, created = false, false
  local known = nil  -- the counts, when the last change to them told us (saves reading them)
  for i = 3, #ARGV, 4 do
    local aid, actor, verb, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    if redis.call('HEXISTS', members, aid) == 0 then
      local gid, position, in_window = find_group(key, window, checked)
      checked = true
      local newest_id = aid
      if in_window then
        redis.call('ZREM', order, position .. gid)
        if position > aid then newest_id = position end
        set_state(gid, '000')
        known = nil
      else
        -- A new group, with the same id rule as storage.base.fresh_group_id: the next free
        -- id up in the suffix.
        local fresh = aid
        while redis.call('HSETNX', gkeys, fresh, key) == 0 do  -- taken: the next one up
          local suffix = (tonumber(string.sub(fresh, 15), 16) + 1) % 281474976710656
          fresh = string.sub(fresh, 1, 14) .. string.format('%012x', suffix)
        end
        -- It becomes the newest group with its key unless a newer one has it (an old
        -- activity arriving late, as a backfill's do).
        if not gid or position < aid then redis.call('HSET', gindex, 'k' .. key, fresh) end
        gid = fresh
        redis.call('HSET', gverbs, gid, verb)
        -- A fresh group has no state yet: it starts unseen and unread.
        redis.call('HSET', gstate, gid, '000')
        known = {redis.call('HINCRBY', counts, 'unseen', 1),
                 redis.call('HINCRBY', counts, 'unread', 1)}
        created = true
      end
      redis.call('ZADD', base .. 'i:' .. gid, 0, aid)
      redis.call('HINCRBY', base .. 'u:' .. gid, actor, 1)
      redis.call('HSET', members, aid, gid .. actor)
      redis.call('ZADD', order, 0, newest_id .. gid)
      added[#added + 1] = aid
    end
  end
  local trimmed = false
  -- Only a new group can push the feed past max_length; called with no entries at all, the
  -- script is an explicit trim (after max_length was lowered).
  if created or #ARGV <= 2 then
    local size = redis.call('ZCARD', order)
    if size > max_length then
      for _, m in ipairs(redis.call('ZRANGE', order, 0, size - max_length - 1)) do
        drop_group(string.sub(m, ID + 1), string.sub(m, 1, ID))
      end
      trimmed = true
    end
  end
  local result = known
  if trimmed or not known then result = current_counts() end
  for _, aid in ipairs(added) do
    if not trimmed or redis.call('HEXISTS', members, aid) == 1 then result[#result + 1] = aid end
  end
  out[f] = result
end
return out
