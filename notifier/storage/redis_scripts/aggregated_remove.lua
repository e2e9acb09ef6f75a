-- Remove activities from one aggregated feed. ARGV: activity ids.
-- Returns {unseen, unread, removed id...}.
begin(KEYS[1], {})
local removed = {}
for _, aid in ipairs(ARGV) do
  local member = get({'a' .. aid})[1]
  if member then
    local gid, actor = string.sub(member, 1, ID), string.sub(member, ID + 1)
    local g = unpack_group(get({'g' .. gid})[1])
    redis.call('ZREM', ids_of(gid), aid)
    put('a' .. aid, false)
    if redis.call('HINCRBY', tally_of(gid), actor, -1) <= 0 then
      redis.call('HDEL', tally_of(gid), actor)
      g.actors = g.actors - 1
    end
    g.count = g.count - 1
    local old = g.position .. gid
    local indexed = get({'k' .. g.key})[1] == old
    -- When the newest group with its key goes, or moves back (it lost its newest activity),
    -- another group with that key may now be the newest: the index is recomputed for it.
    if g.count <= 0 then
      redis.call('ZREM', order, old)
      put('g' .. gid, false)
      recount(g.state, nil)
      ngroups = ngroups - 1
      if indexed then reindex(g.key) end
    else
      if aid == g.oldest then g.oldest = edge(gid, false) end
      if aid == g.position then
        g.position = edge(gid, true)
        redis.call('ZREM', order, old)
        redis.call('ZADD', order, 0, g.position .. gid)
      end
      put('g' .. gid, pack(g))
      if indexed and aid == string.sub(old, 1, ID) then reindex(g.key) end
    end
    removed[#removed + 1] = aid
  end
end
flush()
local result = {unseen, unread}
for _, aid in ipairs(removed) do result[#result + 1] = aid end
return result
