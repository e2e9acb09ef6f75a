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
-- The feed being worked on: KEYS[1], or each of KEYS in turn through use() (batched adds).
local base, order, members, gkeys, gverbs, gstate, counts
local function use(feed)
  base = feed
  order, members, gkeys, gverbs, gstate, counts =
    feed .. 'o', feed .. 'm', feed .. 'k', feed .. 'v', feed .. 's', feed .. 'c'
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

local function drop_group(gid, position)
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
end

local function current_counts()
  local c = redis.call('HMGET', counts, 'unseen', 'unread')
  return {tonumber(c[1]) or 0, tonumber(c[2]) or 0}
end
