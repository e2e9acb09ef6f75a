-- Shared helpers, prepended to each aggregated-feed script.
-- An aggregated feed lives under one base key "<prefix>:g:{<group>:<user>}:" so that, in Redis
-- Cluster, every key of a feed hashes to one slot and a script can touch them all atomically.
--   o       ZSET (all scores 0, lexical) of position..gid: group order, newest last
--   m       HASH activity id -> gid..actor       (membership: idempotency, removal)
--   k / v   HASH gid -> group key / verb
--   s       HASH gid -> state "SRA" ('0'/'1' for seen, read, archived)
--   c       HASH unseen, unread                  (exact, changed with the state they count)
--   i:<gid> ZSET (lexical) of the group's activity ids
--   u:<gid> HASH actor -> number of the group's activities by that actor
--   x       HASH 'k'..group key -> gid of the newest group with that key, and 'built' once
--           it covers every group (an add builds it for feeds written before it existed):
--           finding the group a new activity joins is one lookup, not a scan of the window
-- The feed being worked on: KEYS[1], or each of KEYS in turn through use() (batched adds).
local base, order, members, gkeys, gverbs, gstate, counts, gindex
local function use(feed)
  base = feed
  order, members, gkeys, gverbs, gstate, counts, gindex =
    feed .. 'o', feed .. 'm', feed .. 'k', feed .. 'v', feed .. 's', feed .. 'c', feed .. 'x'
end
use(KEYS[1])
local ID = 26

local function contribution(state)
  if not state or string.sub(state, 3, 3) == '1' then return 0, 0 end
  local unseen, unread = 0, 0
  if string.sub(state, 1, 1) == '0' then unseen = 1 end
  if string.sub(state, 2, 2) == '0' then unread = 1 end
  return unseen, unread
end

-- Set a group's state (nil deletes it) and move the counts by the difference, in one step.
local function set_state(gid, new)
  local old = redis.call('HGET', gstate, gid)
  if old == false then old = nil end
  if old == new then return end
  local ou, orr = contribution(old)
  local nu, nr = contribution(new)
  if new then redis.call('HSET', gstate, gid, new) else redis.call('HDEL', gstate, gid) end
  if nu ~= ou then redis.call('HINCRBY', counts, 'unseen', nu - ou) end
  if nr ~= orr then redis.call('HINCRBY', counts, 'unread', nr - orr) end
end

local function newest(gid)
  return redis.call('ZRANGE', base .. 'i:' .. gid, -1, -1)[1]
end

-- Point the index at the newest group with `key` (or at none): a full scan, for the rare
-- changes that can make another group the newest with its key (removals).
local function reindex(key)
  local field = 'k' .. key
  local all = redis.call('ZREVRANGE', order, 0, -1)
  for first = 1, #all, 500 do
    local gids = {}
    for j = first, math.min(first + 499, #all) do gids[#gids + 1] = string.sub(all[j], ID + 1) end
    for j, k in ipairs(redis.call('HMGET', gkeys, unpack(gids))) do
      if k == key then
        redis.call('HSET', gindex, field, gids[j])
        return
      end
    end
  end
  redis.call('HDEL', gindex, field)
end

-- Build the index of a feed written before it existed (oldest first: newer groups win).
local function build_index()
  local all = redis.call('ZRANGE', order, 0, -1)
  for first = 1, #all, 500 do
    local gids, pairs_ = {}, {}
    for j = first, math.min(first + 499, #all) do gids[#gids + 1] = string.sub(all[j], ID + 1) end
    for j, k in ipairs(redis.call('HMGET', gkeys, unpack(gids))) do
      if k then
        pairs_[#pairs_ + 1] = 'k' .. k
        pairs_[#pairs_ + 1] = gids[j]
      end
    end
    if #pairs_ > 0 then redis.call('HSET', gindex, unpack(pairs_)) end
  end
  redis.call('HSET', gindex, 'built', '1')
end

-- The newest group with `key`: gid, position (its newest activity id) and whether it is among
-- the `window` most recent groups; nil when the feed has none. `checked`: the index is known
-- to be built (the feed's first lookup of a call checks, and builds it if needed).
local function find_group(key, window, checked)
  local gid
  if checked then
    gid = redis.call('HGET', gindex, 'k' .. key)
  else
    local got = redis.call('HMGET', gindex, 'built', 'k' .. key)
    if got[1] then
      gid = got[2]
    else
      build_index()
      gid = redis.call('HGET', gindex, 'k' .. key)
    end
  end
  if not gid then return nil end
  local position = newest(gid)
  if not position then return nil end
  local rank = redis.call('ZREVRANK', order, position .. gid)
  return gid, position, rank ~= false and rank < window
end

-- The group key of `gid` if the index names `gid` as the newest group with it, else nil.
local function indexed_key(gid)
  local key = redis.call('HGET', gkeys, gid)
  if key and redis.call('HGET', gindex, 'k' .. key) == gid then return key end
  return nil
end

-- Delete a group; returns its key if it was the newest group with it (then the caller may
-- need to reindex that key: a trim need not, no group with it is left).
local function drop_group(gid, position)
  local key = indexed_key(gid)
  if key then redis.call('HDEL', gindex, 'k' .. key) end
  local ids_key = base .. 'i:' .. gid
  local ids = redis.call('ZRANGE', ids_key, 0, -1)
  for first = 1, #ids, 1000 do
    redis.call('HDEL', members, unpack(ids, first, math.min(first + 999, #ids)))
  end
  redis.call('DEL', ids_key, base .. 'u:' .. gid)
  redis.call('HDEL', gkeys, gid)
  redis.call('HDEL', gverbs, gid)
  redis.call('ZREM', order, position .. gid)
  set_state(gid, nil)
  return key
end

local function current_counts()
  local c = redis.call('HMGET', counts, 'unseen', 'unread')
  return {tonumber(c[1]) or 0, tonumber(c[2]) or 0}
end
