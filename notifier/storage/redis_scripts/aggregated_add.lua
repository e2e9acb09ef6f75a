-- Add the same entries (oldest first) to each of KEYS, aggregated feeds: merge them into
-- groups, trim, count. One call for a whole fanout chunk; every feed is still changed
-- atomically (a script runs alone).
-- ARGV: merge_window, max_length, then (id, actor, verb, key) per entry.
-- Returns {counts, odd feeds, their added ids}: counts is unseen, unread of each feed in turn;
-- a feed that did not take every entry (duplicates, or trimmed at once) is "odd": its position
-- (1-based) and the ids it took. The usual reply is two numbers a feed.
-- The hot path of notification fanout, so written straight, not with get()/put(): Redis
-- runs Lua 5.1 without a JIT, and the tables those build cost as much as the Redis calls.
-- Each entry is one HMGET and one HSET of the feed's hash, a ZADD to the order and to the
-- group's ids and a count in the group's actor tally (a merge reads the group's record and
-- moves it in the order too).
local window = tonumber(ARGV[1])
local max_length = tonumber(ARGV[2])
local first_aid, first_key = ARGV[3], ARGV[6]
local entries = (#ARGV - 2) / 4
local counts, odd, odd_added = {}, {}, {}

-- Drop the feed's `extra` oldest groups, with their activities; returns the set of their ids.
local function trim(extra)
  local dropped = {}
  -- All scores are 0: the lowest are the lexically first members, the oldest positions.
  local popped = redis.call('ZPOPMIN', order, extra)
  for p = 1, #popped, 2 do
    local m = popped[p]
    local gid = string.sub(m, ID + 1)
    local record = redis.call('HGET', fields, 'g' .. gid)
    local key = 'k' .. key_of(record)
    local dels = {'g' .. gid}
    if redis.call('HGET', fields, key) == m then dels[2] = key end  -- the newest with its key
    for _, aid in ipairs(redis.call('ZRANGE', ids_of(gid), 0, -1)) do
      dels[#dels + 1] = 'a' .. aid
    end
    call_in_pieces('HDEL', fields, dels, 1000)
    redis.call('DEL', ids_of(gid), tally_of(gid))
    recount(string.sub(record, 1, 3), nil)
    ngroups = ngroups - 1
    dropped[gid] = true
  end
  return dropped
end

for f = 1, #KEYS do
  use(KEYS[f])
  local head = redis.call('HMGET', fields, 'v', 'u', 'r', 'n', 'a' .. (first_aid or ''),
                          'k' .. (first_key or ''), 'g' .. (first_aid or ''))
  if not head[1] then
    -- A new feed, or one of layout 1: made a feed of this layout first (rare: once a feed).
    begin(KEYS[f], {})
    flush()
    head = redis.call('HMGET', fields, 'v', 'u', 'r', 'n', 'a' .. (first_aid or ''),
                      'k' .. (first_key or ''), 'g' .. (first_aid or ''))
  end
  unseen, unread, ngroups = tonumber(head[2]), tonumber(head[3]), tonumber(head[4])
  local added, gids = {}, {}
  local created = false
  for i = 3, #ARGV, 4 do
    local aid, actor, verb, key = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local member_of, indexed, taken
    if i == 3 then
      member_of, indexed, taken = head[5], head[6], head[7]
    else
      local got = redis.call('HMGET', fields, 'a' .. aid, 'k' .. key, 'g' .. aid)
      member_of, indexed, taken = got[1], got[2], got[3]
    end
    if not member_of then
      local position, gid = nil, nil
      local in_window = false
      if indexed then
        local rank = redis.call('ZREVRANK', order, indexed)
        if rank then
          position, gid = string.sub(indexed, 1, ID), string.sub(indexed, ID + 1)
          in_window = rank < window
        end
      end
      if in_window then
        local record = redis.call('HGET', fields, 'g' .. gid)
        local actors = tonumber(string.sub(record, 64, 71), 16)
        if redis.call('HINCRBY', tally_of(gid), actor, 1) == 1 then actors = actors + 1 end
        local oldest = string.sub(record, 30, 55)
        if aid < oldest then oldest = aid end
        if aid > position then
          -- The group moves up to its new newest activity (a late one leaves it in place).
          redis.call('ZREM', order, indexed)
          redis.call('ZADD', order, 0, aid .. gid)
          position = aid
        end
        -- Unseen and unread again (and unarchived): state '000'.
        recount(string.sub(record, 1, 3), '000')
        local count = tonumber(string.sub(record, 56, 63), 16) + 1
        record = '000' .. position .. oldest .. string.format('%08x%08x', count, actors)
          .. string.sub(record, 72)
        redis.call('HSET', fields, 'g' .. gid, record, 'a' .. aid, gid .. actor,
                   'k' .. key, position .. gid, 'u', unseen, 'r', unread)
      else
        -- A new group, with the same id rule as storage.base.fresh_group_id: the next free
        -- id up in the suffix.
        gid = aid
        if taken then
          repeat
            local suffix = (tonumber(string.sub(gid, 15), 16) + 1) % 281474976710656
            gid = string.sub(gid, 1, 14) .. string.format('%012x', suffix)
          until redis.call('HEXISTS', fields, 'g' .. gid) == 0
        end
        local opened = aid .. gid
        recount(nil, '000')
        ngroups = ngroups + 1
        created = true
        redis.call('ZADD', order, 0, opened)
        local record = '000' .. aid .. aid .. string.format('%08x%08x%04x', 1, 1, #verb)
          .. verb .. key
        -- It becomes the newest group with its key unless a newer one has it (an old
        -- activity arriving late, as a backfill's do).
        if not position or position < aid then
          redis.call('HSET', fields, 'g' .. gid, record, 'a' .. aid, gid .. actor,
                     'k' .. key, opened, 'u', unseen, 'r', unread, 'n', ngroups)
        else
          redis.call('HSET', fields, 'g' .. gid, record, 'a' .. aid, gid .. actor,
                     'u', unseen, 'r', unread, 'n', ngroups)
        end
        redis.call('HSET', tally_of(gid), actor, 1)
      end
      redis.call('ZADD', ids_of(gid), 0, aid)
      added[#added + 1] = aid
      gids[#gids + 1] = gid
    end
  end
  -- Only a new group can push the feed past max_length; called with no entries at all, the
  -- script is an explicit trim (after max_length was lowered).
  if (created or #ARGV <= 2) and ngroups > max_length then
    local dropped = trim(ngroups - max_length)
    redis.call('HSET', fields, 'u', unseen, 'r', unread, 'n', ngroups)
    local kept = {}
    for j, aid in ipairs(added) do
      if not dropped[gids[j]] then kept[#kept + 1] = aid end
    end
    added = kept
  end
  counts[2 * f - 1], counts[2 * f] = unseen, unread
  if #added ~= entries then
    odd[#odd + 1] = f
    odd_added[#odd_added + 1] = added
  end
end
return {counts, odd, odd_added}
