-- Shared helpers, prepended to each aggregated-feed script.
-- An aggregated feed lives under one base key "<prefix>:g:{<group>:<user>}:" so that, in Redis
-- Cluster, every key of a feed hashes to one slot and a script can touch them all atomically.
-- Layout 2: everything a write reads or changes about the feed is in one hash, read in one
-- HMGET and written in one HSET (a new group: those, two ZADDs and the actor's tally; layout 1
-- made 13 calls); a group's ids and actor tally keep small keys of their own, which Redis
-- stores compactly (listpacks), so a feed takes no more memory than in layout 1:
--   o        ZSET (all scores 0, lexical) of position..gid: group order, newest last
--   i:<gid>  ZSET (lexical) of the group's activity ids
--   u:<gid>  HASH actor -> number of the group's activities by that actor
--   h        HASH, the rest:
--        v              the layout, '2' (a feed without it is of layout 1: migrated first)
--        u, r, n        unseen, unread (exact, changed with the state they count), groups
--        g<gid>         the group: see pack()
--        k<key>         position..gid of the newest group with that key (its member of o):
--                       finding the group a new activity joins is one lookup, not a scan
--        a<aid>         gid..actor of each activity (membership: idempotency, removal)
local base, order, fields
local view, changed = {}, {}
local unseen, unread, ngroups = 0, 0, 0
local function use(feed)
  base = feed
  order, fields = feed .. 'o', feed .. 'h'
end
local function ids_of(gid) return base .. 'i:' .. gid end
local function tally_of(gid) return base .. 'u:' .. gid end
use(KEYS[1])
local ID = 26
local LAYOUT = '2'

