-- Set or clear seen / read / archived on some groups of one notification feed.
-- ARGV: seen, read, archived (each '1', '0' or '-' for unchanged), mode ('group', 'activity',
-- 'all'), up_to (an activity id, or '' for no bound), then group or activity ids.
-- Returns {unseen, unread}.
begin(KEYS[1], {})
local want = {ARGV[1], ARGV[2], ARGV[3]}
local mode, up_to = ARGV[4], ARGV[5]
local gids = {}
if mode == 'all' then
  local upper = '+'
  if up_to ~= '' then upper = '(' .. up_to .. 'g' end
  for _, m in ipairs(redis.call('ZRANGEBYLEX', order, '-', upper)) do
    gids[#gids + 1] = string.sub(m, ID + 1)
  end
elseif #ARGV > 5 then
  local ids = {unpack(ARGV, 6)}
  if mode == 'activity' then
    local names, seen = {}, {}
    for j, aid in ipairs(ids) do names[j] = 'a' .. aid end
    for _, member in ipairs(get(names)) do
      if member then
        local gid = string.sub(member, 1, ID)
        if not seen[gid] then seen[gid] = true; gids[#gids + 1] = gid end
      end
    end
  else
    gids = ids
  end
end
local names = {}
for j, gid in ipairs(gids) do names[j] = 'g' .. gid end
for j, record in ipairs(get(names)) do
  if record then
    local old = string.sub(record, 1, 3)
    local new = ''
    for f = 1, 3 do
      if want[f] == '-' then new = new .. string.sub(old, f, f) else new = new .. want[f] end
    end
    if new ~= old then
      recount(old, new)
      put(names[j], new .. string.sub(record, 4))
    end
  end
end
flush()
return {unseen, unread}
