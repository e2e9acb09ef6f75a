-- Add the same entries (oldest first) to each of KEYS, aggregated feeds: merge them into
-- groups, trim, count. One call for a whole fanout chunk; every feed is still changed
-- atomically (a script runs alone).
-- ARGV: merge_window, max_length, then (id, actor, verb, key) per entry.
-- Returns, per feed, {unseen, unread, added id...}.
local window = tonumber(ARGV[1])
local max_length = tonumber(ARGV[2])
local out = {}
-- What the first entry needs is read with the counts: its membership, the newest group with
-- its key, and whether a group already has its id.
local prefetch = {}
if #ARGV > 2 then prefetch = {'a' .. ARGV[3], 'k' .. ARGV[6], 'g' .. ARGV[3]} end
for f = 1, #KEYS do
  begin(KEYS[f], prefetch)
  local added = {}
  local created = false
  for i = 3, #ARGV, 4 do
    local aid, actor, verb, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local got = get({'a' .. aid, 'k' .. key})
    if not got[1] then
      local member, gid, position = got[2], nil, nil
      local in_window = false
      if member then
        local rank = redis.call('ZREVRANK', order, member)
        if rank then
          position, gid = string.sub(member, 1, ID), string.sub(member, ID + 1)
          in_window = rank < window
        end
      end
      if in_window then
        local record = get({'g' .. gid, 't' .. gid .. actor})
        local g, tally = unpack_group(record[1]), tonumber(record[2])
        g.count = g.count + 1
        if tally then
          put('t' .. gid .. actor, tostring(tally + 1))
        else
          g.actors = g.actors + 1
          put('t' .. gid .. actor, '1')
        end
        if aid < g.oldest then g.oldest = aid end
        if aid > position then
          -- The group moves up to its new newest activity (a late one leaves it in place).
          local moved = aid .. gid
          redis.call('ZREM', order, member)
          redis.call('ZADD', order, 0, moved)
          put('k' .. key, moved)
          g.position = aid
        end
        recount(g.state, '000')
        g.state = '000'
        put('g' .. gid, pack(g))
      else
        -- A new group, with the same id rule as storage.base.fresh_group_id: the next free
        -- id up in the suffix.
        local fresh = aid
        while get({'g' .. fresh})[1] do
          local suffix = (tonumber(string.sub(fresh, 15), 16) + 1) % 281474976710656
          fresh = string.sub(fresh, 1, 14) .. string.format('%012x', suffix)
        end
        -- It becomes the newest group with its key unless a newer one has it (an old
        -- activity arriving late, as a backfill's do).
        local opened = aid .. fresh
        if not position or position < aid then put('k' .. key, opened) end
        gid = fresh
        put('g' .. gid, pack({state = '000', position = aid, oldest = aid, count = 1,
                              actors = 1, verb = verb, key = key}))
        put('t' .. gid .. actor, '1')
        redis.call('ZADD', order, 0, opened)
        recount(nil, '000')
        ngroups = ngroups + 1
        created = true
      end
      redis.call('ZADD', acts, 0, gid .. aid)
      put('a' .. aid, gid .. actor)
      added[#added + 1] = aid
    end
  end
  local trimmed = false
  -- Only a new group can push the feed past max_length; called with no entries at all, the
  -- script is an explicit trim (after max_length was lowered).
  if (created or #ARGV <= 2) and ngroups > max_length then
    local extra = ngroups - max_length
    for _, m in ipairs(redis.call('ZRANGE', order, 0, extra - 1)) do
      drop_group(string.sub(m, ID + 1))
    end
    redis.call('ZREMRANGEBYRANK', order, 0, extra - 1)
    trimmed = true
  end
  flush()
  local result = {unseen, unread}
  for _, aid in ipairs(added) do
    if not trimmed or view['a' .. aid] then result[#result + 1] = aid end
  end
  out[f] = result
end
return out