-- Lua's unpack() has a stack limit: long argument lists go in pieces.
local function call_in_pieces(command, key, args, step)
  for first = 1, #args, step do
    redis.call(command, key, unpack(args, first, math.min(first + step - 1, #args)))
  end
end

-- The feed's hash as this call sees it: fields read once, writes kept here and sent in one
-- HSET / HDEL by flush(). `false` stands for an absent (or deleted) field.
local function get(names)
  local missing = {}
  for _, name in ipairs(names) do
    if view[name] == nil then missing[#missing + 1] = name end
  end
  for first = 1, #missing, 1000 do
    local part = {unpack(missing, first, math.min(first + 999, #missing))}
    local got = redis.call('HMGET', fields, unpack(part))
    for j, name in ipairs(part) do view[name] = got[j] end
  end
  local out = {}
  for j, name in ipairs(names) do out[j] = view[name] end
  return out
end

local function put(name, value)
  if view[name] ~= value then
    view[name] = value
    changed[name] = true
  end
end

-- A group record: state (3 chars, '0'/'1' for seen, read, archived), position (its newest
-- activity id), oldest activity id, activity count and actor count (8 hex digits each), the
-- verb's length (4 hex digits), the verb, the key.
local function pack(g)
  return g.state .. g.position .. g.oldest
    .. string.format('%08x%08x%04x', g.count, g.actors, #g.verb) .. g.verb .. g.key
end

local function unpack_group(record)
  local verb_length = tonumber(string.sub(record, 72, 75), 16)
  return {
    state = string.sub(record, 1, 3),
    position = string.sub(record, 4, 29),
    oldest = string.sub(record, 30, 55),
    count = tonumber(string.sub(record, 56, 63), 16),
    actors = tonumber(string.sub(record, 64, 71), 16),
    verb = string.sub(record, 76, 75 + verb_length),
    key = string.sub(record, 76 + verb_length),
  }
end

local function key_of(record)
  return string.sub(record, 76 + tonumber(string.sub(record, 72, 75), 16))
end

local function contribution(state)
  if not state or string.sub(state, 3, 3) == '1' then return 0, 0 end
  local u, r = 0, 0
  if string.sub(state, 1, 1) == '0' then u = 1 end
  if string.sub(state, 2, 2) == '0' then r = 1 end
  return u, r
end

-- Move the counts from a group's `old` state to its `new` one (nil: no group).
local function recount(old, new)
  local ou, orr = contribution(old)
  local nu, nr = contribution(new)
  unseen, unread = unseen + nu - ou, unread + nr - orr
end

-- Layout 1 → 2 (a feed written before this layout): one pass over its groups, in the first
-- call that touches the feed. Layout 1 kept each group's key, verb and state in hashes k, v,
-- s, memberships in m, counts in c and the index in x; its per-group keys (i:<gid>, u:<gid>)
-- are layout 2's as they are.
local OLD = {'m', 'k', 'v', 's', 'c', 'x'}
local function migrate()
  local all = redis.call('ZRANGE', order, 0, -1)  -- oldest first: newer groups win the index
  for _, member in ipairs(all) do
    local position, gid = string.sub(member, 1, ID), string.sub(member, ID + 1)
    local key = redis.call('HGET', base .. 'k', gid) or ''
    put('g' .. gid, pack({
      state = redis.call('HGET', base .. 's', gid) or '000',
      position = position,
      oldest = redis.call('ZRANGE', ids_of(gid), 0, 0)[1] or position,
      count = redis.call('ZCARD', ids_of(gid)),
      actors = redis.call('HLEN', tally_of(gid)),
      verb = redis.call('HGET', base .. 'v', gid) or '',
      key = key,
    }))
    put('k' .. key, member)
  end
  local members = redis.call('HGETALL', base .. 'm')
  for j = 1, #members, 2 do put('a' .. members[j], members[j + 1]) end
  local c = redis.call('HMGET', base .. 'c', 'unseen', 'unread')
  unseen, unread, ngroups = tonumber(c[1]) or 0, tonumber(c[2]) or 0, #all
  local old = {}
  for j, suffix in ipairs(OLD) do old[j] = base .. suffix end
  redis.call('DEL', unpack(old))
end

local function has_layout_1()
  local old = {}
  for j, suffix in ipairs(OLD) do old[j] = base .. suffix end
  return redis.call('EXISTS', unpack(old)) > 0
end

-- Start work on feed `feed`: its layout, counts and group count, and `more` fields, in one
-- read (a new group's write then needs no other read).
local function begin(feed, more)
  use(feed)
  view, changed = {}, {}
  local names = {'v', 'u', 'r', 'n'}
  for _, name in ipairs(more) do names[#names + 1] = name end
  local got = get(names)
  if got[1] then
    unseen, unread, ngroups = tonumber(got[2]) or 0, tonumber(got[3]) or 0, tonumber(got[4]) or 0
    return
  end
  unseen, unread, ngroups = 0, 0, 0
  if has_layout_1() then migrate() end  -- its puts replace what `more` read
  put('v', LAYOUT)
end

-- Send the call's changes to the feed's hash (counts included): one HSET, one HDEL at most.
local function flush()
  put('u', tostring(unseen))
  put('r', tostring(unread))
  put('n', tostring(ngroups))
  local sets, dels = {}, {}
  for name in pairs(changed) do
    local value = view[name]
    if value then
      sets[#sets + 1] = name
      sets[#sets + 1] = value
    else
      dels[#dels + 1] = name
    end
  end
  call_in_pieces('HSET', fields, sets, 1000)
  call_in_pieces('HDEL', fields, dels, 1000)
  changed = {}
end

-- The newest (last = true) or oldest activity id of a group.
local function edge(gid, last)
  local got
  if last then
    got = redis.call('ZRANGE', ids_of(gid), -1, -1)
  else
    got = redis.call('ZRANGE', ids_of(gid), 0, 0)
  end
  return got[1]
end

-- Point the index at the newest group with `key` (or at none): a scan of the groups, for the
-- rare changes that can make another group the newest with its key (removals).
local function reindex(key)
  local all = redis.call('ZREVRANGE', order, 0, -1)
  for first = 1, #all, 500 do
    local names, members = {}, {}
    for j = first, math.min(first + 499, #all) do
      members[#members + 1] = all[j]
      names[#names + 1] = 'g' .. string.sub(all[j], ID + 1)
    end
    for j, record in ipairs(get(names)) do
      if record and key_of(record) == key then
        put('k' .. key, members[j])
        return
      end
    end
  end
  put('k' .. key, false)
end
