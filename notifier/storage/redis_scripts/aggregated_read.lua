-- One page of groups of one aggregated feed, newest position first, in one round trip.
-- ARGV: max bound, min bound (ZREVRANGEBYLEX syntax), limit, max_activities, and '1' to
-- read the feed's annotations (its hash 'n') too.
-- Returns {unseen, unread, {gid, record, {id...}}...}, each group's newest ids first (with
-- annotations: {unseen, unread, {gid, annotation...}, groups...}); or
-- {'migrate'} for a feed of layout 1, which this read-only script cannot change (the caller
-- migrates it and reads again).
local head = redis.call('HMGET', fields, 'v', 'u', 'r')
if not head[1] and has_layout_1() then return {'migrate'} end
local picked = redis.call('ZREVRANGEBYLEX', order, ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local result = {tonumber(head[2]) or 0, tonumber(head[3]) or 0}
if ARGV[5] == '1' then result[3] = redis.call('HGETALL', base .. 'n') end
if #picked == 0 then return result end
local names = {}
for j, m in ipairs(picked) do names[j] = 'g' .. string.sub(m, ID + 1) end
local records = redis.call('HMGET', fields, unpack(names))
local shown = tonumber(ARGV[4])
for j, m in ipairs(picked) do
  local gid = string.sub(m, ID + 1)
  result[#result + 1] = {gid, records[j], redis.call('ZRANGE', ids_of(gid), 0, shown - 1, 'REV')}
end
return result
